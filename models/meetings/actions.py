"""The action tracker and the decision log (12.1, 21.2.1: members take responsibility for
ensuring the agreed actions are carried out; 23.1: the agenda and minutes).

An action is agreed at a meeting, against one of its agenda items, with an owner (an active
member) and a due date after the meeting. It is recorded with the meeting's record, in the same
transaction. Its owner is reminded before it is due (the constitution's `report_reminders`, in
working days) and, if it is still open the first working day after, it is escalated to the chair
of the body whose meeting agreed it. Until it is done or dropped it returns, under "Matters
arising", on every later agenda of that body. Its owner, the body's chair or deputy, or a
coordinator (the constitution's `action.update`) marks it done, drops it, or gives it a new due
date, which re-plans its reminders.

The decision log is every motion recorded (6.2): its outcome, how it was decided and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from models.calendar import add_working_days, working_days_between
from models.casework import clean_text, distinct, notify, settle
from models.clock import local_day, local_zone
from models.commands import current_constitution
from models.constitution import Constitution
from models.errors import InvalidInput, NotFound, Refused
from models.meetings.plan import MeetingStatus, load_meeting, meeting_key
from models.messages import ActionOverdue, ActionReminder, revision_key
from models.permissions import Scope, UnknownMember, find_actor
from models.steps import (
    ALWAYS,
    DaysBefore,
    Firing,
    LatePolicy,
    NoParams,
    PlannedStep,
    StepKind,
    StepSpec,
    Subject,
    SupersededBy,
    at_nine,
    plan,
    role_holders,
)
from models.tables import AgendaItem, Meeting, MeetingAction, Motion, Person
from models.uow import UnitOfWork, locked

REMINDER = "action.reminder"
OVERDUE = "action.overdue"
REMINDER_STEP = StepSpec(REMINDER, Subject.ACTION, DaysBefore)
OVERDUE_STEP = StepSpec(OVERDUE, Subject.ACTION, NoParams)

#: An action's title on an agenda is kept within the agenda item's column.
_TITLE_LIMIT = 300


class ActionStatus(StrEnum):
    """An action is open until its owner (or the chair, or a coordinator) says it is done, or it
    is dropped with a note saying why."""

    OPEN = "open"
    DONE = "done"
    DROPPED = "dropped"


CLOSED = (ActionStatus.DONE, ActionStatus.DROPPED)


@dataclass(frozen=True)
class ActionInput:
    """An action as the meeting's record gives it: what, who owns it (an email or pseudonym), by
    when (a date, or `YYYY-MM-DD`), and the agenda item it was agreed under."""

    text: str
    owner: str
    due: date | str
    item: int | None = None


def subject_of(action: MeetingAction) -> str:
    """`action:3`: what the action's audit events and steps are about."""
    return Subject.ACTION.of(action.id or 0)


def overdue_at(due_on: date) -> datetime:
    """An action is due by the end of its day; it is escalated at 09:00 on the next working day."""
    return at_nine(add_working_days(due_on, 1))


def is_overdue(action: MeetingAction, now: datetime) -> bool:
    """Still open after its due day (the partnership's day)."""
    return action.status == ActionStatus.OPEN and local_day(now) > action.due_on


def _state(action: MeetingAction, owner: Person) -> dict[str, Any]:
    """What the audit trail keeps of an action: its owner by pseudonym, never by name."""
    return {
        "meeting": action.meeting_id,
        "text": action.text,
        "owner": owner.pseudonym,
        "due_on": action.due_on.isoformat(),
        "status": action.status,
        "note": action.note,
    }


