"""Meeting cycles of the Board (20.4.1), the Executive (21.4.1) and every body with a cadence
(22.4.1): plan, call for items, agenda and notice, reminder, record, minutes and their approval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from models.calendar import add_working_days, meetings_between
from models.casework import clean_text, coordinators, notify, settle
from models.commands import current_constitution
from models.constitution import Body, BodyKind, Constitution
from models.decision import Decision, Vote, decide
from models.errors import WctError
from models.permissions import find_actor
from models.steps import (
    PlannedStep,
    at_five,
    at_nine,
    body_members,
    pending_steps,
    plan,
    role_holders,
)
from models.tables import (
    AgendaItem,
    ApprovalRequest,
    Attendance,
    Declaration,
    Meeting,
    Motion,
    Person,
    Report,
    Risk,
    VoteRecord,
)
from models.uow import UnitOfWork

# Step kinds of a meeting cycle, in the order they come due.
CALL_FOR_ITEMS = "meeting.call_for_items"
ITEMS_DEADLINE = "meeting.items_deadline"
AGENDA = "meeting.agenda"
REMINDER = "meeting.reminder"
MINUTES_DUE = "meeting.minutes_due"
STEP_KINDS = (CALL_FOR_ITEMS, ITEMS_DEADLINE, AGENDA, REMINDER, MINUTES_DUE)

PLANNED, PUBLISHED, HELD, DRAFTED, APPROVED, CANCELLED = (
    "planned",
    "agenda_published",
    "held",
    "minutes_drafted",
    "minutes_approved",
    "cancelled",
)


@dataclass(frozen=True)
class MeetingPlanned:
    meeting_id: int
    body_id: str
    starts_at: datetime
    ical_uid: str
    created: bool
    steps: list[PlannedStep]

    def as_dict(self) -> dict[str, Any]:
        return {
            "meeting_id": self.meeting_id,
            "body": self.body_id,
            "starts_at": self.starts_at.isoformat(),
            "ical_uid": self.ical_uid,
            "created": self.created,
            "steps": [s.as_dict() for s in self.steps],
        }


def meeting_key(meeting: Meeting) -> str:
    """`meeting:board:2027-03-09`: the stem of every key of this meeting's steps and messages."""
    return f"meeting:{meeting.body_id}:{meeting.starts_at.date().isoformat()}"


def _subject(meeting: Meeting) -> str:
    return f"meeting:{meeting.id}"


def _body(c: Constitution, body_id: str) -> Body:
    try:
        return c.body(body_id)
    except KeyError:
        known = ", ".join(b.id for b in c.bodies)
        raise WctError(f"no body '{body_id}' in the constitution (known: {known})") from None


def _state(meeting: Meeting) -> dict[str, Any]:
    return {
        "body": meeting.body_id,
        "starts_at": meeting.starts_at.isoformat(),
        "status": meeting.status,
        "minutes_due_on": meeting.minutes_due_on.isoformat() if meeting.minutes_due_on else None,
    }


def cadence_meeting_on(c: Constitution, body_id: str, day: date) -> datetime:
    """20.4.1, 21.4.1, 22.4.1: the body's meeting on `day` by its cadence, or a clear error."""
    body = _body(c, body_id)
    if body.cadence is None:
        raise WctError(f"{body_id} has no meeting cadence in the constitution")
    start = at_nine(day).replace(hour=0)
    end = start + timedelta(hours=23, minutes=59)
    found = meetings_between(body.cadence.rrule, body.cadence.first_local, start, end)
    if not found:
        upcoming = body.cadence.next_meetings(start, 1)
        hint = f" (next: {upcoming[0].date().isoformat()})" if upcoming else ""
        raise WctError(f"{body_id} does not meet on {day.isoformat()} by its cadence{hint}")
    return found[0]


def step_times(c: Constitution, starts_at: datetime) -> dict[str, datetime]:
    """When each step of a meeting is due, at the constitution's offsets in working days:
    call for items, items deadline, agenda and notice, reminder (09:00 on their day; the items
    deadline at 17:00) and draft minutes after the meeting (17:00)."""
    r, day = c.reminders, starts_at.date()
    return {
        CALL_FOR_ITEMS: at_nine(add_working_days(day, -r.call_for_items)),
        ITEMS_DEADLINE: at_five(add_working_days(day, -r.items_deadline)),
        AGENDA: at_nine(add_working_days(day, -r.agenda)),
        REMINDER: at_nine(add_working_days(day, -r.meeting_reminder)),
        MINUTES_DUE: at_five(add_working_days(day, r.minutes_due)),
    }


