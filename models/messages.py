"""What each kind of message is given to show, and how its key says what makes it distinct.

**Contexts.** One pydantic model per kind (`kind` names its template set). A command builds the
typed model and hands it to `models.casework.notify`, which checks it and writes it, serialised,
in the command's own transaction: a context its kind cannot show is a bug in wct
(`MessageMalformed`), raised at the command, so the command, its audit record and every message
roll back together. The dispatcher reads a stored context back through the same model
(`validate_context`; `ContextInvalid` if it does not fit, e.g. a row written by an older version).
A command computes every date, majority and deadline; a template only displays these fields. A
model may be a subclass of its kind's model carrying more than the template shows (the text of a
challenge, 7.2): the stored row keeps it, the template ignores it. `recipient` is filled per
person by `notify`.

**Keys.** A message's key is its stem plus the recipient's pseudonym and the channel; the outbox
queues a key once. The stem names what makes the message distinct:

- a message announcing a change of a case (a call to account agreed, a dispute escalated, an
  approval decided) names the subject's revision that change made (`revision_key`,
  `account:3:r5:agreed`): the same command retried after it committed is refused or finds the
  case as it left it (one message), while the same transition again later (a second agreement
  after a reopen) is a new revision, so a new message;
- a message a step sends without changing its subject (a reminder) is keyed by the step, whose key
  names its own occurrence (`account:3:r5:reminder-10`, planned by revision 5).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticSerializationError
from sqlmodel import Session

from models.audit import revision
from models.constitution import Action
from models.errors import WctError


class Ask(BaseModel):
    """What a message asks its recipient to do, as data: the action (as the constitution's
    `permissions` name it) on a subject (`meeting:12`, `report:7`). The dispatcher mints the
    link from it for exactly the one recipient (notifications/links.py), so no key and no token
    is ever stored; `notify` keeps it only for recipients the constitution lets take the action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    subject: str = Field(pattern=r"^[a-z]+:[0-9]+$", description="What the action is on.")


class Brand(BaseModel):
    """Whose message it is: the partnership, what it calls its agreement, whom to write to, and
    its logo (https only). Filled by `notify` from the constitution; a message stored before
    these were carried shows the defaults."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    partnership: str = Field(default="the partnership", description="The partnership's name.")
    agreement: str = Field(
        default="Memorandum of Understanding", description="The agreement's name, as cited."
    )
    agreement_short: str = Field(default="MoU", description="Its short name (Teams).")
    contact_name: str | None = Field(default=None, description="The coordinator to write to.")
    contact_email: str | None = None
    logo_url: str | None = Field(
        default=None, pattern=r"^https://[^\s\"'<>]+$", description="https only."
    )


class MessageContext(BaseModel):
    """What every message says: to whom, under which clause of the agreement, and what to do (in
    words, and, when it asks for something the recipient can do from the message, as an `Ask`).
    `cites` names the `clauses:` entry of the constitution whose clause `notify` puts in
    `clause` (none: the command gives it, from the constitution's meeting, report, review or
    gate). An empty clause: the file gives none, and the message cites none."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: ClassVar[str]
    cites: ClassVar[str | None] = None

    recipient: str = Field(
        default="", description="The recipient's name, as they are greeted (filled by notify)."
    )
    clause: str = Field(description="The clause this step implements, e.g. 20.4.1; or none.")
    brand: Brand = Field(default_factory=Brand, description="Whose message (filled by notify).")
    action: str = Field(description="What the recipient should do, in one or two sentences.")
    was_due: datetime | None = Field(
        default=None, description="Set only when the message is sent late: when it was due."
    )
    ask: Ask | None = Field(
        default=None, description="The action the message's button takes; none: information."
    )

    @field_serializer("*", mode="wrap", when_used="json")
    def _isoformat(self, value: Any, plain: SerializerFunctionWrapHandler) -> Any:
        """Times are stored as Python writes them (`+00:00`, not `Z`), with their own offset."""
        return value.isoformat() if isinstance(value, datetime) else plain(value)


class MeetingInvite(MessageContext):
    """What a message carrying a calendar invitation says of the meeting (the invite's UID and
    SEQUENCE: a change or cancellation updates the same entry in the recipient's calendar)."""

    body: str
    starts_at: datetime
    ends_at: datetime
    location: str | None = None
    ical_uid: str
    ical_sequence: int = Field(ge=0)


