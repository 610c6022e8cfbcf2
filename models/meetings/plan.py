"""Plan a body's meetings by its cadence (20.4.1, 21.4.1, 22.4.1), time their steps, find and
load a meeting; move one to a new time, call an extraordinary one off the cadence, enter one held
before wct ran, and cancel one that has not been held."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import Session, select

from models.calendar import add_working_days, meetings_between
from models.casework import clean_text, notify, settle
from models.clock import local, local_day, local_zone
from models.commands import current_constitution
from models.constitution import Action, Body, Constitution
from models.errors import InvalidInput, NotFound, Refused
from models.meetings.kinds import (
    AGENDA,
    CALL_FOR_ITEMS,
    ITEMS_DEADLINE,
    MINUTES_DUE,
    REMINDER,
    SPECS,
)
from models.messages import Ask, MeetingCancelled, MeetingNotice
from models.permissions import Scope
from models.steps import PlannedStep, at_five, at_nine, body_members, pending_steps
from models.steps import plan as plan_step
from models.tables import Meeting
from models.uow import UnitOfWork, locked


class MeetingStatus(StrEnum):
    """Where a meeting is: planned; its agenda and notice sent; held (attendance recorded); its
    minutes drafted; its minutes approved at the next meeting; or cancelled before it was held."""

    PLANNED = "planned"
    AGENDA_PUBLISHED = "agenda_published"
    HELD = "held"
    MINUTES_DRAFTED = "minutes_drafted"
    MINUTES_APPROVED = "minutes_approved"
    CANCELLED = "cancelled"


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
    return day_key(meeting.body_id, meeting.starts_at)


def day_key(body_id: str, starts_at: datetime) -> str:
    """`meeting_key` from the two columns it is made of (for listings that read only those)."""
    return f"meeting:{body_id}:{local_day(starts_at).isoformat()}"


def message_stem(meeting: Meeting) -> str:
    """The stem of the keys of a meeting's steps and messages: `meeting_key`, and after a move
    the invitation's sequence too (`meeting:board:2027-03-16:v1`), so that the steps and
    messages of the meeting at its new time are new, even back on a date it had before."""
    stem = meeting_key(meeting)
    return f"{stem}:v{meeting.ical_sequence}" if meeting.ical_sequence else stem


def subject_of(meeting: Meeting) -> str:
    """`meeting:17`: what the meeting's audit events and steps are about."""
    return f"meeting:{meeting.id}"


def meeting_clause(body: Body) -> str:
    """The clause that has the body meet, as the constitution gives it for the body (Wirral's
    Board 20.4.1, Executive 21.4.1, strategy groups 22.4.1); "" (cite none) when it gives
    none: never another partnership's number."""
    return body.clause or ""


def body_of(c: Constitution, body_id: str) -> Body:
    try:
        return c.body(body_id)
    except KeyError:
        known = ", ".join(b.id for b in c.bodies)
        raise NotFound(f"no body '{body_id}' in the constitution (known: {known})") from None


def state_of(meeting: Meeting) -> dict[str, Any]:
    """The meeting as its audit events record it, before and after a change."""
    return {
        "body": meeting.body_id,
        "starts_at": meeting.starts_at.isoformat(),
        "status": meeting.status,
        "minutes_due_on": meeting.minutes_due_on.isoformat() if meeting.minutes_due_on else None,
    }


def cadence_meeting_on(c: Constitution, body_id: str, day: date) -> datetime:
    """20.4.1, 21.4.1, 22.4.1: the body's meeting on `day` by its cadence, or a clear error."""
    body = body_of(c, body_id)
    if body.cadence is None:
        raise InvalidInput(f"{body_id} has no meeting cadence in the constitution")
    zone = local_zone()
    start = at_nine(day).replace(hour=0)
    end = start + timedelta(hours=23, minutes=59)
    found = meetings_between(body.cadence.rrule, body.cadence.first, start, end, zone)
    if not found:
        upcoming = body.cadence.next_meetings(start, 1, zone)
        hint = f" (next: {local_day(upcoming[0]).isoformat()})" if upcoming else ""
        raise InvalidInput(f"{body_id} does not meet on {day.isoformat()} by its cadence{hint}")
    return found[0]