def plan_meeting(uow: UnitOfWork, *, body_id: str, day: date) -> MeetingPlanned:
    """20.4.1 / 21.4.1 / 22.4.1: plan the body's meeting on `day` (a date of its cadence) and
    its steps. The same body and date again is the same meeting: nothing new is written."""
    session, c = uow.session, current_constitution(uow.session)
    starts_at = cadence_meeting_on(c, body_id, day)
    body = _body(c, body_id)
    existing = session.exec(
        select(Meeting).where(Meeting.body_id == body_id, Meeting.starts_at == starts_at)
    ).first()
    if existing is not None and existing.id is not None:
        return MeetingPlanned(
            existing.id,
            body_id,
            existing.starts_at,
            existing.ical_uid,
            False,
            pending_steps(session, _subject(existing)),
        )
    if starts_at <= uow.clock.now():
        raise WctError(f"{body_id}'s meeting of {day.isoformat()} has already started")
    assert body.cadence is not None
    times = step_times(c, starts_at)
    meeting = Meeting(
        body_id=body_id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=body.cadence.duration_minutes),
        location=body.cadence.location,
        ical_uid=f"{body_id}-{day.strftime('%Y%m%d')}@{c.partnership.id}.wct",
        minutes_due_on=times[MINUTES_DUE].date(),
    )
    session.add(meeting)
    session.flush()
    uow.record("meeting.planned", _subject(meeting), before=None, after=_state(meeting))
    stem = meeting_key(meeting)
    steps = [
        plan(
            session,
            key=f"{stem}:{kind.split('.')[1]}",
            kind=kind,
            subject=_subject(meeting),
            due_at=due,
        )
        for kind, due in times.items()
    ]
    assert meeting.id is not None
    return MeetingPlanned(meeting.id, body_id, starts_at, meeting.ical_uid, True, steps)