def _due(value: date | str, *, what: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{what}: '{value}' is not a date (use YYYY-MM-DD)") from None


def _item(session: Session, meeting_id: int, position: int, *, what: str) -> AgendaItem:
    found = session.exec(
        select(AgendaItem).where(
            AgendaItem.meeting_id == meeting_id, AgendaItem.position == position
        )
    ).first()
    if found is None:
        raise InvalidInput(f"{what}: the meeting has no agenda item {position}")
    return found


def _owner(session: Session, who: str, *, what: str) -> Person:
    try:
        actor = find_actor(session, who)
    except UnknownMember:
        raise InvalidInput(f"{what}: no active member '{who}' (see `wct members list`)") from None
    person = session.get(Person, actor.person_id)
    assert person is not None
    return person


@dataclass(frozen=True)
class _Checked:
    text: str
    owner: Person
    due: date
    item: AgendaItem | None


def _check(session: Session, meeting: Meeting, n: int, given: ActionInput) -> _Checked:
    """One action of the record, checked: bad input names the action (1, 2, ...) and field."""
    what = f"action {n}"
    text = clean_text(given.text, what=f"{what}: text", limit=1000)
    owner = _owner(session, given.owner, what=f"{what}: owner")
    due = _due(given.due, what=f"{what}: due")
    held_on = local_day(meeting.starts_at)
    if due <= held_on:
        raise InvalidInput(
            f"{what}: due: {due.isoformat()} is not after the meeting ({held_on.isoformat()})"
        )
    item = None
    if given.item is not None:
        item = _item(session, meeting.id or 0, given.item, what=f"{what}: item")
    return _Checked(text, owner, due, item)


def agree_actions(
    uow: UnitOfWork, *, meeting_id: int, actions: Sequence[ActionInput]
) -> list[PlannedStep]:
    """12.1, 21.2.1: the actions agreed at a held meeting, each against an agenda item, with an
    owner who is an active member and a due date after the meeting; each with its reminders and
    its escalation planned. Every action is checked before any is written: a bad one names which
    action and field, and (in the record's transaction) nothing is written."""
    session = uow.session
    if not actions:
        return []
    meeting = load_meeting(session, meeting_id)
    if meeting.status not in (MeetingStatus.HELD, MeetingStatus.MINUTES_DRAFTED):
        raise Refused(
            f"{meeting_key(meeting)} has no attendance recorded yet (status {meeting.status}): "
            "actions are agreed at a meeting held"
        )
    checked = [_check(session, meeting, n, a) for n, a in enumerate(actions, start=1)]
    c = current_constitution(session)
    steps: list[PlannedStep] = []
    for one in checked:
        action = MeetingAction(
            meeting_id=meeting_id,
            agenda_item_id=one.item.id if one.item else None,
            text=one.text,
            owner_id=one.owner.id or 0,
            due_on=one.due,
            status=ActionStatus.OPEN,
            created_at=uow.clock.now(),
        )
        session.add(action)
        session.flush()
        uow.record(
            "action.agreed",
            subject_of(action),
            before=None,
            after={
                **_state(action, one.owner),
                "meeting": meeting_key(meeting),
                "item": one.item.position if one.item else None,
            },
        )
        steps += _plan_steps(uow, c, action)
    return steps


def _plan_steps(uow: UnitOfWork, c: Constitution, action: MeetingAction) -> list[PlannedStep]:
    """The reminders still ahead (in working days before the due date, as the constitution's
    `report_reminders` say) and the escalation, keyed by the action's revision: an action given
    a new due date gets new steps, even back on a date it had before."""
    session, now = uow.session, uow.clock.now()
    subject = subject_of(action)
    steps: list[PlannedStep] = []
    for days in sorted(set(c.reminders.report_reminders), reverse=True):
        due_at = at_nine(add_working_days(action.due_on, -days))
        if due_at > now:
            steps.append(
                plan(
                    session,
                    REMINDER_STEP,
                    key=revision_key(session, subject, f"reminder-{days}"),
                    subject_id=action.id or 0,
                    due_at=due_at,
                    params=DaysBefore(days=days),
                )
            )
    steps.append(
        plan(
            session,
            OVERDUE_STEP,
            key=revision_key(session, subject, "overdue"),
            subject_id=action.id or 0,
            due_at=overdue_at(action.due_on),
        )
    )
    return steps


def lock(session: Session, action_id: int) -> MeetingAction:
    """The action, locked for this transaction: a step and an update never interleave."""
    action = locked(session, MeetingAction, action_id)
    if action is None:
        raise NotFound(f"no action #{action_id}")
    return action


def scope_of(session: Session, action_id: int) -> Scope:
    """Who may update an action is judged for the body whose meeting agreed it, and its owner."""
    action = session.get(MeetingAction, action_id)
    if action is None:
        raise NotFound(f"no action #{action_id} (see `wct actions`)")
    meeting = session.get(Meeting, action.meeting_id)
    assert meeting is not None
    return Scope(body=meeting.body_id, owner=action.owner_id)


def update_action(
    uow: UnitOfWork,
    *,
    action_id: int,
    status: ActionStatus | None = None,
    due: date | None = None,
    note: str | None = None,
) -> MeetingAction:
    """12.1, 21.2.1: an open action is done, dropped (with a note saying why), or given a new due
    date after its meeting and not in the past. Its pending reminders and escalation stop; a new
    due date plans them again."""
    session = uow.session
    if (status is None) == (due is None):
        raise InvalidInput("say what changed: done, dropped, or a new due date")
    if status == ActionStatus.OPEN:
        raise InvalidInput("an action is updated to done or dropped, or given a new due date")
    action = lock(session, action_id)
    owner = session.get(Person, action.owner_id)
    meeting = session.get(Meeting, action.meeting_id)
    assert owner is not None and meeting is not None
    if action.status in CLOSED:
        c = current_constitution(session)
        raise c.refused(f"action #{action_id} is already {action.status}", c.cite("actions"))
    cleaned = None if note is None else clean_text(note, what="note", limit=2000, multiline=True)
    if status == ActionStatus.DROPPED and cleaned is None:
        raise InvalidInput("say why the action is dropped (a note)")
    now = uow.clock.now()
    before = _state(action, owner)
    if due is not None:
        held_on = local_day(meeting.starts_at)
        if due <= held_on or due < local_day(now):
            raise InvalidInput(
                f"the new due date {due.isoformat()} must be after the meeting "
                f"({held_on.isoformat()}) and not in the past"
            )
        if due == action.due_on:
            raise InvalidInput(f"action #{action_id} is already due on {due.isoformat()}")
        action.due_on = due
        event = "action.moved"
    else:
        assert status is not None
        action.status = status
        action.closed_at = now
        event = f"action.{status.value}"
    if cleaned is not None:
        action.note = cleaned
    session.add(action)
    settle(session, subject=subject_of(action), now=now)
    uow.record(event, subject_of(action), before=before, after=_state(action, owner))
    if due is not None:
        _plan_steps(uow, current_constitution(session), action)
    return action


# --- the steps as the step engine runs them: each False once the action is closed -----------


def _message_facts(session: Session, c: Constitution, action: MeetingAction) -> dict[str, Any]:
    meeting = session.get(Meeting, action.meeting_id)
    owner = session.get(Person, action.owner_id)
    assert meeting is not None and owner is not None
    item = session.get(AgendaItem, action.agenda_item_id) if action.agenda_item_id else None
    return {
        "clause": c.cite("actions"),
        "action_id": action.id or 0,
        "task": action.text,
        "owner": owner.name,
        "body": c.body(meeting.body_id).name,
        "agreed_on": local_day(meeting.starts_at),
        "item": f"{item.position}. {item.title}" if item else None,
        "due_on": action.due_on,
    }


TELL_COORDINATOR = (
    "When it is done, or if it cannot be done by then, tell the chair or the governance "
    "coordinator, who record it. Until then it stays on the body's agenda as a matter arising."
)


def _owner_if_active(session: Session, action: MeetingAction) -> list[Person]:
    owner = session.get(Person, action.owner_id)
    return [owner] if owner is not None and owner.active else []


def remind(uow: UnitOfWork, firing: Firing[DaysBefore]) -> bool:
    """Remind the owner of an open action before it is due; nothing once it is closed."""
    session, c = uow.session, current_constitution(uow.session)
    action = lock(session, firing.subject_id)
    if action.status != ActionStatus.OPEN:
        return False
    notify(
        uow,
        ActionReminder(
            **_message_facts(session, c, action),
            action=f"Carry out the action by {_day(action.due_on)}. {TELL_COORDINATOR}",
        ),
        people=_owner_if_active(session, action),
        key=firing.key,
    )
    uow.record(
        "action.reminded",
        subject_of(action),
        before=None,
        after={"step": f"reminder-{firing.params.days}"},
    )
    return True


def escalate(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    """12.1, 21.2.1: an action still open after its due date goes to the chair of the body that
    agreed it (and its owner is told)."""
    session, c = uow.session, current_constitution(uow.session)
    action = lock(session, firing.subject_id)
    if action.status != ActionStatus.OPEN:
        return False
    meeting = session.get(Meeting, action.meeting_id)
    assert meeting is not None
    body = c.body(meeting.body_id)
    chairs = role_holders(session, body.chair)
    late = max(1, working_days_between(action.due_on, local_day(uow.clock.now())))
    notify(
        uow,
        ActionOverdue(
            **_message_facts(session, c, action),
            action=(
                f"The action was due by {_day(action.due_on)}. If it is yours, carry it out now "
                f"or say when it will be done; otherwise {body.name}'s chair will follow it up. "
                f"{TELL_COORDINATOR}"
            ),
            escalated_to=f"the chair of {body.name}",
            days_overdue=late,
        ),
        people=distinct(chairs + _owner_if_active(session, action)),
        key=firing.key,
    )
    uow.record(
        "action.overdue",
        subject_of(action),
        before=None,
        after={"step": "overdue", "chairs": [p.pseudonym for p in chairs]},
    )
    return True


def _day(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


STEP_KINDS: tuple[StepKind[DaysBefore], StepKind[NoParams]] = (
    # Reminders due at once become the latest; a reminder after the escalation is due is moot.
    StepKind(
        REMINDER_STEP,
        lock=lock,
        act=remind,
        late=LatePolicy(skip_if=(SupersededBy((REMINDER_STEP, OVERDUE_STEP)),)),
    ),
    StepKind(OVERDUE_STEP, lock=lock, act=escalate, late=ALWAYS),
)


# --- matters arising: the open actions of a body's earlier meetings ---------------------------


def open_actions_before(session: Session, meeting: Meeting) -> list[MeetingAction]:
    """The open actions agreed at the body's meetings before `meeting`, by due date."""
    return list(
        session.exec(
            select(MeetingAction)
            .join(Meeting, col(Meeting.id) == col(MeetingAction.meeting_id))
            .where(
                Meeting.body_id == meeting.body_id,
                col(Meeting.starts_at) < meeting.starts_at,
                MeetingAction.status == ActionStatus.OPEN,
            )
            .order_by(col(MeetingAction.due_on), col(MeetingAction.id))
        ).all()
    )


def arising_title(action: MeetingAction, agreed_at: Meeting) -> str:
    """The agenda item of an open action, as stored: which action, when agreed, and what. Its
    owner's name and due date are added when the agenda is read (`arising_line`), so that no
    name is kept with the agenda or in the audit trail and a new due date shows."""
    agreed_on = local_day(agreed_at.starts_at)
    head = f"Action #{action.id} of {agreed_on.isoformat()}: "
    text = action.text
    if len(head) + len(text) > _TITLE_LIMIT:
        text = text[: _TITLE_LIMIT - len(head) - 3].rstrip() + "..."
    return f"{head}{text}"


def arising_line(session: Session, source: str | None, title: str) -> str:
    """The agenda line of the matters-arising item `title` (from `source`, `action:3`): the
    title with its owner's name and due date as they are now."""
    action_id = (source or "").removeprefix(f"{Subject.ACTION.value}:")
    action = session.get(MeetingAction, int(action_id)) if action_id.isdigit() else None
    if action is None:
        return title
    owner = session.get(Person, action.owner_id)
    name = owner.name if owner is not None else "owner unknown"
    return f"{title} ({name}, due {action.due_on.isoformat()})"


def minutes_actions(session: Session, meeting_id: int) -> list[dict[str, Any]]:
    """The actions agreed at a meeting as its minutes record them: owners by pseudonym, as the
    minutes name everyone."""
    rows = session.exec(
        select(MeetingAction, Person.pseudonym)
        .join(Person, col(Person.id) == col(MeetingAction.owner_id))
        .where(MeetingAction.meeting_id == meeting_id)
        .order_by(col(MeetingAction.id))
    ).all()
    out: list[dict[str, Any]] = []
    for action, pseudonym in rows:
        item = session.get(AgendaItem, action.agenda_item_id) if action.agenda_item_id else None
        out.append(
            {
                "id": action.id,
                "item": item.position if item else None,
                "text": action.text,
                "owner": pseudonym,
                "due": action.due_on.isoformat(),
                "status": action.status,
            }
        )
    return out


# --- the action tracker and the decision log, as the coordinator reads them -----------------


@dataclass(frozen=True)
class ActionRow:
    """One action as the tracker lists it: names, not pseudonyms (the coordinator's view)."""

    id: int
    body: str
    meeting: str
    item: int | None
    item_title: str | None
    text: str
    owner: str
    due_on: str
    status: str
    overdue: bool
    closed_at: str | None
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _local_day(when: datetime) -> str:
    return local_day(when).isoformat()


def action_rows(
    session: Session, *, now: datetime, body: str | None = None, open_only: bool = False
) -> list[ActionRow]:
    """Every action (of `body`; only open ones), by meeting, then due date."""
    if body is not None:
        current_constitution(session).body(body)
    query = (
        select(MeetingAction, Meeting, Person)
        .join(Meeting, col(Meeting.id) == col(MeetingAction.meeting_id))
        .join(Person, col(Person.id) == col(MeetingAction.owner_id))
        .order_by(col(Meeting.starts_at), col(MeetingAction.due_on), col(MeetingAction.id))
    )
    if body is not None:
        query = query.where(Meeting.body_id == body)
    if open_only:
        query = query.where(MeetingAction.status == ActionStatus.OPEN)
    rows: list[ActionRow] = []
    for action, meeting, owner in session.exec(query).all():
        item = session.get(AgendaItem, action.agenda_item_id) if action.agenda_item_id else None
        rows.append(
            ActionRow(
                id=action.id or 0,
                body=meeting.body_id,
                meeting=_local_day(meeting.starts_at),
                item=item.position if item else None,
                item_title=item.title if item else None,
                text=action.text,
                owner=owner.name,
                due_on=action.due_on.isoformat(),
                status=action.status,
                overdue=is_overdue(action, now),
                closed_at=action.closed_at.isoformat() if action.closed_at else None,
                note=action.note,
            )
        )
    return rows


@dataclass(frozen=True)
class DecisionRow:
    """One recorded motion (6.2): where and under which item, and how it was decided."""

    id: int
    body: str
    meeting: str
    item: int | None
    item_title: str | None
    motion: str
    outcome: str | None
    method: str | None
    explanation: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decision_log(
    session: Session,
    *,
    body: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[DecisionRow]:
    """6.2: every motion recorded (of `body`; at meetings from `start` to `end`, inclusive), in
    meeting order, with its outcome, method and explanation."""
    if body is not None:
        current_constitution(session).body(body)
    if start is not None and end is not None and end < start:
        raise InvalidInput(f"--to {end.isoformat()} is before --from {start.isoformat()}")
    query = (
        select(Motion, Meeting)
        .join(Meeting, col(Meeting.id) == col(Motion.meeting_id))
        .order_by(col(Meeting.starts_at), col(Motion.id))
    )
    if body is not None:
        query = query.where(Meeting.body_id == body)
    if start is not None:
        query = query.where(col(Meeting.starts_at) >= datetime.combine(start, time(), local_zone()))
    if end is not None:
        after = datetime.combine(end + timedelta(days=1), time(), local_zone())
        query = query.where(col(Meeting.starts_at) < after)
    rows: list[DecisionRow] = []
    for motion, meeting in session.exec(query).all():
        item = session.get(AgendaItem, motion.agenda_item_id) if motion.agenda_item_id else None
        rows.append(
            DecisionRow(
                id=motion.id or 0,
                body=meeting.body_id,
                meeting=_local_day(meeting.starts_at),
                item=item.position if item else None,
                item_title=item.title if item else None,
                motion=motion.text,
                outcome=motion.outcome,
                method=motion.method,
                explanation=motion.explanation,
            )
        )
    return rows