def step_times(c: Constitution, starts_at: datetime) -> dict[str, datetime]:
    """When each step of a meeting is due, at the constitution's offsets in working days:
    call for items, items deadline, agenda and notice, reminder (09:00 on their day; the items
    deadline at 17:00) and draft minutes after the meeting (17:00)."""
    r, day = c.reminders, local_day(starts_at)
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
    body = body_of(c, body_id)
    existing = session.exec(
        select(Meeting).where(
            Meeting.body_id == body_id,
            # A meeting of this cadence date moved elsewhere still stands for it.
            (Meeting.starts_at == starts_at) | (Meeting.cadence_on == day),
        )
    ).first()
    if existing is not None and existing.id is not None:
        return MeetingPlanned(
            existing.id,
            body_id,
            existing.starts_at,
            existing.ical_uid,
            False,
            pending_steps(session, subject_of(existing)),
        )
    if starts_at <= uow.clock.now():
        raise Refused(f"{body_id}'s meeting of {day.isoformat()} has already started")
    assert body.cadence is not None
    times = step_times(c, starts_at)
    meeting = Meeting(
        body_id=body_id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=body.cadence.duration_minutes),
        location=body.cadence.location,
        status=MeetingStatus.PLANNED,
        ical_uid=f"{body_id}-{day.strftime('%Y%m%d')}@{c.partnership.id}.wct",
        minutes_due_on=local_day(times[MINUTES_DUE]),
        cadence_on=day,
    )
    session.add(meeting)
    session.flush()
    uow.record("meeting.planned", subject_of(meeting), before=None, after=state_of(meeting))
    assert meeting.id is not None
    steps = _plan_steps(session, meeting, times)
    return MeetingPlanned(meeting.id, body_id, starts_at, meeting.ical_uid, True, steps)


def _plan_steps(
    session: Session, meeting: Meeting, times: dict[str, datetime]
) -> list[PlannedStep]:
    assert meeting.id is not None
    stem = message_stem(meeting)
    return [
        plan_step(
            session,
            SPECS[kind],
            key=f"{stem}:{kind.removeprefix('meeting.')}",
            subject_id=meeting.id,
            due_at=due,
        )
        for kind, due in times.items()
    ]


def _short_notice_times(c: Constitution, starts_at: datetime, now: datetime) -> dict[str, datetime]:
    """The steps of a meeting set at short notice (moved, or called off the cadence): a step
    whose time has passed is not sent late as if it had been missed. The notice goes at once;
    the call for items, the items deadline and the reminder only if their time is still to come;
    the minutes are due as for any meeting."""
    times = step_times(c, starts_at)
    kept = {k: t for k, t in times.items() if t > now or k in (AGENDA, MINUTES_DUE)}
    kept[AGENDA] = max(times[AGENDA], now)
    return kept


def _clashes(session: Session, meeting_id: int | None, body_id: str, starts_at: datetime) -> None:
    other = session.exec(
        select(Meeting).where(
            Meeting.body_id == body_id,
            Meeting.starts_at == starts_at,
            Meeting.status != MeetingStatus.CANCELLED,
        )
    ).first()
    if other is not None and other.id != meeting_id:
        raise Refused(f"{body_id} already has a meeting at {starts_at:%Y-%m-%d %H:%M}")


