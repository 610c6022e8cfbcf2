"""Approval gates: commissioning linked to safeguarding needs the WSCB's approval (11.3.5); the
Executive's key strategic developments need the Board's final approval (21.1.1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlmodel import Session, col, select

from models.casework import chairs, clean_text, locked, notify, trigger_key
from models.commands import current_constitution
from models.constitution import Action, ApprovalGate, Constitution
from models.errors import NotFound, Refused
from models.messages import ApprovalRequest as ApprovalMessage
from models.messages import Ask, revision_key
from models.permissions import Scope
from models.tables import ApprovalRequest
from models.uow import UnitOfWork


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
    )
    session.add(request)
    session.flush()
    assert request.id is not None
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
        raise Refused(
            f"approval request #{request_id} was already {request.status}", clause=g.clause
        )
    before = {"status": request.status}
    request.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REFUSED
    request.decided_at = uow.clock.now()
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
