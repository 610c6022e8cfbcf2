"""Plan a body's meetings by its cadence (20.4.1, 21.4.1, 22.4.1), time their steps, find and
load a meeting, and cancel one that has not been held."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import Session, select

from models.calendar import add_working_days, meetings_between
from models.casework import clean_text, notify, settle
from models.commands import current_constitution
from models.constitution import Action, Body, BodyKind, Constitution
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
from models.uow import UnitOfWork


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
    return f"meeting:{meeting.body_id}:{meeting.starts_at.date().isoformat()}"


def subject_of(meeting: Meeting) -> str:
    """`meeting:17`: what the meeting's audit events and steps are about."""
    return f"meeting:{meeting.id}"


def meeting_clause(body: Body) -> str:
    """The clause that has the body meet, as the constitution gives it for the body; without one,
    by its kind: the Board 20.4.1, the Executive 21.4.1, every other body 22.4.1 (as each
    agrees)."""
    if body.clause:
        return body.clause
    return {BodyKind.BOARD: "20.4.1", BodyKind.EXECUTIVE: "21.4.1"}.get(body.kind, "22.4.1")


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
    start = at_nine(day).replace(hour=0)
    end = start + timedelta(hours=23, minutes=59)
    found = meetings_between(body.cadence.rrule, body.cadence.first_local, start, end)
    if not found:
        upcoming = body.cadence.next_meetings(start, 1)
        hint = f" (next: {upcoming[0].date().isoformat()})" if upcoming else ""
        raise InvalidInput(f"{body_id} does not meet on {day.isoformat()} by its cadence{hint}")
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
    body = body_of(c, body_id)
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
        minutes_due_on=times[MINUTES_DUE].date(),
    )
    session.add(meeting)
    session.flush()
    uow.record("meeting.planned", subject_of(meeting), before=None, after=state_of(meeting))
    stem = meeting_key(meeting)
    assert meeting.id is not None
    steps = [
        plan_step(
            session,
            SPECS[kind],
            key=f"{stem}:{kind.removeprefix('meeting.')}",
            subject_id=meeting.id,
            due_at=due,
        )
        for kind, due in times.items()
    ]
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
        raise NotFound(f"no meeting #{meeting_id}")
    return meeting


def find_meeting(session: Session, body_id: str, day: date) -> Meeting:
    """The planned meeting of `body_id` on `day`, or a clear error."""
    for meeting in session.exec(select(Meeting).where(Meeting.body_id == body_id)):
        if meeting.starts_at.date() == day:
            return meeting
    raise NotFound(f"no meeting of {body_id} planned on {day.isoformat()} (run the cycle first)")


def next_meeting_days(c: Constitution, body_id: str, after: datetime, count: int) -> list[date]:
    """20.4.1 / 21.4.1 / 22.4.1: the dates of the body's next `count` meetings after `after`."""
    body = body_of(c, body_id)
    if body.cadence is None:
        raise InvalidInput(f"{body_id} has no meeting cadence in the constitution")
    return [d.date() for d in body.cadence.next_meetings(after, count)]


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
    return MeetingNotice(**_invite(c, meeting), action=ATTEND, ask=apologies(meeting))


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
    )
    uow.record("meeting.cancelled", subject_of(meeting), before=before, after=state_of(meeting))
    return True