class MeetingNotice(MeetingInvite):
    """A meeting is planned or changed; carries a calendar invite (METHOD:REQUEST)."""

    kind = "meeting_notice"

    items_due: datetime | None = Field(default=None, description="Last time to submit items.")
    changed: bool = Field(default=False, description="An update of a notice already sent.")
    moved_from: datetime | None = Field(default=None, description="When it was, if it moved.")
    reason: str | None = Field(default=None, description="Why it moved.")
    extraordinary: bool = Field(default=False, description="Called off the body's cadence.")

    @model_validator(mode="before")
    @classmethod
    def _changed_from_sequence(cls, data: Any) -> Any:
        """A notice with SEQUENCE above 0 updates one already sent, unless the caller says."""
        if isinstance(data, dict) and "changed" not in data:
            return {**data, "changed": int(data.get("ical_sequence") or 0) > 0}
        return data


class MeetingCancelled(MeetingInvite):
    """A meeting is cancelled; carries METHOD:CANCEL for the same UID, sequence raised."""

    kind = "meeting_cancelled"

    reason: str | None = None


class MinutesPublished(MessageContext):
    """The minutes of a meeting, drafted (to be approved at the next meeting) or approved; the
    email carries the papers, with the decisions and actions, as an attachment."""

    kind = "minutes"

    body: str
    starts_at: datetime
    approved: bool = Field(default=False, description="Approved, not a draft.")


class CallForItems(MessageContext):
    kind = "call_for_items"

    body: str
    starts_at: datetime
    items_due: datetime


class AgendaEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    position: int
    title: str
    kind: str = "submitted"


class Agenda(MessageContext):
    kind = "agenda"

    body: str
    starts_at: datetime
    location: str | None = None
    items: list[AgendaEntry]
    papers: str | None = Field(default=None, description="Link to the meeting papers.")


class Reminder(MessageContext):
    """A step the recipient owes is due soon (T-1 and similar)."""

    kind = "reminder"

    what: str
    due: datetime
    body: str | None = None


class ReviewOverdue(Reminder):
    """A review without an outcome after its grace period (shown as a reminder for now)."""

    escalated_to: str


class RepresentationGap(Reminder):
    """20.3.5 with 20.3.3-20.3.4: statutory partners without a Board seat, found at the
    membership review (shown as a reminder for now)."""

    cites = "membership"

    gaps: list[str]


class ReviewChallenged(Reminder):
    """7.2: a challenge to a published review. The challenge and who made it are kept with the
    message only (not in the audit chain); the reminder template does not show them yet."""

    cites = "challenge"

    challenge: str
    challenger: str


class ChallengeAnswer(MessageContext):
    """7.2: the owning body's answer to a challenge of its published review, to the member who
    made it."""

    kind = "challenge_answer"
    cites = "challenge"

    review: str
    year: int
    owner_body: str
    challenge: str = Field(description="The challenge as it was made.")
    response: str
    answered_on: date


class ReportRequest(MessageContext):
    kind = "report_request"

    report: str
    period: str
    from_body: str
    to_body: str
    due_on: date


class ReportOverdue(ReportRequest):
    """Escalation: a report is past its due date."""

    kind = "report_overdue"

    days_overdue: int = Field(ge=1)
    escalated_to: str


class ReviewDue(MessageContext):
    kind = "review_due"

    review: str
    year: int
    owner_body: str
    due_on: date


class RiskEscalated(MessageContext):
    kind = "risk_escalated"
    cites = "risk"

    risk_id: int
    title: str
    likelihood: int
    impact: int
    score: int
    threshold: int
    reason: str
    body: str


class RiskReviewOverdue(MessageContext):
    kind = "risk_review_overdue"
    cites = "risk"

    risk_id: int
    title: str
    score: int
    due: date


class DisputeStage(MessageContext):
    kind = "dispute_stage"
    cites = "disputes"

    dispute_id: int
    title: str
    stage: str
    parties: list[str]
    deadline: date
    reason: str | None = None