def _local_time(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise InvalidInput(f"{when.isoformat()} has no time zone")
    return local(when)


@dataclass(frozen=True)
class MeetingMoved:
    meeting_id: int
    body_id: str
    moved_from: datetime
    starts_at: datetime
    ical_sequence: int
    steps: list[PlannedStep]

    def as_dict(self) -> dict[str, Any]:
        return {
            "meeting_id": self.meeting_id,
            "body": self.body_id,
            "moved_from": self.moved_from.isoformat(),
            "starts_at": self.starts_at.isoformat(),
            "ical_sequence": self.ical_sequence,
            "steps": [s.as_dict() for s in self.steps],
        }


def move_meeting(
    uow: UnitOfWork,
    *,
    meeting_id: int,
    starts_at: datetime,
    reason: str,
    location: str | None = None,
) -> MeetingMoved:
    """A meeting not yet held moves to a new time (and place): every member gets the updated
    invitation (same UID, SEQUENCE raised) saying where it moved from and why, every pending step
    of the meeting is settled and planned again for the new time, and an agenda already sent is
    sent again for the new date. The meeting still stands for its cadence date."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    why = clean_text(reason, what="reason", limit=300)
    new_start = _local_time(starts_at)
    place = clean_text(location, what="location", limit=300) if location else meeting.location
    if meeting.status not in (MeetingStatus.PLANNED, MeetingStatus.AGENDA_PUBLISHED):
        raise Refused(f"{meeting_key(meeting)} is {meeting.status.replace('_', ' ')}: not moved")
    now = uow.clock.now()
    if meeting.starts_at <= now:
        raise Refused(f"{meeting_key(meeting)} has started: it cannot be moved")
    if new_start <= now:
        raise InvalidInput(f"the new time {new_start:%Y-%m-%d %H:%M} has passed")
    if new_start == meeting.starts_at and place == meeting.location:
        raise InvalidInput(f"{meeting_key(meeting)} is already at that time and place")
    _clashes(session, meeting.id, meeting.body_id, new_start)
    before, moved_from = state_of(meeting), meeting.starts_at
    settle(session, subject=subject_of(meeting), now=now)
    duration = meeting.ends_at - meeting.starts_at
    meeting.starts_at, meeting.ends_at = new_start, new_start + duration
    meeting.location = place
    meeting.ical_sequence += 1
    meeting.status = MeetingStatus.PLANNED  # an agenda already sent goes again for the new date
    times = _short_notice_times(c, new_start, now)
    meeting.minutes_due_on = local_day(times[MINUTES_DUE])
    session.add(meeting)
    session.flush()
    notify(
        uow,
        MeetingNotice(
            **_invite(c, meeting),
            moved_from=moved_from,
            reason=why,
            action=ATTEND,
            ask=apologies(meeting),
        ),
        people=body_members(session, c, meeting.body_id),
        key=f"{message_stem(meeting)}:moved",
        scope=body_scope(meeting),
        body_channel=meeting.body_id,
    )
    uow.record(
        "meeting.moved",
        subject_of(meeting),
        before=before,
        after={**state_of(meeting), "reason": why, "ical_sequence": meeting.ical_sequence},
    )
    steps = _plan_steps(session, meeting, times)
    assert meeting.id is not None
    return MeetingMoved(
        meeting.id, meeting.body_id, moved_from, new_start, meeting.ical_sequence, steps
    )


def call_meeting(
    uow: UnitOfWork,
    *,
    body_id: str,
    starts_at: datetime,
    reason: str,
    location: str | None = None,
) -> MeetingPlanned:
    """An extraordinary meeting of the body, off its cadence: planned with the steps its notice
    leaves time for (the notice goes at once when its usual time has passed), and its notice says
    why it was called. The same body and time again is the same meeting."""
    session, c = uow.session, current_constitution(uow.session)
    body = body_of(c, body_id)
    why = clean_text(reason, what="reason", limit=300)
    start = _local_time(starts_at)
    now = uow.clock.now()
    if start <= now:
        raise InvalidInput(f"{start:%Y-%m-%d %H:%M} has passed: enter a past meeting instead")
    existing = session.exec(
        select(Meeting).where(Meeting.body_id == body_id, Meeting.starts_at == start)
    ).first()
    if existing is not None and existing.id is not None:
        if existing.status == MeetingStatus.CANCELLED:
            raise Refused(f"{body_id}'s meeting at {start:%Y-%m-%d %H:%M} was cancelled")
        steps = pending_steps(session, subject_of(existing))
        return MeetingPlanned(existing.id, body_id, start, existing.ical_uid, False, steps)
    minutes = body.cadence.duration_minutes if body.cadence else 120
    place = clean_text(location, what="location", limit=300) if location else None
    times = _short_notice_times(c, start, now)
    meeting = Meeting(
        body_id=body_id,
        starts_at=start,
        ends_at=start + timedelta(minutes=minutes),
        location=place or (body.cadence.location if body.cadence else None),
        status=MeetingStatus.PLANNED,
        ical_uid=f"{body_id}-{start:%Y%m%dT%H%M}-x@{c.partnership.id}.wct",
        minutes_due_on=local_day(times[MINUTES_DUE]),
        extraordinary=True,
    )
    session.add(meeting)
    session.flush()
    uow.record(
        "meeting.called",
        subject_of(meeting),
        before=None,
        after={**state_of(meeting), "extraordinary": True, "reason": why},
    )
    assert meeting.id is not None
    steps = _plan_steps(session, meeting, times)
    return MeetingPlanned(meeting.id, body_id, start, meeting.ical_uid, True, steps)


def enter_past_meeting(
    uow: UnitOfWork, *, body_id: str, starts_at: datetime, location: str | None = None
) -> MeetingPlanned:
    """A meeting held before wct ran (or never planned in it), entered so that its attendance,
    declarations, decisions and minutes can be recorded as for any other: no steps and no
    messages, since its time has passed. Off the cadence, it is marked extraordinary."""
    session, c = uow.session, current_constitution(uow.session)
    body = body_of(c, body_id)
    start = _local_time(starts_at)
    if start > uow.clock.now():
        raise InvalidInput(
            f"{start:%Y-%m-%d %H:%M} is still to come: plan or call the meeting instead"
        )
    existing = session.exec(
        select(Meeting).where(Meeting.body_id == body_id, Meeting.starts_at == start)
    ).first()
    if existing is not None and existing.id is not None:
        return MeetingPlanned(existing.id, body_id, start, existing.ical_uid, False, [])
    try:
        on_cadence = cadence_meeting_on(c, body_id, start.date()) == start
    except InvalidInput:
        on_cadence = False
    minutes = body.cadence.duration_minutes if body.cadence else 120
    meeting = Meeting(
        body_id=body_id,
        starts_at=start,
        ends_at=start + timedelta(minutes=minutes),
        location=clean_text(location, what="location", limit=300) if location else None,
        status=MeetingStatus.PLANNED,
        ical_uid=f"{body_id}-{start:%Y%m%dT%H%M}-p@{c.partnership.id}.wct",
        extraordinary=not on_cadence,
        cadence_on=start.date() if on_cadence else None,
    )
    session.add(meeting)
    session.flush()
    uow.record("meeting.entered", subject_of(meeting), before=None, after=state_of(meeting))
    assert meeting.id is not None
    return MeetingPlanned(meeting.id, body_id, start, meeting.ical_uid, True, [])


def load_meeting(session: Session, meeting_id: int) -> Meeting:
    """The meeting, locked for this transaction (fresh from the database once the lock is ours),
    so that two workers acting on steps of one meeting at once act one after the other."""
    meeting = locked(session, Meeting, meeting_id)
    if meeting is None:
        raise NotFound(f"no meeting #{meeting_id}")
    return meeting


def find_meeting(session: Session, body_id: str, day: date) -> Meeting:
    """The planned meeting of `body_id` on `day`, or a clear error."""
    for meeting in session.exec(select(Meeting).where(Meeting.body_id == body_id)):
        if local_day(meeting.starts_at) == day:
            return meeting
    raise NotFound(f"no meeting of {body_id} planned on {day.isoformat()} (run the cycle first)")


def next_meeting_days(c: Constitution, body_id: str, after: datetime, count: int) -> list[date]:
    """20.4.1 / 21.4.1 / 22.4.1: the dates of the body's next `count` meetings after `after`."""
    body = body_of(c, body_id)
    if body.cadence is None:
        raise InvalidInput(f"{body_id} has no meeting cadence in the constitution")
    return [d.date() for d in body.cadence.next_meetings(after, count, local_zone())]


ATTEND = "Please attend. If you cannot come, send your apologies with the button below."


def apologies(meeting: Meeting) -> Ask:
    """What a message about a meeting to come asks of a member who cannot attend."""
    return Ask(action=Action.MEETING_APOLOGIES, subject=subject_of(meeting))


def body_scope(meeting: Meeting) -> Scope:
    """Who may act on a meeting is judged for its body (`body-member`, `body-chair`...)."""
    return Scope(body=meeting.body_id)


def _invite(c: Constitution, meeting: Meeting) -> dict[str, Any]:
    """What every message with the meeting's calendar invitation says of it."""
    body = c.body(meeting.body_id)
    return {
        "clause": meeting_clause(body),
        "body": body.name,
        "starts_at": meeting.starts_at,
        "ends_at": meeting.ends_at,
        "location": meeting.location,
        "ical_uid": meeting.ical_uid,
        "ical_sequence": meeting.ical_sequence,
    }


def meeting_notice(c: Constitution, meeting: Meeting) -> MeetingNotice:
    """The notice of the meeting with its invitation (20.4.1, 21.4.1, 22.4.1)."""
    return MeetingNotice(
        **_invite(c, meeting),
        extraordinary=meeting.extraordinary,
        action=ATTEND,
        ask=apologies(meeting),
    )


def cancel_meeting(uow: UnitOfWork, *, meeting_id: int, reason: str) -> bool:
    """Cancel a meeting that has not been held: its steps stop, and every member gets the
    cancellation with METHOD:CANCEL for the same invitation (UID kept, SEQUENCE raised)."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    why = clean_text(reason, what="reason", limit=300)
    if meeting.status == MeetingStatus.CANCELLED:
        return False
    if meeting.status not in (MeetingStatus.PLANNED, MeetingStatus.AGENDA_PUBLISHED):
        raise Refused(f"{meeting_key(meeting)} was held ({meeting.status}): it cannot be cancelled")
    before = state_of(meeting)
    meeting.status = MeetingStatus.CANCELLED
    meeting.ical_sequence += 1
    session.add(meeting)
    settle(session, subject=subject_of(meeting), now=uow.clock.now())
    notify(
        uow,
        MeetingCancelled(
            **_invite(c, meeting),
            reason=why,
            action=(
                "Nothing: the meeting will not take place, and it is removed from your calendar."
            ),
        ),
        people=body_members(session, c, meeting.body_id),
        # A meeting is cancelled once (cancelling it again changes nothing).
        key=f"{meeting_key(meeting)}:cancelled",
        body_channel=meeting.body_id,
    )
    uow.record("meeting.cancelled", subject_of(meeting), before=before, after=state_of(meeting))
    return True
