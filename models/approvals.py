"""Approval gates: commissioning linked to safeguarding needs the WSCB's approval (11.3.5); the
Executive's key strategic developments need the Board's final approval (21.1.1).

A request has a date by which the approving body should decide (the gate's `decide_within`
working days): its chairs are reminded before it and told, with the proposing body's chairs and
the coordinators, when it passes. Until the approving body approves, no other body may decide an
agenda item put forward under the request (`hold`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session, col, select

from models.calendar import add_working_days
from models.casework import chairs, clean_text, coordinators, notify, settle, trigger_key
from models.commands import current_constitution
from models.constitution import Action, ApprovalGate, Constitution
from models.errors import NotFound
from models.messages import ApprovalRequest as ApprovalMessage
from models.messages import Ask, Reminder, revision_key
from models.permissions import Scope
from models.steps import (
    ALWAYS,
    DaysBefore,
    Firing,
    LatePolicy,
    NoParams,
    StepKind,
    StepSpec,
    Subject,
    SupersededBy,
    at_five,
    at_nine,
)
from models.steps import plan as plan_step
from models.tables import AgendaItem, ApprovalRequest
from models.uow import UnitOfWork, locked


class ApprovalStatus(StrEnum):
    """A proposal waits on the approving body, which approves or refuses it, once."""

    WAITING = "waiting"
    APPROVED = "approved"
    REFUSED = "refused"


@dataclass(frozen=True)
class ApprovalResult:
    request_id: int
    created: bool
    status: str
    approver_body: str


def gate(c: Constitution, gate_id: str) -> ApprovalGate:
    for g in c.approval_gates:
        if g.id == gate_id:
            return g
    known = ", ".join(g.id for g in c.approval_gates) or "none"
    raise NotFound(f"unknown approval gate '{gate_id}' (known: {known})")


def scope_of(g: ApprovalGate) -> Scope:
    """What an approval's grants refer to: the proposing body (the one the request is about)
    and the approving body."""
    return Scope(body=g.from_body, approver_body=g.approver_body, proposer_body=g.from_body)


def _subject(request: ApprovalRequest) -> str:
    return f"approval:{request.id}"


def _result(request: ApprovalRequest, created: bool = False) -> ApprovalResult:
    assert request.id is not None
    return ApprovalResult(request.id, created, request.status, request.approver_body_id)


def request_approval(uow: UnitOfWork, *, gate_id: str, title: str) -> ApprovalResult:
    """Ask the approving body; the request waits on its next agenda. The same title twice at the
    same gate is one request."""
    session, c = uow.session, current_constitution(uow.session)
    g = gate(c, gate_id)
    title = clean_text(title, what="title", limit=300)
    key = trigger_key("approval", g.id, title)
    existing = session.exec(
        select(ApprovalRequest).where(ApprovalRequest.trigger_key == key)
    ).first()
    if existing is not None:
        return _result(existing)
    request = ApprovalRequest(
        trigger_key=key,
        gate=g.id,
        title=title,
        clause=g.clause,
        from_body_id=g.from_body,
        approver_body_id=g.approver_body,
        status=ApprovalStatus.WAITING,
        requested_at=uow.clock.now(),
        due_on=add_working_days(uow.clock.now().date(), g.decide_within),
    )
    session.add(request)
    session.flush()
    assert request.id is not None
    _plan_chasers(uow, request)
    uow.record(
        "approval.requested",
        _subject(request),
        before=None,
        after={"gate": g.id, "status": request.status, "approver": g.approver_body},
    )
    notify(
        uow,
        ApprovalMessage(
            clause=g.clause,
            request_id=request.id,
            title=title,
            gate=g.title,
            from_body=c.body(g.from_body).name,
            approver_body=c.body(g.approver_body).name,
            action=(
                f"The proposal goes on the agenda of the next {c.body(g.approver_body).name} "
                "meeting. Once it has decided, record its decision with the button below."
            ),
            ask=Ask(action=Action.APPROVAL_DECIDE, subject=_subject(request)),
        ),
        people=chairs(session, c, g.approver_body),
        key=revision_key(session, _subject(request), "requested"),
        scope=scope_of(g),
    )
    return _result(request, created=True)


def lock(session: Session, request_id: int) -> ApprovalRequest:
    """The approval request, locked for this transaction."""
    request = locked(session, ApprovalRequest, request_id)
    if request is None:
        raise NotFound(f"no approval request #{request_id}")
    return request


def decide_approval(
    uow: UnitOfWork, *, request_id: int, approve: bool, note: str
) -> ApprovalResult:
    """Record the approving body's decision, once."""
    session, c = uow.session, current_constitution(uow.session)
    request = lock(session, request_id)
    g = gate(c, request.gate)
    if request.status != ApprovalStatus.WAITING:
        raise c.refused(f"approval request #{request_id} was already {request.status}", g.clause)
    before = {"status": request.status}
    request.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REFUSED
    request.decided_at = uow.clock.now()
    settle(session, subject=_subject(request), now=uow.clock.now())  # the chasers stop
    request.decision_note = clean_text(note, what="note", limit=2000, multiline=True)
    session.add(request)
    uow.record(
        "approval.decided", _subject(request), before=before, after={"status": request.status}
    )
    assert request.id is not None
    notify(
        uow,
        ApprovalMessage(
            clause=g.clause,
            request_id=request.id,
            title=request.title,
            gate=g.title,
            from_body=c.body(g.from_body).name,
            approver_body=c.body(g.approver_body).name,
            decision=request.status,
            action=(
                f"Nothing more is needed: {c.body(g.approver_body).name} has {request.status} "
                "the proposal."
            ),
        ),
        people=chairs(session, c, request.from_body_id),
        key=revision_key(session, _subject(request), "decided"),
    )
    return _result(request)


