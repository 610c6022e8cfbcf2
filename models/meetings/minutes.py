"""A meeting's minutes: drafted from what was recorded, due a set number of working days after
the meeting, and approved at the body's next meeting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from models.casework import notify, settle
from models.clock import local, local_day
from models.commands import current_constitution
from models.errors import Refused
from models.meetings.actions import ActionInput, agree_actions, minutes_actions
from models.meetings.agenda import items_of
from models.meetings.kinds import MINUTES_DUE
from models.meetings.plan import (
    MeetingStatus,
    body_scope,
    day_key,
    load_meeting,
    meeting_clause,
    meeting_key,
    message_stem,
    state_of,
    subject_of,
)
from models.meetings.record import (
    DeclarationInput,
    MotionInput,
    attendance,
    declare_interest,
    held_meeting,
    record_attendance,
    record_motion,
)
from models.messages import MinutesPublished
from models.steps import at_five, body_members
from models.tables import Declaration, Meeting, Motion, Person
from models.uow import UnitOfWork


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
    actions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def minutes_data(session: Session, meeting_id: int) -> MinutesDraft:
    meeting = load_meeting(session, meeting_id)
    c = current_constitution(session)
    items = {i.id: i for i in items_of(session, meeting_id)}
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
        local(meeting.starts_at).isoformat(),
        meeting.location,
        attendance(session, meeting_id),
        [f"{i.position}. {i.title}" for i in items.values()],
        declarations,
        motions,
        minutes_actions(session, meeting_id),
    )


def draft_minutes(uow: UnitOfWork, *, meeting_id: int) -> MinutesDraft:
    """Draft the minutes from what was recorded; the minutes-due step then stops."""
    session = uow.session
    meeting = held_meeting(session, meeting_id)
    draft = minutes_data(session, meeting_id)
    if meeting.status == MeetingStatus.HELD:
        before = state_of(meeting)
        meeting.status = MeetingStatus.MINUTES_DRAFTED
        session.add(meeting)
        settle(session, subject=subject_of(meeting), now=uow.clock.now(), kinds=[MINUTES_DUE])
        uow.record(
            "meeting.minutes_drafted",
            subject_of(meeting),
            before=before,
            after={**state_of(meeting), "motions": len(draft.motions)},
        )
        _tell_members(uow, meeting, approved=False)
    return draft


def _tell_members(uow: UnitOfWork, meeting: Meeting, *, approved: bool) -> None:
    """The body's members get the minutes, drafted or approved, with the papers attached."""
    c = current_constitution(uow.session)
    body = c.body(meeting.body_id)
    action = (
        "Nothing: they are the record of the meeting."
        if approved
        else "Read them before the next meeting, where they are approved; tell the coordinator "
        "of any correction."
    )
    notify(
        uow,
        MinutesPublished(
            clause=meeting_clause(body),
            body=body.name,
            starts_at=meeting.starts_at,
            approved=approved,
            action=action,
        ),
        people=body_members(uow.session, c, meeting.body_id),
        key=f"{message_stem(meeting)}:minutes-{'approved' if approved else 'draft'}",
        scope=body_scope(meeting),
        body_channel=meeting.body_id,
    )


def approve_minutes(uow: UnitOfWork, *, meeting_id: int, at_meeting_id: int) -> None:
    """The minutes of a meeting are approved at the body's next meeting, once drafted."""
    session = uow.session
    meeting = load_meeting(session, meeting_id)
    at = load_meeting(session, at_meeting_id)
    if meeting.status == MeetingStatus.MINUTES_APPROVED:
        if meeting.minutes_approved_at_meeting_id == at_meeting_id:
            return
        raise Refused(f"minutes of {meeting_key(meeting)} were already approved")
    if meeting.status != MeetingStatus.MINUTES_DRAFTED:
        raise Refused(
            f"minutes of {meeting_key(meeting)} are not drafted yet (status {meeting.status})"
        )
    following = session.exec(
        select(Meeting)
        .where(
            Meeting.body_id == meeting.body_id,
            col(Meeting.starts_at) > meeting.starts_at,
            Meeting.status != MeetingStatus.CANCELLED,
        )
        .order_by(col(Meeting.starts_at))
    ).first()
    if following is None or following.id != at.id:
        raise Refused(
            f"minutes of {meeting_key(meeting)} are approved at {meeting.body_id}'s next "
            f"meeting, not at {meeting_key(at)}"
        )
    if at.status not in (MeetingStatus.HELD, MeetingStatus.MINUTES_DRAFTED):
        raise Refused(
            f"{meeting_key(at)} has no attendance recorded yet: approve the minutes when it is held"
        )
    before = state_of(meeting)
    meeting.status = MeetingStatus.MINUTES_APPROVED
    meeting.minutes_approved_at_meeting_id = at.id
    session.add(meeting)
    uow.record(
        "meeting.minutes_approved",
        subject_of(meeting),
        before=before,
        after={**state_of(meeting), "at": meeting_key(at)},
    )
    _tell_members(uow, meeting, approved=True)


# Once a meeting's minutes are drafted (or approved), or it was cancelled, none are owed.
NO_MINUTES_OWED = (
    MeetingStatus.MINUTES_DRAFTED,
    MeetingStatus.MINUTES_APPROVED,
    MeetingStatus.CANCELLED,
)


def minutes_overdue(meeting: Meeting, now: datetime) -> bool:
    """Draft minutes not in by the end of the day they were due (the day set by
    `reminders.minutes_due`, in working days after the meeting)."""
    if meeting.status in NO_MINUTES_OWED or meeting.minutes_due_on is None:
        return False
    return meeting.starts_at <= now and meeting.minutes_due_on <= last_closed_day(now)


def last_closed_day(now: datetime) -> date:
    """The last day whose end (17:00, `at_five`) has passed at `now`: minutes due on it or
    before and not in are overdue."""
    today = local_day(now)
    return today if at_five(today) <= now else today - timedelta(days=1)


def overdue_minutes(session: Session, now: datetime) -> list[tuple[str, date]]:
    """(meeting key, day due) of every meeting whose draft minutes are overdue at `now`
    (`minutes_overdue`, asked of the database: the columns it needs, not whole meetings)."""
    rows = session.exec(
        select(col(Meeting.body_id), col(Meeting.starts_at), col(Meeting.minutes_due_on))
        .where(
            col(Meeting.status).not_in(NO_MINUTES_OWED),
            col(Meeting.minutes_due_on).is_not(None),
            col(Meeting.minutes_due_on) <= last_closed_day(now),
            col(Meeting.starts_at) <= now,
        )
        .order_by(col(Meeting.starts_at))
    ).all()
    return [(day_key(body_id, starts_at), due) for body_id, starts_at, due in rows if due]


def record_meeting(
    uow: UnitOfWork,
    *,
    meeting_id: int,
    present: Sequence[str],
    apologies: Sequence[str] = (),
    declarations: Sequence[DeclarationInput] = (),
    motions: Sequence[MotionInput] = (),
    actions: Sequence[ActionInput] = (),
) -> MinutesDraft:
    """Everything recorded after a meeting, all or nothing: attendance, declarations of interest
    (18.1), each motion decided by the 6.2 rule, the actions agreed (12.1, 21.2.1: each with an
    owner, a due date, its reminders and escalation), then the draft minutes."""
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
    agree_actions(uow, meeting_id=meeting_id, actions=actions)
    return draft_minutes(uow, meeting_id=meeting_id)
