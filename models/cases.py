"""One list of every event-driven case: its stage, whom it waits on, and until when."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from models.accountability import AccountKind, AccountStatus, waiting_on
from models.approvals import ApprovalStatus
from models.audit import revision
from models.commands import current_constitution
from models.disputes import DisputeStage, is_final, parties_of
from models.errors import NotFound, cited
from models.risks import OPEN as OPEN_RISK
from models.risks import RiskStatus
from models.tables import (
    ApprovalRequest,
    Body,
    CallToAccount,
    Dispute,
    Organisation,
    Person,
    Risk,
)


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
        is_open = risk.status in OPEN_RISK
        escalated = risk.status == RiskStatus.ESCALATED
        views.append(
            CaseView(
                "risk",
                risk.id or 0,
                risk.title,
                risk.status,
                is_open,
                "board" if escalated else (owner.pseudonym if owner else None),
                None if escalated else str(risk.review_due_on),
                [],
            )
        )
    for dispute in session.exec(select(Dispute).order_by(col(Dispute.id))):
        is_open = dispute.stage != DisputeStage.CLOSED
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
        open_case = case.status != AccountStatus.CLOSED
        views.append(
            CaseView(
                case.kind,
                case.id or 0,
                case.evidence.splitlines()[0][:80],
                case.status,
                open_case,
                waiting_on(case),
                str(until) if until and open_case else None,
                [case.organisation_id],
            )
        )
    for request in session.exec(select(ApprovalRequest).order_by(col(ApprovalRequest.id))):
        waiting = request.status == ApprovalStatus.WAITING
        views.append(
            CaseView(
                "approval",
                request.id or 0,
                request.title,
                request.status,
                waiting,
                request.approver_body_id if waiting else None,
                None,
                [],
            )
        )
    return [v for v in views if v.open] if only_open else views


class Form(StrEnum):
    """The answer a case is waiting for (the UI shows a form of this kind)."""

    DISPUTE_OUTCOME = "dispute_outcome"
    ADR_RESULT = "adr_result"
    DEADLINE_ANSWER = "deadline_answer"
    FORMAL_RESPONSE = "formal_response"
    RESPONSE_JUDGEMENT = "response_judgement"
    RISK_ACTION = "risk_action"
    BOARD_ASSESSMENT = "board_assessment"
    APPROVAL_DECISION = "approval_decision"


@dataclass(frozen=True)
class Awaiting:
    """What an open case waits for now; `revision` changes with every audited transition."""

    subject: str
    form: Form
    stage: str
    description: str
    revision: int
    waiting_on: str = ""
    until: date | None = None

    @property
    def state_message(self) -> str:
        """One line for the waiting run's state in the Prefect UI: who it waits on, until when."""
        by = f" until {self.until.day} {self.until:%B %Y}" if self.until else ""
        return f"Waiting on {self.waiting_on}{by}" if self.waiting_on else self.description


def open_waits(session: Session) -> dict[str, Awaiting]:
    """What every open case waits on, by its subject (`account:3`)."""
    views = list_cases(session, only_open=True)
    waits = (awaiting(session, view.kind, view.id) for view in views)
    return {wait.subject: wait for wait in waits if wait is not None}


def _organisation(session: Session, organisation_id: str) -> str:
    row = session.get(Organisation, organisation_id)
    return row.name if row is not None else organisation_id


def _body(session: Session, body_id: str) -> str:
    row = session.get(Body, body_id)
    return row.name if row is not None else body_id


def awaiting(session: Session, kind: str, case_id: int) -> Awaiting | None:
    """The answer the case waits on, or None once it is closed."""
    subject = f"{SUBJECT_PREFIX[kind]}:{case_id}"
    rev = revision(session, subject)
    c = current_constitution(session)
    if kind == "dispute":
        dispute = session.get(Dispute, case_id)
        if dispute is None or dispute.stage == DisputeStage.CLOSED:
            return None
        final = is_final(c, dispute.stage)
        form = Form.ADR_RESULT if final else Form.DISPUTE_OUTCOME
        return Awaiting(
            subject,
            form,
            dispute.stage,
            f"Dispute #{case_id} '{dispute.title}' is at {dispute.stage.replace('_', ' ')} until "
            f"{dispute.stage_deadline}. "
            + cited("A party's representative records the outcome", c.cite("disputes"))
            + ".",
            rev,
            waiting_on="the representatives of "
            + " and ".join(_organisation(session, o) for o in sorted(parties_of(session, case_id))),
            until=dispute.stage_deadline,
        )
    if kind in (AccountKind.CALL_TO_ACCOUNT, AccountKind.EVIDENCE_REQUEST):
        case = session.get(CallToAccount, case_id)
        if case is None or case.status == AccountStatus.CLOSED:
            return None
        forms = {
            AccountStatus.NEGOTIATING: Form.DEADLINE_ANSWER,
            AccountStatus.AWAITING_RESPONSE: Form.FORMAL_RESPONSE,
            AccountStatus.OVERDUE: Form.FORMAL_RESPONSE,
            AccountStatus.RESPONDED: Form.RESPONSE_JUDGEMENT,
        }
        return Awaiting(
            subject,
            forms[AccountStatus(case.status)],
            case.status,
            cited(
                f"Call to account #{case_id} ({case.organisation_id}) is {case.status}; waiting "
                f"on the {waiting_on(case)}",
                c.cite("call_to_account"),
            )
            + f". Proposed deadline {case.proposed_deadline}, agreed "
            f"{case.agreed_deadline or 'not yet'}.",
            rev,
            waiting_on=(
                _organisation(session, case.organisation_id)
                if waiting_on(case) == "partner"
                else "the Safeguarding Board's chair"
            ),
            until=case.agreed_deadline or case.proposed_deadline,
        )
    if kind == "risk":
        risk = session.get(Risk, case_id)
        if risk is None or risk.status in (RiskStatus.CLOSED, RiskStatus.ASSESSED):
            return None
        escalated = risk.status == RiskStatus.ESCALATED
        return Awaiting(
            subject,
            Form.BOARD_ASSESSMENT if escalated else Form.RISK_ACTION,
            risk.status,
            f"Risk #{case_id} '{risk.title}' (score {risk.likelihood * risk.impact}) is "
            + cited(
                "escalated: the Board records its formal assessment"
                if escalated
                else f"managed by the Executive; next review by {risk.review_due_on}",
                c.cite("risk"),
            )
            + ".",
            rev,
            waiting_on="the Board's formal assessment" if escalated else "the risk's owner",
            until=None if escalated else risk.review_due_on,
        )
    if kind == "approval":
        request = session.get(ApprovalRequest, case_id)
        if request is None or request.status != ApprovalStatus.WAITING:
            return None
        return Awaiting(
            subject,
            Form.APPROVAL_DECISION,
            request.status,
            cited(
                f"'{request.title}' waits on {request.approver_body_id}'s decision", request.clause
            )
            + ".",
            rev,
            waiting_on=f"the decision of {_body(session, request.approver_body_id)}",
            until=request.due_on,
        )
    raise NotFound(f"unknown case kind '{kind}'")


SUBJECT_PREFIX = {
    "dispute": "dispute",
    "call_to_account": "account",
    "evidence_request": "account",
    "risk": "risk",
    "approval": "approval",
}