def waiting_for(session: Session, body_id: str) -> list[ApprovalRequest]:
    """Requests awaiting `body_id`'s decision: a standing item of its agenda."""
    query = (
        select(ApprovalRequest)
        .where(
            ApprovalRequest.approver_body_id == body_id,
            ApprovalRequest.status == ApprovalStatus.WAITING,
        )
        .order_by(col(ApprovalRequest.requested_at))
    )
    return list(session.exec(query).all())


# --- deadlines and chasers -------------------------------------------------------------------

REMINDER_STEP = StepSpec("approval.reminder", Subject.APPROVAL, DaysBefore)
OVERDUE_STEP = StepSpec("approval.overdue", Subject.APPROVAL, NoParams)


def _plan_chasers(uow: UnitOfWork, request: ApprovalRequest) -> None:
    """A reminder to the approving body's chairs at each of `reminders.report_reminders`
    working days before the request's date (those still to come), and the overdue notice at
    17:00 on it."""
    c = current_constitution(uow.session)
    assert request.id is not None and request.due_on is not None
    stem, now = _subject(request), uow.clock.now()
    for days in sorted(set(c.reminders.report_reminders), reverse=True):
        due_at = at_nine(add_working_days(request.due_on, -days))
        if due_at > now:
            plan_step(
                uow.session,
                REMINDER_STEP,
                key=f"{stem}:reminder-{days}",
                subject_id=request.id,
                due_at=due_at,
                params=DaysBefore(days=days),
            )
    plan_step(
        uow.session,
        OVERDUE_STEP,
        key=f"{stem}:overdue",
        subject_id=request.id,
        due_at=at_five(request.due_on),
    )


def _chase(uow: UnitOfWork, firing: Firing[DaysBefore]) -> bool:
    """The approving body has not decided yet: its chairs are reminded of the date."""
    return _tell_undecided(uow, firing.subject_id, firing.key, overdue=False)


def _overdue(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    """The date has passed without a decision: the approving body's chairs, the proposing
    body's chairs and the coordinators are told."""
    return _tell_undecided(uow, firing.subject_id, firing.key, overdue=True)


def _tell_undecided(uow: UnitOfWork, request_id: int, key: str, *, overdue: bool) -> bool:
    """A chaser of a request still waiting (False once decided: nothing to chase)."""
    session = uow.session
    request = lock(session, request_id)
    if request.status != ApprovalStatus.WAITING or request.due_on is None:
        return False
    c = current_constitution(session)
    g = gate(c, request.gate)
    approver, proposer = c.body(g.approver_body).name, c.body(g.from_body).name
    people = chairs(session, c, g.approver_body)
    action = (
        f"{proposer} cannot decide this proposal until {approver} approves it. Record the "
        "decision with the button below."
    )
    if overdue:
        people += chairs(session, c, g.from_body) + coordinators(session, c)
        action = (
            f"{approver} has not decided by the date. Until it approves, {proposer} cannot "
            f"decide the proposal: please put it on {approver}'s next agenda, or record its "
            "decision with the button below."
        )
    notify(
        uow,
        Reminder(
            clause=g.clause,
            what=f'{approver}\'s decision on "{request.title}"' + (" (overdue)" if overdue else ""),
            due=at_five(request.due_on),
            body=approver,
            action=action,
            ask=Ask(action=Action.APPROVAL_DECIDE, subject=_subject(request)),
        ),
        people=list({p.id: p for p in people}.values()),
        key=key,
        scope=scope_of(g),
    )
    if overdue:
        after = {"due_on": request.due_on.isoformat()}
        uow.record("approval.overdue", _subject(request), before=None, after=after)
    return True


def _lock(session: Session, request_id: int) -> ApprovalRequest:
    return lock(session, request_id)


STEP_KINDS: tuple[StepKind[DaysBefore] | StepKind[NoParams], ...] = (
    StepKind(
        REMINDER_STEP,
        lock=_lock,
        act=_chase,
        late=LatePolicy(skip_if=(SupersededBy((REMINDER_STEP, OVERDUE_STEP)),)),
    ),
    StepKind(OVERDUE_STEP, lock=_lock, act=_overdue, late=ALWAYS),
)


# --- the gate holds ---------------------------------------------------------------------------


def hold(session: Session, *, item: AgendaItem, body_id: str, at: datetime) -> None:
    """11.3.5 / 21.1.1: a body other than the approving one may not decide an item put forward
    under an approval request until the approving body has approved it (refused: not at all).
    Refuses citing the gate's clause; does nothing for any other item."""
    if item.approval_id is None:
        return
    request = session.get(ApprovalRequest, item.approval_id)
    if request is None or request.approver_body_id == body_id:
        return  # the approving body's own decision on it is the approval itself
    c = current_constitution(session)
    approver = c.body(request.approver_body_id).name
    if request.status == ApprovalStatus.WAITING:
        due = f" (due by {request.due_on:%d %B %Y})" if request.due_on else ""
        raise c.refused(
            f'"{item.title}" waits on {approver}\'s approval{due}: it cannot be decided '
            f"at {at:%d %B %Y} until {approver} approves it",
            request.clause,
        )
    if request.status == ApprovalStatus.REFUSED:
        raise c.refused(
            f'"{item.title}" was refused by {approver}: it cannot be decided', request.clause
        )
