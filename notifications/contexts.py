"""What each kind of message is given to show: one validated pydantic model per kind.

A flow or command computes every date, majority and deadline; a template only displays these
fields. Unknown extra keys are ignored (commands may record more than a template shows); a missing
or malformed field is an error before anything is rendered or sent.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.errors import WctError


class MessageContext(BaseModel):
    """What every message says: to whom, under which MoU clause, and what to do."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    recipient: str = Field(description="The recipient's name, as they are greeted.")
    clause: str = Field(description="The MoU clause this step implements, e.g. 20.4.")
    action: str = Field(description="What the recipient should do, in one or two sentences.")
    was_due: datetime | None = Field(
        default=None, description="Set only when the message is sent late: when it was due."
    )


class MeetingNotice(MessageContext):
    """A meeting is planned or changed; carries a calendar invite (METHOD:REQUEST)."""

    body: str
    starts_at: datetime
    ends_at: datetime
    location: str | None = None
    ical_uid: str
    ical_sequence: int = Field(ge=0)
    items_due: datetime | None = Field(default=None, description="Last time to submit items.")
    changed: bool = Field(default=False, description="An update of a notice already sent.")

    @model_validator(mode="before")
    @classmethod
    def _changed_from_sequence(cls, data: Any) -> Any:
        """A notice with SEQUENCE above 0 updates one already sent, unless the caller says."""
        if isinstance(data, dict) and "changed" not in data:
            return {**data, "changed": int(data.get("ical_sequence") or 0) > 0}
        return data


class MeetingCancelled(MessageContext):
    """A meeting is cancelled; carries METHOD:CANCEL for the same UID, sequence raised."""

    body: str
    starts_at: datetime
    ends_at: datetime
    location: str | None = None
    ical_uid: str
    ical_sequence: int = Field(ge=0)
    reason: str | None = None


class CallForItems(MessageContext):
    body: str
    starts_at: datetime
    items_due: datetime


class AgendaEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    position: int
    title: str
    kind: str = "submitted"


class Agenda(MessageContext):
    body: str
    starts_at: datetime
    location: str | None = None
    items: list[AgendaEntry]
    papers: str | None = Field(default=None, description="Link to the meeting papers.")


class Reminder(MessageContext):
    """A step the recipient owes is due soon (T-1 and similar)."""

    what: str
    due: datetime
    body: str | None = None


class ReportRequest(MessageContext):
    report: str
    period: str
    from_body: str
    to_body: str
    due_on: date


class ReportOverdue(ReportRequest):
    """Escalation: a report is past its due date."""

    days_overdue: int = Field(ge=1)
    escalated_to: str


class ReviewDue(MessageContext):
    review: str
    year: int
    owner_body: str
    due_on: date


class RiskEscalated(MessageContext):
    risk_id: int
    title: str
    likelihood: int
    impact: int
    score: int
    threshold: int
    reason: str
    body: str


class RiskReviewOverdue(MessageContext):
    risk_id: int
    title: str
    score: int
    due: date


class DisputeStage(MessageContext):
    dispute_id: int
    title: str
    stage: str
    parties: list[str]
    deadline: date
    reason: str | None = None


class CallToAccount(MessageContext):
    case_id: int
    kind: str = Field(description="call_to_account or evidence_request")
    organisation: str
    evidence: str
    status: str
    event: str
    proposed_deadline: date | None = None
    agreed_deadline: date | None = None


class ApprovalRequest(MessageContext):
    request_id: int
    title: str
    gate: str
    from_body: str
    approver_body: str
    decision: str | None = Field(default=None, description="approved | refused, once decided.")


CONTEXTS: dict[str, type[MessageContext]] = {
    "meeting_notice": MeetingNotice,
    "meeting_cancelled": MeetingCancelled,
    "call_for_items": CallForItems,
    "agenda": Agenda,
    "reminder": Reminder,
    "report_request": ReportRequest,
    "report_overdue": ReportOverdue,
    "review_due": ReviewDue,
    "risk_escalated": RiskEscalated,
    "risk_review_overdue": RiskReviewOverdue,
    "dispute_stage": DisputeStage,
    "call_to_account": CallToAccount,
    "approval_request": ApprovalRequest,
}

#: Kinds whose email carries a calendar invite.
INVITE_KINDS = frozenset({"meeting_notice", "meeting_cancelled"})


class ContextInvalid(WctError):
    """The data queued for a message does not fit its kind: a bug upstream, never retried."""


def validate_context(kind: str, data: dict[str, Any]) -> MessageContext:
    """The validated context of `kind`, or ContextInvalid naming the kind and the fields."""
    model = CONTEXTS.get(kind)
    if model is None:
        raise ContextInvalid(
            f"unknown message kind '{kind}' (known: {', '.join(sorted(CONTEXTS))})"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ContextInvalid(f"context for '{kind}' is invalid: {problems}") from None