class CallToAccount(MessageContext):
    kind = "call_to_account"
    cites = "call_to_account"

    case_id: int
    # The field is `kind` in the templates: the kind of case, not of message.
    case_kind: str = Field(alias="kind", description="call_to_account or evidence_request")
    organisation: str
    evidence: str
    status: str
    event: str
    proposed_deadline: date | None = None
    agreed_deadline: date | None = None

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ApprovalRequest(MessageContext):
    kind = "approval_request"

    request_id: int
    title: str
    gate: str
    from_body: str
    approver_body: str
    decision: str | None = Field(default=None, description="approved | refused, once decided.")


class ActionReminder(MessageContext):
    """12.1, 21.2.1: an action agreed at a meeting is due soon; to its owner."""

    kind = "action_reminder"
    cites = "actions"

    action_id: int
    task: str = Field(description="What was agreed, as the minutes record it.")
    owner: str = Field(description="The owner's name.")
    body: str
    agreed_on: date
    item: str | None = Field(default=None, description="The agenda item it was agreed under.")
    due_on: date


class ActionOverdue(ActionReminder):
    """12.1, 21.2.1: an action still open after its due date, escalated to the body's chair."""

    kind = "action_overdue"

    days_overdue: int = Field(ge=1)
    escalated_to: str


CONTEXTS: dict[str, type[MessageContext]] = {
    model.kind: model
    for model in (
        MeetingNotice,
        MeetingCancelled,
        MinutesPublished,
        CallForItems,
        Agenda,
        Reminder,
        ReportRequest,
        ReportOverdue,
        ReviewDue,
        RiskEscalated,
        RiskReviewOverdue,
        DisputeStage,
        CallToAccount,
        ApprovalRequest,
        ChallengeAnswer,
        ActionReminder,
        ActionOverdue,
    )
}

#: Kinds whose email carries a calendar invite.
INVITE_KINDS = frozenset({MeetingNotice.kind, MeetingCancelled.kind})


class ContextInvalid(WctError):
    """The data stored for a message does not fit its kind: a bug upstream, never retried."""


class MessageMalformed(Exception):
    """A command built a message its kind cannot show: a bug in wct, not something the user can
    fix. Raised before anything is queued, so the command's whole transaction rolls back."""


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )


def validate_context(kind: str, data: dict[str, Any]) -> MessageContext:
    """The validated context of `kind` as stored, addressed to someone; ContextInvalid naming the
    kind and the fields if it does not fit."""
    model = CONTEXTS.get(kind)
    if model is None:
        raise ContextInvalid(
            f"unknown message kind '{kind}' (known: {', '.join(sorted(CONTEXTS))})"
        )
    problems = [] if data.get("recipient") else ["recipient: Field required"]
    try:
        context = model.model_validate(data)
    except ValidationError as exc:
        problems.append(_problems(exc))
    if problems:
        raise ContextInvalid(f"context for '{kind}' is invalid: {'; '.join(problems)}")
    return context


def serialise(context: MessageContext, *, was_due: datetime | None = None) -> dict[str, Any]:
    """The context as the outbox stores it (JSON types), checked to read back through its kind's
    model as the dispatcher will read it; `was_due` marks it sent late. MessageMalformed if not."""
    model = CONTEXTS.get(getattr(context, "kind", ""))
    if model is None or not isinstance(context, model):
        raise MessageMalformed(
            f"a message context must be one of the typed models in models/messages.py, "
            f"not {type(context).__name__}"
        )
    if was_due is not None:
        context = context.model_copy(update={"was_due": was_due})
    try:
        data = context.model_dump(mode="json", by_alias=True, exclude_none=True, warnings="error")
        model.model_validate(data)
    except (ValidationError, PydanticSerializationError, TypeError, ValueError) as exc:
        problems = _problems(exc) if isinstance(exc, ValidationError) else str(exc)
        raise MessageMalformed(
            f"the {context.kind} message built here does not fit its kind: {problems}"
        ) from None
    return data


def revision_key(session: Session, subject: str, event: str) -> str:
    """`account:3:r5:agreed`: the stem of the keys of the messages announcing the change that
    `subject` has just had (recorded in this transaction), named by the revision it made."""
    return f"{subject}:r{revision(session, subject)}:{event}"
