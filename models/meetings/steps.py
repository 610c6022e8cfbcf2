"""What each step of a meeting cycle does when it comes due: call for items, compose the agenda
at the items deadline, publish the agenda and notice, remind, chase the draft minutes. Each is a
kind of step (`STEP_KINDS`, gathered by models/steps/registry.py) with its late policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session, select

from models.casework import coordinators, notify
from models.commands import current_constitution
from models.constitution import Action
from models.errors import cited
from models.meetings.agenda import compose_agenda, composed, items_of
from models.meetings.kinds import (
    AGENDA,
    CALL_FOR_ITEMS,
    ITEMS_DEADLINE,
    MINUTES_DUE,
    REMINDER,
    SPECS,
)
from models.meetings.minutes import NO_MINUTES_OWED
from models.meetings.plan import (
    ATTEND,
    MeetingStatus,
    apologies,
    body_scope,
    load_meeting,
    meeting_clause,
    meeting_notice,
    message_stem,
    state_of,
    step_times,
    subject_of,
)
from models.meetings.record import AttendanceStatus
from models.messages import Agenda, AgendaEntry, Ask, CallForItems, Reminder
from models.steps import (
    ALWAYS,
    CoveredBy,
    Firing,
    LatePolicy,
    NoParams,
    StepKind,
    body_members,
    role_holders,
)
from models.tables import Attendance, Meeting, Step
from models.uow import UnitOfWork

__all__ = [
    "AGENDA",
    "CALL_FOR_ITEMS",
    "ITEMS_DEADLINE",
    "MINUTES_DUE",
    "REMINDER",
    "STEP_KINDS",
    "call_for_items",
    "chase_minutes",
    "compose_at_deadline",
    "publish_agenda",
    "remind",
]


def call_for_items(uow: UnitOfWork, meeting: Meeting, *, was_due: datetime | None = None) -> bool:
    """Ask the body's members for agenda items by the items deadline; sent late (`was_due`), the
    call says when it was due."""
    c = current_constitution(uow.session)
    if meeting.status != MeetingStatus.PLANNED:
        return False
    deadline = step_times(c, meeting.starts_at)[ITEMS_DEADLINE]
    body = c.body(meeting.body_id)
    sent = notify(
        uow,
        CallForItems(
            clause=meeting_clause(body),
            body=body.name,
            starts_at=meeting.starts_at,
            items_due=deadline,
            action=(
                f"If you want an item on the agenda, send its title and paper by "
                f"{deadline:%A} {deadline.day} {deadline:%B %Y at %H:%M} with the button below."
            ),
            ask=Ask(action=Action.MEETING_ITEM, subject=subject_of(meeting)),
        ),
        people=body_members(uow.session, c, meeting.body_id),
        key=f"{message_stem(meeting)}:call-for-items",
        was_due=was_due,
        scope=body_scope(meeting),
        body_channel=meeting.body_id,
    )
    uow.record(
        "meeting.items_called",
        subject_of(meeting),
        before=None,
        after={"deadline": deadline.isoformat(), "queued": sent},
    )
    return True


def publish_agenda(uow: UnitOfWork, meeting: Meeting, *, was_due: datetime | None = None) -> bool:
    """The notice of the meeting goes to every member with the agenda and the invitation; sent
    late (`was_due`), both say when they were due."""
    c = current_constitution(uow.session)
    if meeting.status != MeetingStatus.PLANNED:
        return False
    lines = compose_agenda(uow, meeting_id=meeting.id or 0)
    before = state_of(meeting)
    meeting.status = MeetingStatus.AGENDA_PUBLISHED
    uow.session.add(meeting)
    members = body_members(uow.session, c, meeting.body_id)
    stem = message_stem(meeting)
    notify(
        uow,
        meeting_notice(c, meeting),
        people=members,
        key=f"{stem}:notice",
        was_due=was_due,
        scope=body_scope(meeting),
        body_channel=meeting.body_id,
    )
    body = c.body(meeting.body_id)
    agenda = Agenda(
        clause=meeting_clause(body),
        body=body.name,
        starts_at=meeting.starts_at,
        location=meeting.location,
        items=[AgendaEntry(position=i.position, title=i.title, kind=i.kind) for i in lines],
        action=(
            cited(
                "Read the papers before the meeting and declare any interest in an item at the "
                "start of it",
                c.cite("interests"),
            )
            + ". If you cannot come, send your apologies with the button below."
        ),
        ask=apologies(meeting),
    )
    notify(
        uow,
        agenda,
        people=members,
        key=f"{stem}:agenda",
        was_due=was_due,
        scope=body_scope(meeting),
        body_channel=meeting.body_id,
    )
    uow.record(
        "meeting.agenda_published", subject_of(meeting), before=before, after=state_of(meeting)
    )
    return True


def remind(uow: UnitOfWork, meeting: Meeting) -> bool:
    """The day-before reminder, to members who have not sent apologies."""
    c = current_constitution(uow.session)
    if meeting.status not in (MeetingStatus.PLANNED, MeetingStatus.AGENDA_PUBLISHED):
        return False
    apologised = {
        a.person_id
        for a in uow.session.exec(
            select(Attendance).where(
                Attendance.meeting_id == meeting.id,
                Attendance.status == AttendanceStatus.APOLOGIES,
            )
        )
    }
    people = [p for p in body_members(uow.session, c, meeting.body_id) if p.id not in apologised]
    body = c.body(meeting.body_id)
    notify(
        uow,
        Reminder(
            clause=meeting_clause(body),
            what=f"{body.name} meeting",
            due=meeting.starts_at,
            body=body.name,
            action=ATTEND,
            ask=apologies(meeting),
        ),
        people=people,
        key=f"{message_stem(meeting)}:reminder",
        scope=body_scope(meeting),
        body_channel=meeting.body_id,
    )
    uow.record("meeting.reminded", subject_of(meeting), before=None, after={"people": len(people)})
    return True


def chase_minutes(uow: UnitOfWork, meeting: Meeting) -> bool:
    """Draft minutes are due a set number of working days after the meeting: if they are not
    drafted by then, the chair and the coordinators are told."""
    c = current_constitution(uow.session)
    if meeting.status in NO_MINUTES_OWED:
        return False
    people = role_holders(uow.session, c.body(meeting.body_id).chair) + coordinators(uow.session, c)
    body = c.body(meeting.body_id)
    notify(
        uow,
        Reminder(  # TODO(notifications): a dedicated minutes_overdue template
            clause=meeting_clause(body),
            what=(
                f"the draft minutes of the {body.name} meeting of "
                f"{meeting.starts_at.day} {meeting.starts_at:%B %Y}"
            ),
            due=step_times(c, meeting.starts_at)[MINUTES_DUE],
            body=body.name,
            action=(
                f"The draft minutes were due within {c.reminders.minutes_due} working days of "
                "the meeting. Please send them to the governance coordinator."
            ),
        ),
        people=people,
        key=f"{message_stem(meeting)}:minutes-overdue",
    )
    uow.record("meeting.minutes_overdue", subject_of(meeting), before=None, after=state_of(meeting))
    return True


def compose_at_deadline(uow: UnitOfWork, meeting: Meeting) -> bool:
    """At the items deadline the agenda is composed (once: items submitted since are refused)."""
    if meeting.status != MeetingStatus.PLANNED or composed(items_of(uow.session, meeting.id or 0)):
        return False
    compose_agenda(uow, meeting_id=meeting.id or 0)
    return True


# --- the steps as the step engine runs them --------------------------------------------------


def items_deadline_passed(session: Session, step: Step, now: datetime) -> str | None:
    """20.4.1, 21.4.1, 22.4.1 with 23.1: a call for items at or after the items deadline would
    ask for contributions nobody can send any more."""
    meeting = load_meeting(session, step.subject_id)
    deadline = step_times(current_constitution(session), meeting.starts_at)[ITEMS_DEADLINE]
    if now >= deadline:
        return f"the items deadline passed at {deadline.isoformat()}"
    return None


def meeting_started(session: Session, step: Step, now: datetime) -> str | None:
    """20.4.1, 21.4.1, 22.4.1: a notice or reminder of a meeting that has started helps nobody."""
    meeting = load_meeting(session, step.subject_id)
    if now >= meeting.starts_at:
        return f"the meeting started at {meeting.starts_at.isoformat()}"
    return None


def _on_meeting(
    do: Callable[[UnitOfWork, Meeting, datetime | None], bool],
) -> Callable[[UnitOfWork, Firing[NoParams]], bool]:
    """A meeting step's act: `do` on the meeting (told when the step was due if it says late),
    unless the meeting was cancelled: its steps then do nothing."""

    def act(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
        meeting = load_meeting(uow.session, firing.subject_id)
        return meeting.status != MeetingStatus.CANCELLED and do(uow, meeting, firing.was_due)

    return act


STEP_KINDS: tuple[StepKind[NoParams], ...] = (
    # A call found late but before the items deadline still asks, saying it is late.
    StepKind(
        SPECS[CALL_FOR_ITEMS],
        lock=load_meeting,
        act=_on_meeting(
            lambda uow, meeting, was_due: call_for_items(uow, meeting, was_due=was_due)
        ),
        late=LatePolicy(skip_if=(items_deadline_passed,), says_late=True),
    ),
    StepKind(
        SPECS[ITEMS_DEADLINE],
        lock=load_meeting,
        act=_on_meeting(lambda uow, meeting, _: compose_at_deadline(uow, meeting)),
        late=ALWAYS,
    ),
    StepKind(
        SPECS[AGENDA],
        lock=load_meeting,
        act=_on_meeting(
            lambda uow, meeting, was_due: publish_agenda(uow, meeting, was_due=was_due)
        ),
        late=LatePolicy(skip_if=(meeting_started,), says_late=True),
    ),
    StepKind(
        SPECS[REMINDER],
        lock=load_meeting,
        act=_on_meeting(lambda uow, meeting, _: remind(uow, meeting)),
        late=LatePolicy(skip_if=(meeting_started, CoveredBy(SPECS[AGENDA]))),
    ),
    StepKind(
        SPECS[MINUTES_DUE],
        lock=load_meeting,
        act=_on_meeting(lambda uow, meeting, _: chase_minutes(uow, meeting)),
        late=ALWAYS,
    ),
)
