"""One list of every event-driven case: its stage, whom it waits on, and until when."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlmodel import Session, col, select

from models.accountability import waiting_on
from models.disputes import parties_of
from models.tables import ApprovalRequest, CallToAccount, Dispute, Person, Risk


@dataclass(frozen=True)
class CaseView:
    kind: str
    id: int
    title: str
    stage: str
    open: bool
    waiting_on: str | None
    until: str | None
    parties: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_cases(session: Session, *, only_open: bool = False) -> list[CaseView]:
    views: list[CaseView] = []
    for risk in session.exec(select(Risk).order_by(col(Risk.id))):
        owner = session.get(Person, risk.owner_person_id)
        is_open = risk.status in ("managed", "escalated")
        views.append(
            CaseView(
                "risk",
                risk.id or 0,
                risk.title,
                risk.status,
                is_open,
                "board" if risk.status == "escalated" else (owner.pseudonym if owner else None),
                None if risk.status == "escalated" else str(risk.review_due_on),
                [],
            )
        )
    for dispute in session.exec(select(Dispute).order_by(col(Dispute.id))):
        is_open = dispute.stage != "closed"
        views.append(
            CaseView(
                "dispute",
                dispute.id or 0,
                dispute.title,
                dispute.stage if is_open else f"closed ({dispute.outcome})",
                is_open,
                "parties" if is_open else None,
                str(dispute.stage_deadline) if dispute.stage_deadline else None,
                sorted(parties_of(session, dispute.id or 0)),
            )
        )
    for case in session.exec(select(CallToAccount).order_by(col(CallToAccount.id))):
        until = case.agreed_deadline or case.negotiation_ends_on
        views.append(
            CaseView(
                case.kind,
                case.id or 0,
                case.evidence.splitlines()[0][:80],
                case.status,
                case.status != "closed",
                waiting_on(case),
                str(until) if until and case.status != "closed" else None,
                [case.organisation_id],
            )
        )
    for request in session.exec(select(ApprovalRequest).order_by(col(ApprovalRequest.id))):
        views.append(
            CaseView(
                "approval",
                request.id or 0,
                request.title,
                request.status,
                request.status == "waiting",
                request.approver_body_id if request.status == "waiting" else None,
                None,
                [],
            )
        )
    return [v for v in views if v.open] if only_open else views