def load_meeting(session: Session, meeting_id: int) -> Meeting:
    """The meeting, locked for this transaction (fresh from the database once the lock is ours),
    so that two workers acting on steps of one meeting at once act one after the other."""
    meeting = session.exec(
        select(Meeting)
        .where(Meeting.id == meeting_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if meeting is None:
        raise WctError(f"no meeting #{meeting_id}")
    return meeting


def find_meeting(session: Session, body_id: str, day: date) -> Meeting:
    """The planned meeting of `body_id` on `day`, or a clear error."""
    for meeting in session.exec(select(Meeting).where(Meeting.body_id == body_id)):
        if meeting.starts_at.date() == day:
            return meeting
    raise WctError(f"no meeting of {body_id} planned on {day.isoformat()} (run the cycle first)")


def _context(c: Constitution, meeting: Meeting, **extra: Any) -> dict[str, Any]:
    body = c.body(meeting.body_id)
    return {
        "body": body.name,
        "body_id": body.id,
        "meeting_id": meeting.id,
        "starts_at": meeting.starts_at.isoformat(),
        "ends_at": meeting.ends_at.isoformat(),
        "location": meeting.location,
        "ical_uid": meeting.ical_uid,
        "ical_sequence": meeting.ical_sequence,
        "clause": {"board": "20.4.1", "executive": "21.4.1"}.get(body.kind.value, "22.4.1"),
        "action": "Please attend, or send your apologies to the chair.",
        **extra,
    }


# --- Agenda items --------------------------------------------------------------------------


def submit_item(uow: UnitOfWork, *, meeting_id: int, title: str, by: str) -> int:
    """Put an item forward for a meeting's agenda: from a member of the body (or a coordinator),
    before the items deadline. Returns the item id; the same title twice is one item."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    title = clean_text(title, what="item title", limit=300)
    actor = find_actor(session, by)
    members = {p.id for p in body_members(session, c, meeting.body_id)}
    members |= {p.id for p in coordinators(session, c)}
    if actor.person_id not in members:
        raise WctError(
            f"{actor.pseudonym} is not a member of {meeting.body_id} and may not add items"
        )
    deadline = step_times(c, meeting.starts_at)[ITEMS_DEADLINE]
    composed = any(i.kind != "submitted" for i in _items(session, meeting_id))
    if uow.clock.now() >= deadline or meeting.status != PLANNED or composed:
        raise WctError(
            f"the items deadline for {meeting_key(meeting)} passed at {deadline.isoformat()}"
        )
    for item in _items(session, meeting_id):
        if item.kind == "submitted" and item.title.lower() == title.lower():
            assert item.id is not None
            return item.id
    item = AgendaItem(
        meeting_id=meeting_id,
        position=1000 + len(_items(session, meeting_id)),
        title=title,
        kind="submitted",
        source=f"member:{actor.pseudonym}",
        submitted_by=actor.pseudonym,
    )
    session.add(item)
    session.flush()
    uow.record(
        "meeting.item_submitted",
        _subject(meeting),
        before=None,
        after={"item": item.id, "title": title, "by": actor.pseudonym},
    )
    assert item.id is not None
    return item.id


def _items(session: Session, meeting_id: int) -> list[AgendaItem]:
    return list(
        session.exec(
            select(AgendaItem)
            .where(AgendaItem.meeting_id == meeting_id)
            .order_by(col(AgendaItem.position), col(AgendaItem.id))
        ).all()
    )


@dataclass(frozen=True)
class AgendaLine:
    position: int
    title: str
    kind: str
    source: str | None


def _already_tabled(session: Session, source: str, meeting_id: int) -> bool:
    return (
        session.exec(
            select(AgendaItem.id).where(
                AgendaItem.source == source, AgendaItem.meeting_id != meeting_id
            )
        ).first()
        is not None
    )


def _previous_meeting(session: Session, meeting: Meeting) -> Meeting | None:
    return session.exec(
        select(Meeting)
        .where(
            Meeting.body_id == meeting.body_id,
            col(Meeting.starts_at) < meeting.starts_at,
            Meeting.status != CANCELLED,
        )
        .order_by(col(Meeting.starts_at).desc())
    ).first()


def standing_items(
    session: Session, c: Constitution, meeting: Meeting
) -> list[tuple[str, str, str | None]]:
    """The standing items of every agenda, with what is waiting under each heading: apologies;
    declarations of interest (18.1); minutes of the last meeting; for the body the WSCB reports
    to, its quarterly safeguarding report (11.4.1); performance reports received (14.1, 22.2.1);
    for the Board, risks escalated to it (16.1); items awaiting this body's approval (11.3.5,
    21.1.1). Returns (title, kind, source) rows."""
    body = c.body(meeting.body_id)
    rows: list[tuple[str, str, str | None]] = [
        ("Apologies for absence", "standing", "standing:apologies"),
        ("Declarations of interest (18.1)", "standing", "standing:declarations"),
    ]
    previous = _previous_meeting(session, meeting)
    if previous is not None:
        rows.append(
            (
                f"Minutes of the meeting of {previous.starts_at.date().isoformat()}",
                "standing",
                f"minutes:{previous.id}",
            )
        )
    else:
        rows.append(("Minutes of the last meeting", "standing", "standing:minutes"))
    received = session.exec(
        select(Report)
        .where(
            Report.to_body_id == body.id, col(Report.status).in_(("submitted", "submitted_late"))
        )
        .order_by(col(Report.due_on), col(Report.from_body_id))
    ).all()
    fresh = [r for r in received if not _already_tabled(session, f"report:{r.id}", meeting.id or 0)]
    wscb_to = {
        q.to_body
        for q in c.quarterly_reports
        if q.from_body is not None and c.body(q.from_body).kind is BodyKind.SAFEGUARDING_BOARD
    }
    if body.id in wscb_to:
        rows.append(
            ("WSCB quarterly safeguarding report (11.4.1)", "standing", "standing:wscb-report")
        )
    for report in fresh:
        rows.append(
            (
                f"Report: {report.kind} from {report.from_body_id}, {report.period}",
                "report",
                f"report:{report.id}",
            )
        )
    if body.kind in (BodyKind.BOARD, BodyKind.EXECUTIVE):
        rows.append(("Performance reports (14.1)", "standing", "standing:performance"))
    if body.kind is BodyKind.BOARD:
        rows.append(("Risks escalated to the Board (16.1)", "standing", "standing:risks"))
        for risk in session.exec(
            select(Risk).where(Risk.status == "escalated").order_by(col(Risk.id))
        ):
            rows.append((f"Escalated risk: {risk.title}", "risk", f"risk:{risk.id}"))
    rows.append(("Items awaiting approval", "standing", "standing:approvals"))
    for request in session.exec(
        select(ApprovalRequest)
        .where(ApprovalRequest.approver_body_id == body.id, ApprovalRequest.status == "waiting")
        .order_by(col(ApprovalRequest.id))
    ):
        rows.append(
            (
                f"For approval ({request.clause}): {request.title}",
                "approval",
                f"approval:{request.id}",
            )
        )
    return rows


def compose_agenda(uow: UnitOfWork, *, meeting_id: int) -> list[AgendaLine]:
    """The agenda: the standing items, then the items members submitted, then any other business.
    Composed once, when the items deadline passes; later calls return it unchanged."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    items = _items(session, meeting_id)
    if any(i.kind != "submitted" for i in items):
        return _lines(items)
    submitted = [i for i in items if i.kind == "submitted"]
    position = 0
    for title, kind, source in standing_items(session, c, meeting):
        position += 1
        session.add(
            AgendaItem(
                meeting_id=meeting_id, position=position, title=title, kind=kind, source=source
            )
        )
    for item in submitted:
        position += 1
        item.position = position
        session.add(item)
    session.add(
        AgendaItem(
            meeting_id=meeting_id,
            position=position + 1,
            title="Any other business",
            kind="standing",
            source="standing:aob",
        )
    )
    session.flush()
    composed = _items(session, meeting_id)
    uow.record(
        "meeting.agenda_composed",
        _subject(meeting),
        before=None,
        after={"items": [f"{i.position}. {i.title}" for i in composed]},
    )
    return _lines(composed)


def _lines(items: Sequence[AgendaItem]) -> list[AgendaLine]:
    return [AgendaLine(i.position, i.title, i.kind, i.source) for i in items]


def agenda(session: Session, meeting_id: int) -> list[AgendaLine]:
    return _lines(_items(session, meeting_id))


# --- What each step does when it comes due ---------------------------------------------------


def call_for_items(uow: UnitOfWork, meeting: Meeting) -> bool:
    """Ask the body's members for agenda items by the items deadline."""
    c = current_constitution(uow.session)
    if meeting.status != PLANNED:
        return False
    deadline = step_times(c, meeting.starts_at)[ITEMS_DEADLINE]
    sent = notify(
        uow,
        kind="call_for_items",
        people=body_members(uow.session, c, meeting.body_id),
        key=f"{meeting_key(meeting)}:call-for-items",
        context=_context(
            c,
            meeting,
            items_due=deadline.isoformat(),
            action=f"Send agenda items by {deadline:%A %d %B %Y, %H:%M} with `wct meeting item`.",
        ),
    )
    uow.record(
        "meeting.items_called",
        _subject(meeting),
        before=None,
        after={"deadline": deadline.isoformat(), "queued": sent},
    )
    return True


def publish_agenda(uow: UnitOfWork, meeting: Meeting, *, was_due: datetime | None = None) -> bool:
    """The notice of the meeting goes to every member with the agenda and the invitation; sent
    late (`was_due`), both say when they were due."""
    c = current_constitution(uow.session)
    if meeting.status != PLANNED:
        return False
    lines = compose_agenda(uow, meeting_id=meeting.id or 0)
    before = _state(meeting)
    meeting.status = PUBLISHED
    uow.session.add(meeting)
    members = body_members(uow.session, c, meeting.body_id)
    stem = meeting_key(meeting)
    notify(
        uow,
        kind="meeting_notice",
        people=members,
        key=f"{stem}:notice",
        context=_context(c, meeting),
        was_due=was_due,
    )
    items = [{"position": i.position, "title": i.title, "kind": i.kind} for i in lines]
    action = "Read the papers before the meeting; declare any interest in an item (18.1)."
    notify(
        uow,
        kind="agenda",
        people=members,
        key=f"{stem}:agenda",
        context=_context(c, meeting, items=items, action=action),
        was_due=was_due,
    )
    uow.record("meeting.agenda_published", _subject(meeting), before=before, after=_state(meeting))
    return True


def cancel_meeting(uow: UnitOfWork, *, meeting_id: int, reason: str) -> bool:
    """Cancel a meeting that has not been held: its steps stop, and every member gets the
    cancellation with METHOD:CANCEL for the same invitation (UID kept, SEQUENCE raised)."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    why = clean_text(reason, what="reason", limit=300)
    if meeting.status == CANCELLED:
        return False
    if meeting.status not in (PLANNED, PUBLISHED):
        raise WctError(
            f"{meeting_key(meeting)} was held ({meeting.status}): it cannot be cancelled"
        )
    before = _state(meeting)
    meeting.status = CANCELLED
    meeting.ical_sequence += 1
    session.add(meeting)
    settle(session, subject=_subject(meeting), now=uow.clock.now())
    notify(
        uow,
        kind="meeting_cancelled",
        people=body_members(session, c, meeting.body_id),
        key=f"{meeting_key(meeting)}:cancelled",
        context=_context(c, meeting, reason=why, action="The meeting will not take place."),
    )
    uow.record("meeting.cancelled", _subject(meeting), before=before, after=_state(meeting))
    return True


def remind(uow: UnitOfWork, meeting: Meeting) -> bool:
    """The day-before reminder, to members who have not sent apologies."""
    c = current_constitution(uow.session)
    if meeting.status not in (PLANNED, PUBLISHED):
        return False
    apologised = {
        a.person_id
        for a in uow.session.exec(
            select(Attendance).where(
                Attendance.meeting_id == meeting.id, Attendance.status == "apologies"
            )
        )
    }
    people = [p for p in body_members(uow.session, c, meeting.body_id) if p.id not in apologised]
    notify(
        uow,
        kind="reminder",
        people=people,
        key=f"{meeting_key(meeting)}:reminder",
        context=_context(
            c, meeting, what=f"{c.body(meeting.body_id).name} meeting", due=meeting.starts_at
        ),
    )
    uow.record("meeting.reminded", _subject(meeting), before=None, after={"people": len(people)})
    return True


def minutes_overdue(meeting: Meeting, now: datetime) -> bool:
    """Draft minutes not in by the end of the day they were due (the day set by
    `reminders.minutes_due`, in working days after the meeting)."""
    if meeting.status in (DRAFTED, APPROVED, CANCELLED) or meeting.minutes_due_on is None:
        return False
    return meeting.starts_at <= now and at_five(meeting.minutes_due_on) <= now


def chase_minutes(uow: UnitOfWork, meeting: Meeting) -> bool:
    """Draft minutes are due a set number of working days after the meeting: if they are not
    drafted by then, the chair and the coordinators are told."""
    c = current_constitution(uow.session)
    if meeting.status in (DRAFTED, APPROVED, CANCELLED):
        return False
    people = role_holders(uow.session, c.body(meeting.body_id).chair) + coordinators(uow.session, c)
    notify(
        uow,
        kind="reminder",  # TODO(notifications): a dedicated minutes_overdue template
        people=people,
        key=f"{meeting_key(meeting)}:minutes-overdue",
        context=_context(
            c,
            meeting,
            what=f"Overdue: draft minutes of the meeting of {meeting.starts_at:%d %B %Y}",
            due=step_times(c, meeting.starts_at)[MINUTES_DUE],
            action="Draft the minutes with `wct meeting minutes`.",
        ),
    )
    uow.record("meeting.minutes_overdue", _subject(meeting), before=None, after=_state(meeting))
    return True


STEP_ACTIONS = {
    CALL_FOR_ITEMS: call_for_items,
    ITEMS_DEADLINE: None,
    REMINDER: remind,
    MINUTES_DUE: chase_minutes,
}


def act_on_step(
    uow: UnitOfWork, kind: str, meeting_id: int, *, was_due: datetime | None = None
) -> bool:
    """Do what the step of `kind` does for the meeting; False when it is already satisfied.
    `was_due`: the notice is sent late and says so."""
    meeting = load_meeting(uow.session, meeting_id)
    if meeting.status == CANCELLED:
        return False
    if kind == ITEMS_DEADLINE:
        if meeting.status != PLANNED or any(
            i.kind != "submitted" for i in _items(uow.session, meeting_id)
        ):
            return False
        compose_agenda(uow, meeting_id=meeting_id)
        return True
    if kind == AGENDA:
        return publish_agenda(uow, meeting, was_due=was_due)
    action = STEP_ACTIONS.get(kind)
    if action is None:
        raise WctError(f"no meeting step '{kind}'")
    return action(uow, meeting)


# --- After the meeting ---------------------------------------------------------------------


def _person(session: Session, who: str) -> Person:
    actor = find_actor(session, who)
    person = session.get(Person, actor.person_id)
    assert person is not None
    return person


def send_apologies(uow: UnitOfWork, *, meeting_id: int, who: str) -> None:
    """A member sends apologies before the meeting; the reminder then skips them."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    person = _person(session, who)
    if person.id not in {p.id for p in body_members(session, c, meeting.body_id)}:
        raise WctError(f"{person.pseudonym} is not a member of {meeting.body_id}")
    if uow.clock.now() >= meeting.starts_at:
        raise WctError("the meeting has started: record attendance instead")
    assert person.id is not None and meeting.id is not None
    if session.get(Attendance, (meeting.id, person.id)) is None:
        session.add(Attendance(meeting_id=meeting.id, person_id=person.id, status="apologies"))
        uow.record(
            "meeting.apologies", _subject(meeting), before=None, after={"person": person.pseudonym}
        )


def record_attendance(
    uow: UnitOfWork, *, meeting_id: int, present: Sequence[str], apologies: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Who was present and who sent apologies; every other member of the body was absent.
    Only after the meeting has started, only once, and everyone named must be a member."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    if uow.clock.now() < meeting.starts_at:
        raise WctError(
            f"{meeting_key(meeting)} has not started yet: attendance is recorded at or after it"
        )
    if meeting.status in (HELD, DRAFTED, APPROVED, CANCELLED):
        raise WctError(
            f"attendance of {meeting_key(meeting)} is already recorded (status {meeting.status})"
        )
    if not present:
        raise WctError("no one present: a meeting needs at least one person present")
    people = [_person(session, w) for w in present]
    sorry = [_person(session, w) for w in apologies]
    both = {p.pseudonym for p in people} & {p.pseudonym for p in sorry}
    if both:
        raise WctError(f"recorded both present and with apologies: {', '.join(sorted(both))}")
    members = body_members(session, c, meeting.body_id)
    member_ids = {p.id for p in members} | {p.id for p in coordinators(session, c)}
    strangers = sorted(p.pseudonym for p in people + sorry if p.id not in member_ids)
    if strangers:
        raise WctError(f"not members of {meeting.body_id}: {', '.join(strangers)}")
    status: dict[int, str] = {p.id or 0: "absent" for p in members}
    status.update({p.id or 0: "apologies" for p in sorry})
    status.update({p.id or 0: "present" for p in people})
    for person_id, value in status.items():
        row = session.get(Attendance, (meeting_id, person_id))
        if row is None:
            row = Attendance(meeting_id=meeting_id, person_id=person_id, status=value)
        elif value != "absent" or row.status != "apologies":
            row.status = value
        session.add(row)
    before = _state(meeting)
    meeting.status = HELD
    session.add(meeting)
    session.flush()
    result = attendance(session, meeting_id)
    uow.record(
        "meeting.attendance_recorded",
        _subject(meeting),
        before=before,
        after={**_state(meeting), **result},
    )
    return result


def attendance(session: Session, meeting_id: int) -> dict[str, list[str]]:
    """Pseudonyms by status: present, apologies, absent."""
    out: dict[str, list[str]] = {"present": [], "apologies": [], "absent": []}
    rows = session.exec(
        select(Attendance.status, Person.pseudonym)
        .join(Person, col(Person.id) == col(Attendance.person_id))
        .where(Attendance.meeting_id == meeting_id)
        .order_by(col(Person.pseudonym))
    ).all()
    for status, pseudonym in rows:
        out[status].append(pseudonym)
    return out


def _held(session: Session, meeting_id: int) -> Meeting:
    meeting = load_meeting(session, meeting_id)
    if meeting.status not in (HELD, DRAFTED):
        raise WctError(
            f"{meeting_key(meeting)} has no attendance recorded yet (status {meeting.status})"
        )
    return meeting


def _item(session: Session, meeting_id: int, position: int) -> AgendaItem:
    for item in _items(session, meeting_id):
        if item.position == position:
            return item
    raise WctError(f"meeting #{meeting_id} has no agenda item {position}")


def declare_interest(uow: UnitOfWork, *, meeting_id: int, who: str, item: int, nature: str) -> int:
    """18.1: a member present declares an interest in an agenda item, recorded in the minutes."""
    session = uow.session
    meeting = _held(session, meeting_id)
    nature = clean_text(nature, what="nature of the interest", limit=1000)
    person = _person(session, who)
    row = session.get(Attendance, (meeting_id, person.id))
    if row is None or row.status != "present":
        raise WctError(f"{person.pseudonym} was not present at {meeting_key(meeting)}")
    agenda_item = _item(session, meeting_id, item)
    declaration = Declaration(
        person_id=person.id or 0,
        meeting_id=meeting_id,
        agenda_item_id=agenda_item.id,
        nature=nature,
        declared_at=uow.clock.now(),
    )
    session.add(declaration)
    session.flush()
    uow.record(
        "meeting.interest_declared",
        _subject(meeting),
        before=None,
        after={"person": person.pseudonym, "item": item, "clause": "18.1"},
    )
    assert declaration.id is not None
    return declaration.id


@dataclass(frozen=True)
class MotionDecided:
    motion_id: int
    decision: Decision
    chair: str

    def as_dict(self) -> dict[str, Any]:
        return {"motion_id": self.motion_id, "chair": self.chair, **asdict(self.decision)}


def _chairing(
    session: Session, c: Constitution, meeting: Meeting, present: set[str], chaired_by: str | None
) -> str:
    """6.2: who chairs the meeting: the body's chair if present, else its deputy if present,
    else the person the meeting chose (`chaired_by`), who must be present."""
    if chaired_by is not None:
        pseudonym = _person(session, chaired_by).pseudonym
        if pseudonym not in present:
            raise WctError(f"{pseudonym} chaired but is not recorded as present")
        return pseudonym
    body = c.body(meeting.body_id)
    for role in (body.chair, body.deputy):
        if role is None:
            continue
        for person in role_holders(session, role):
            if person.pseudonym in present:
                return person.pseudonym
    raise WctError(
        f"neither the chair nor a deputy of {body.id} was present: say who chaired (chaired_by)"
    )


def record_motion(
    uow: UnitOfWork,
    *,
    meeting_id: int,
    text: str,
    item: int | None = None,
    votes: Mapping[str, Vote] | None = None,
    consensus: bool = False,
    casting_vote: Vote | None = None,
    chaired_by: str | None = None,
) -> MotionDecided:
    """6.2: record a motion and its show of hands; the 6.2 rule decides it and explains how."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = _held(session, meeting_id)
    text = clean_text(text, what="motion", limit=2000)
    present = set(attendance(session, meeting_id)["present"])
    by_pseudonym = {_person(session, who).pseudonym: vote for who, vote in (votes or {}).items()}
    chair = _chairing(session, c, meeting, present, chaired_by)
    decision = decide(
        present=present,
        votes=by_pseudonym,
        chair=chair,
        consensus=consensus,
        casting_vote=casting_vote,
    )
    agenda_item = _item(session, meeting_id, item) if item is not None else None
    motion = Motion(
        meeting_id=meeting_id,
        agenda_item_id=agenda_item.id if agenda_item else None,
        text=text,
        outcome=decision.outcome.value,
        method=decision.method.value,
        explanation=decision.explanation,
    )
    session.add(motion)
    session.flush()
    assert motion.id is not None
    ids = {p.pseudonym: p.id for p in (_person(session, w) for w in by_pseudonym)}
    for pseudonym, vote in by_pseudonym.items():
        session.add(VoteRecord(motion_id=motion.id, person_id=ids[pseudonym] or 0, vote=vote.value))
    if casting_vote is not None:
        session.add(
            VoteRecord(
                motion_id=motion.id,
                person_id=_person(session, chair).id or 0,
                casting=True,
                vote=casting_vote.value,
            )
        )
    uow.record(
        "meeting.motion_decided",
        _subject(meeting),
        before=None,
        after={
            "motion": motion.id,
            "text": text,
            "chair": chair,
            **{k: str(v) for k, v in asdict(decision).items()},
        },
    )
    return MotionDecided(motion.id, decision, chair)


# --- Minutes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MinutesDraft:
    """What the minutes record: who came, what was declared, what was decided and how (6.2)."""

    meeting_id: int
    body: str
    starts_at: str
    location: str | None
    attendance: dict[str, list[str]]
    agenda: list[str]
    declarations: list[str]
    motions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def minutes_data(session: Session, meeting_id: int) -> MinutesDraft:
    meeting = load_meeting(session, meeting_id)
    c = current_constitution(session)
    items = {i.id: i for i in _items(session, meeting_id)}
    declarations = []
    for d in session.exec(
        select(Declaration)
        .where(Declaration.meeting_id == meeting_id)
        .order_by(col(Declaration.id))
    ):
        person = session.get(Person, d.person_id)
        item = items.get(d.agenda_item_id)
        declarations.append(
            f"{person.pseudonym if person else '?'} on item "
            f"{item.position if item else '-'}: {d.nature}"
        )
    motions = []
    for m in session.exec(
        select(Motion).where(Motion.meeting_id == meeting_id).order_by(col(Motion.id))
    ):
        item = items.get(m.agenda_item_id)
        motions.append(
            {
                "item": item.position if item else None,
                "text": m.text,
                "outcome": m.outcome,
                "method": m.method,
                "explanation": m.explanation,
            }
        )
    return MinutesDraft(
        meeting_id,
        c.body(meeting.body_id).name,
        meeting.starts_at.isoformat(),
        meeting.location,
        attendance(session, meeting_id),
        [f"{i.position}. {i.title}" for i in items.values()],
        declarations,
        motions,
    )


def draft_minutes(uow: UnitOfWork, *, meeting_id: int) -> MinutesDraft:
    """Draft the minutes from what was recorded; the minutes-due step then stops."""
    session = uow.session
    meeting = _held(session, meeting_id)
    draft = minutes_data(session, meeting_id)
    if meeting.status == HELD:
        before = _state(meeting)
        meeting.status = DRAFTED
        session.add(meeting)
        settle(session, subject=_subject(meeting), now=uow.clock.now(), kinds=[MINUTES_DUE])
        uow.record(
            "meeting.minutes_drafted",
            _subject(meeting),
            before=before,
            after={**_state(meeting), "motions": len(draft.motions)},
        )
    return draft


def approve_minutes(uow: UnitOfWork, *, meeting_id: int, at_meeting_id: int) -> None:
    """The minutes of a meeting are approved at the body's next meeting, once drafted."""
    session = uow.session
    meeting = load_meeting(session, meeting_id)
    at = load_meeting(session, at_meeting_id)
    if meeting.status == APPROVED:
        if meeting.minutes_approved_at_meeting_id == at_meeting_id:
            return
        raise WctError(f"minutes of {meeting_key(meeting)} were already approved")
    if meeting.status != DRAFTED:
        raise WctError(
            f"minutes of {meeting_key(meeting)} are not drafted yet (status {meeting.status})"
        )
    following = session.exec(
        select(Meeting)
        .where(
            Meeting.body_id == meeting.body_id,
            col(Meeting.starts_at) > meeting.starts_at,
            Meeting.status != CANCELLED,
        )
        .order_by(col(Meeting.starts_at))
    ).first()
    if following is None or following.id != at.id:
        raise WctError(
            f"minutes of {meeting_key(meeting)} are approved at {meeting.body_id}'s next "
            f"meeting, not at {meeting_key(at)}"
        )
    if at.status not in (HELD, DRAFTED):
        raise WctError(
            f"{meeting_key(at)} has no attendance recorded yet: approve the minutes when it is held"
        )
    before = _state(meeting)
    meeting.status = APPROVED
    meeting.minutes_approved_at_meeting_id = at.id
    session.add(meeting)
    uow.record(
        "meeting.minutes_approved",
        _subject(meeting),
        before=before,
        after={**_state(meeting), "at": meeting_key(at)},
    )


@dataclass(frozen=True)
class DeclarationInput:
    who: str
    item: int
    nature: str


@dataclass(frozen=True)
class MotionInput:
    text: str
    item: int | None = None
    votes: Mapping[str, Vote] = field(default_factory=dict)
    consensus: bool = False
    casting_vote: Vote | None = None
    chaired_by: str | None = None


def record_meeting(
    uow: UnitOfWork,
    *,
    meeting_id: int,
    present: Sequence[str],
    apologies: Sequence[str] = (),
    declarations: Sequence[DeclarationInput] = (),
    motions: Sequence[MotionInput] = (),
) -> MinutesDraft:
    """Everything recorded after a meeting, all or nothing: attendance, declarations of interest
    (18.1), each motion decided by the 6.2 rule, then the draft minutes."""
    record_attendance(uow, meeting_id=meeting_id, present=present, apologies=apologies)
    for d in declarations:
        declare_interest(uow, meeting_id=meeting_id, who=d.who, item=d.item, nature=d.nature)
    for m in motions:
        record_motion(
            uow,
            meeting_id=meeting_id,
            text=m.text,
            item=m.item,
            votes=m.votes,
            consensus=m.consensus,
            casting_vote=m.casting_vote,
            chaired_by=m.chaired_by,
        )
    return draft_minutes(uow, meeting_id=meeting_id)


def next_meeting_days(c: Constitution, body_id: str, after: datetime, count: int) -> list[date]:
    """20.4.1 / 21.4.1 / 22.4.1: the dates of the body's next `count` meetings after `after`."""
    body = _body(c, body_id)
    if body.cadence is None:
        raise WctError(f"{body_id} has no meeting cadence in the constitution")
    return [d.date() for d in body.cadence.next_meetings(after, count)]
