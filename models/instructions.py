"""Every instruction a member, a coordinator, an outside party or the system gives wct, as a typed
command for `models.service.execute`: which action it is, what it is about (the body, parties or
gate its grants refer to, and the clause a refusal cites), and what it does, which is only a call
of the domain function that holds the rule.

Who may give each is the constitution's (`permissions:`, else `DEFAULT_GRANTS`); nothing here
decides it. The entry points build these: the CLI, the flows, the simulation, members' pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

from typing_extensions import override

from models import accountability, approvals, disputes, meetings, outbox, reports, reviews, risks
from models.accountability import AccountKind
from models.commands import (
    ConstitutionApplied,
    MembersImported,
    apply_constitution,
    current_constitution,
    erase_member,
    import_members,
)
from models.constitution import Action, BodyKind, Constitution
from models.errors import NotFound, NotInitialised
from models.meetings.plan import body_of, meeting_clause
from models.meetings.record import declare_interest_ahead
from models.members import parse_members
from models.permissions import Actor, Principal, Scope
from models.service import Command, Permission, member
from models.tables import MeetingAction, Person, Report
from models.uow import UnitOfWork

R = TypeVar("R", covariant=True)

# --- meetings (20.4.1, 21.4.1, 22.4.1; agenda and minutes, 23.1) -----------------------------


def _cites(uow: UnitOfWork, process: str) -> str:
    """The clause the partnership's own file gives `process` (a field of `clauses`), which a
    refusal cites after its agreement's name; "" (cite none) where the file gives none."""
    return current_constitution(uow.session).cite(process)


def _meeting_permission(uow: UnitOfWork, action: Action, body_id: str) -> Permission:
    """A meeting command is about the meeting's body; a refusal cites the body's meeting clause."""
    body = body_of(current_constitution(uow.session), body_id)
    return Permission(action, Scope(body=body.id), meeting_clause(body))


class _MeetingCommand(Command[R]):
    """A command about one planned meeting."""

    meeting_id: int

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        meeting = meetings.load_meeting(uow.session, self.meeting_id)
        return _meeting_permission(uow, self.action, meeting.body_id)


@dataclass(frozen=True, kw_only=True)
class PlanMeeting(Command[meetings.MeetingPlanned]):
    """Plan the body's meeting on a date of its cadence, with its steps."""

    action = Action.MEETING_PLAN
    body: str
    day: date

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return _meeting_permission(uow, self.action, self.body)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> meetings.MeetingPlanned:
        return meetings.plan_meeting(uow, body_id=self.body, day=self.day)


@dataclass(frozen=True, kw_only=True)
class SubmitItem(_MeetingCommand[int]):
    """Put an item forward for the meeting's agenda."""

    action = Action.MEETING_ITEM
    meeting_id: int
    title: str
    approval_id: int | None = None  # put forward under an approval request (11.3.5, 21.1.1)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> int:
        by = member(actor, self.action)
        return meetings.submit_item(
            uow,
            meeting_id=self.meeting_id,
            title=self.title,
            by=by,
            approval_id=self.approval_id,
        )


@dataclass(frozen=True, kw_only=True)
class SendApologies(_MeetingCommand[None]):
    """Send your apologies for the meeting."""

    action = Action.MEETING_APOLOGIES
    meeting_id: int

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> None:
        meetings.send_apologies(uow, meeting_id=self.meeting_id, who=member(actor, self.action))


@dataclass(frozen=True, kw_only=True)
class DeclareMeetingInterest(_MeetingCommand[int]):
    """18.1: declare your interest in an item of a meeting before it is held."""

    action = Action.MEETING_DECLARE
    meeting_id: int
    item: int
    nature: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        meeting = meetings.load_meeting(uow.session, self.meeting_id)
        c = current_constitution(uow.session)
        body = body_of(c, meeting.body_id)
        return Permission(self.action, Scope(body=body.id), c.cite("interests"))

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> int:
        return declare_interest_ahead(
            uow,
            meeting_id=self.meeting_id,
            who=member(actor, self.action),
            item=self.item,
            nature=self.nature,
        )


@dataclass(frozen=True, kw_only=True)
class RecordMeeting(_MeetingCommand[meetings.MinutesDraft]):
    """Record the meeting: attendance, declarations (18.1), motions (6.2); draft the minutes."""

    action = Action.MEETING_RECORD
    meeting_id: int
    present: Sequence[str]
    apologies: Sequence[str] = ()
    declarations: Sequence[meetings.DeclarationInput] = ()
    motions: Sequence[meetings.MotionInput] = ()
    actions: Sequence[meetings.ActionInput] = ()

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> meetings.MinutesDraft:
        return meetings.record_meeting(
            uow,
            meeting_id=self.meeting_id,
            present=self.present,
            apologies=self.apologies,
            declarations=self.declarations,
            motions=self.motions,
            actions=self.actions,
        )


@dataclass(frozen=True, kw_only=True)
class UpdateAction(Command[MeetingAction]):
    """12.1, 21.2.1: an action agreed at a meeting is done, dropped (with a note), or given a new
    due date; its reminders stop, or are planned again for the new date."""

    action = Action.ACTION_UPDATE
    action_id: int
    status: meetings.ActionStatus | None = None
    due: date | None = None
    note: str | None = None

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        """Judged for the body whose meeting agreed it, and the action's owner."""
        scope = meetings.action_scope(uow.session, self.action_id)
        return Permission(self.action, scope, _cites(uow, "actions"))

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> MeetingAction:
        return meetings.update_action(
            uow, action_id=self.action_id, status=self.status, due=self.due, note=self.note
        )


@dataclass(frozen=True, kw_only=True)
class ApproveMinutes(_MeetingCommand[None]):
    """Approve the meeting's minutes at the body's next meeting."""

    action = Action.MEETING_APPROVE_MINUTES
    meeting_id: int
    at_meeting_id: int

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> None:
        meetings.approve_minutes(uow, meeting_id=self.meeting_id, at_meeting_id=self.at_meeting_id)


@dataclass(frozen=True, kw_only=True)
class CancelMeeting(_MeetingCommand[bool]):
    """Cancel a meeting not yet held; members get the calendar cancellation."""

    action = Action.MEETING_CANCEL
    meeting_id: int
    reason: str

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> bool:
        return meetings.cancel_meeting(uow, meeting_id=self.meeting_id, reason=self.reason)


@dataclass(frozen=True, kw_only=True)
class MoveMeeting(_MeetingCommand[meetings.MeetingMoved]):
    """Move a meeting not yet held; members get the updated invitation and its steps move."""

    action = Action.MEETING_MOVE
    meeting_id: int
    starts_at: datetime
    reason: str
    location: str | None = None

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> meetings.MeetingMoved:
        return meetings.move_meeting(
            uow,
            meeting_id=self.meeting_id,
            starts_at=self.starts_at,
            reason=self.reason,
            location=self.location,
        )


@dataclass(frozen=True, kw_only=True)
class CallMeeting(Command[meetings.MeetingPlanned]):
    """Call an extraordinary meeting of a body, off its cadence."""

    action = Action.MEETING_CALL
    body: str
    starts_at: datetime
    reason: str
    location: str | None = None

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return _meeting_permission(uow, self.action, self.body)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> meetings.MeetingPlanned:
        return meetings.call_meeting(
            uow,
            body_id=self.body,
            starts_at=self.starts_at,
            reason=self.reason,
            location=self.location,
        )


@dataclass(frozen=True, kw_only=True)
class EnterPastMeeting(Command[meetings.MeetingPlanned]):
    """Enter a meeting held before wct ran, to record it."""

    action = Action.MEETING_RECORD_PAST
    body: str
    starts_at: datetime
    location: str | None = None

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return _meeting_permission(uow, self.action, self.body)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> meetings.MeetingPlanned:
        return meetings.enter_past_meeting(
            uow, body_id=self.body, starts_at=self.starts_at, location=self.location
        )


# --- quarterly reports (22.2.1, 11.4.1) and annual reviews -----------------------------------


@dataclass(frozen=True, kw_only=True)
class OpenReports(Command[reports.ReportsOpened]):
    """Open every quarterly report owed for a quarter, with its reminders."""

    action = Action.REPORT_OPEN
    period: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        """A refusal cites the clauses of the partnership's quarterly reports (Wirral's 22.2.1,
        11.4.1), each once, as its file gives them."""
        specs = current_constitution(uow.session).quarterly_reports
        clauses = dict.fromkeys(spec.clause for spec in specs if spec.clause)
        return Permission(self.action, Scope(), ", ".join(clauses))

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> reports.ReportsOpened:
        return reports.open_reports(uow, period=self.period)


@dataclass(frozen=True, kw_only=True)
class SubmitReport(Command[Report]):
    """Submit the reporting body's quarterly report."""

    action = Action.REPORT_SUBMIT
    kind: str
    from_body: str
    period: str
    document: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        session = uow.session
        report = reports.find_report(
            session, kind=self.kind, from_body=self.from_body, period=self.period
        )
        spec = reports.spec_of(current_constitution(session), self.kind)
        return Permission(self.action, Scope(body=report.from_body_id), spec.clause)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> Report:
        return reports.submit_report(
            uow,
            kind=self.kind,
            from_body=self.from_body,
            period=self.period,
            by=actor,
            document=self.document,
        )


@dataclass(frozen=True, kw_only=True)
class OpenReview(Command[reviews.ReviewOpened]):
    """Open the year's annual review, with its notice, reminders and escalation."""

    action = Action.REVIEW_OPEN
    kind: str
    year: int

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        spec = reviews.spec_of(current_constitution(uow.session), self.kind)
        return Permission(self.action, Scope(body=spec.owner), spec.clause)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> reviews.ReviewOpened:
        return reviews.open_review(uow, kind=self.kind, year=self.year)


@dataclass(frozen=True, kw_only=True)
class CompleteReview(Command[reviews.ReviewCompleted]):
    """Record the review's outcome (a 7.2 review is published, open to challenge)."""

    action = Action.REVIEW_COMPLETE
    kind: str
    year: int
    outcome: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        spec = reviews.spec_of(current_constitution(uow.session), self.kind)
        review = reviews.find_review(uow.session, kind=self.kind, year=self.year)
        return Permission(self.action, Scope(body=review.owner_body_id), spec.clause)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> reviews.ReviewCompleted:
        return reviews.complete_review(
            uow, kind=self.kind, year=self.year, by=actor, outcome=self.outcome
        )


@dataclass(frozen=True, kw_only=True)
class ChallengeReview(Command[int]):
    """7.2: challenge a published review while its window is open (any interested party)."""

    action = Action.REVIEW_CHALLENGE
    kind: str
    year: int
    text: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        c = current_constitution(uow.session)
        spec = reviews.spec_of(c, self.kind)
        return Permission(self.action, Scope(body=spec.owner), c.cite("challenge"))

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> int:
        return reviews.challenge_review(
            uow, kind=self.kind, year=self.year, by=_name_of(uow, actor), challenge=self.text
        )


@dataclass(frozen=True, kw_only=True)
class AnswerChallenge(Command[reviews.ChallengeAnswered]):
    """7.2: the owning body answers a challenge to its published review; the challenger is told
    when they are a member."""

    action = Action.REVIEW_ANSWER_CHALLENGE
    challenge_id: int
    response: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        review = reviews.challenged_review(uow.session, self.challenge_id)
        return Permission(self.action, Scope(body=review.owner_body_id), _cites(uow, "challenge"))

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> reviews.ChallengeAnswered:
        return reviews.answer_challenge(uow, challenge_id=self.challenge_id, response=self.response)


def _name_of(uow: UnitOfWork, actor: Principal) -> str:
    """How a message names who acted: a member's name, an outside party's own words."""
    if isinstance(actor, Actor):
        person = uow.session.get(Person, actor.person_id)
        return person.name if person is not None else actor.pseudonym
    return actor.name


# --- 16.1 risks: managed by the Executive, assessed by the Board -----------------------------


def _risk_permission(uow: UnitOfWork, action: Action, kind: BodyKind) -> Permission:
    c = current_constitution(uow.session)
    return Permission(action, Scope(body=c.sole(kind).id), c.cite("risk"))


@dataclass(frozen=True, kw_only=True)
class RaiseRisk(Command[risks.RiskResult]):
    """Record a risk to the CYPP."""

    action = Action.RISK_RAISE
    title: str
    owner: str
    likelihood: int
    impact: int

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return _risk_permission(uow, self.action, BodyKind.EXECUTIVE)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> risks.RiskResult:
        return risks.raise_risk(
            uow,
            title=self.title,
            owner=self.owner,
            likelihood=self.likelihood,
            impact=self.impact,
        )


@dataclass(frozen=True, kw_only=True)
class ReviewRisk(Command[risks.RiskResult]):
    """The Executive's review of a risk: new scores, next review date."""

    action = Action.RISK_REVIEW
    risk_id: int
    likelihood: int
    impact: int

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return _risk_permission(uow, self.action, BodyKind.EXECUTIVE)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> risks.RiskResult:
        return risks.review_risk(
            uow, risk_id=self.risk_id, likelihood=self.likelihood, impact=self.impact
        )


@dataclass(frozen=True, kw_only=True)
class EscalateRisk(Command[risks.RiskResult]):
    """The Executive escalates a risk to the Board."""

    action = Action.RISK_ESCALATE
    risk_id: int
    reason: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return _risk_permission(uow, self.action, BodyKind.EXECUTIVE)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> risks.RiskResult:
        return risks.escalate_risk(uow, risk_id=self.risk_id, reason=self.reason)


@dataclass(frozen=True, kw_only=True)
class AssessRisk(Command[risks.RiskResult]):
    """The Board's formal assessment of an escalated risk."""

    action = Action.RISK_ASSESS
    risk_id: int
    assessment: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return _risk_permission(uow, self.action, BodyKind.BOARD)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> risks.RiskResult:
        return risks.assess_risk(uow, risk_id=self.risk_id, assessment=self.assessment)


@dataclass(frozen=True, kw_only=True)
class CloseRisk(Command[risks.RiskResult]):
    """Close a risk that no longer needs managing."""

    action = Action.RISK_CLOSE
    risk_id: int

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return _risk_permission(uow, self.action, BodyKind.EXECUTIVE)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> risks.RiskResult:
        return risks.close_risk(uow, risk_id=self.risk_id)


# --- 18.2 disputes (and 18.1 declarations) ---------------------------------------------------


class _DisputeCommand(Command[R]):
    """A command about one dispute: its parties are who `party` grants refer to."""

    dispute_id: int

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        _, parties = disputes.lock(uow.session, self.dispute_id)
        return Permission(self.action, Scope(parties=parties), _cites(uow, "disputes"))


@dataclass(frozen=True, kw_only=True)
class OpenDispute(Command[disputes.DisputeResult]):
    """Open a dispute between partners at informal discussion."""

    action = Action.DISPUTE_OPEN
    title: str
    parties: Sequence[str]
    note: str = ""

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        c = current_constitution(uow.session)
        involved = disputes.dispute_parties(c, list(self.parties))
        return Permission(self.action, Scope(parties=involved), c.cite("disputes"))

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> disputes.DisputeResult:
        return disputes.open_dispute(
            uow, title=self.title, parties=list(self.parties), note=self.note
        )


@dataclass(frozen=True, kw_only=True)
class RecordDisputeOutcome(_DisputeCommand[disputes.DisputeResult]):
    """A party records the outcome of a stage (`stage`: the one answered; None: the current)."""

    action = Action.DISPUTE_OUTCOME
    dispute_id: int
    stage: str | None
    resolved: bool
    note: str

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> disputes.DisputeResult:
        dispute, _ = disputes.lock(uow.session, self.dispute_id)
        return disputes.record_outcome(
            uow,
            dispute_id=self.dispute_id,
            stage=self.stage or dispute.stage,
            resolved=self.resolved,
            note=self.note,
        )


@dataclass(frozen=True, kw_only=True)
class RecordAdr(_DisputeCommand[disputes.DisputeResult]):
    """Record the ADR provider and result; the dispute closes."""

    action = Action.DISPUTE_ADR
    dispute_id: int
    provider: str
    resolved: bool
    note: str

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> disputes.DisputeResult:
        return disputes.record_adr(
            uow,
            dispute_id=self.dispute_id,
            provider=self.provider,
            resolved=self.resolved,
            note=self.note,
        )


@dataclass(frozen=True, kw_only=True)
class DeclareDisputeInterest(_DisputeCommand[int]):
    """18.1: declare your interest in a dispute."""

    action = Action.DISPUTE_DECLARE
    dispute_id: int
    nature: str

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> int:
        return disputes.declare_interest(
            uow,
            actor=member(actor, self.action),
            dispute_id=self.dispute_id,
            nature=self.nature,
        )


# --- 11.5.1 calls to account ------------------------------------------------------------------


class _AccountCommand(Command[R]):
    """A command about one call to account: the partner called is the party."""

    case_id: int

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        case = accountability.lock(uow.session, self.case_id)
        c = current_constitution(uow.session)
        scope = accountability.scope_of(c, case.organisation_id)
        return Permission(self.action, scope, c.cite("call_to_account"))


@dataclass(frozen=True, kw_only=True)
class OpenCallToAccount(Command[accountability.AccountResult]):
    """The Safeguarding Board calls a partner to account, proposing a response deadline."""

    action = Action.ACCOUNT_OPEN
    organisation: str
    evidence: str
    proposed_deadline: date
    kind: AccountKind = AccountKind.CALL_TO_ACCOUNT

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        c = current_constitution(uow.session)
        if self.organisation not in {o.id for o in c.organisations}:
            raise NotFound(f"unknown organisation '{self.organisation}'")
        scope = accountability.scope_of(c, self.organisation)
        return Permission(self.action, scope, c.cite("call_to_account"))

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> accountability.AccountResult:
        return accountability.open_call(
            uow,
            organisation=self.organisation,
            evidence=self.evidence,
            proposed_deadline=self.proposed_deadline,
            kind=self.kind,
        )


@dataclass(frozen=True, kw_only=True)
class AnswerDeadline(Command[accountability.AccountResult]):
    """The side that did not propose the deadline accepts it, or proposes another (`counter`)."""

    action = Action.ACCOUNT_AGREE_FOR_PARTNER
    case_id: int
    accept: bool
    counter: date | None = None

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        case = accountability.lock(uow.session, self.case_id)
        side = accountability.answering_side(case)
        c = current_constitution(uow.session)
        scope = accountability.scope_of(c, case.organisation_id)
        return Permission(accountability.AGREE_FOR[side], scope, c.cite("call_to_account"))

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> accountability.AccountResult:
        return accountability.answer_deadline(
            uow, case_id=self.case_id, accept=self.accept, counter=self.counter
        )


@dataclass(frozen=True, kw_only=True)
class RespondToCall(_AccountCommand[accountability.AccountResult]):
    """The partner's formal response or action."""

    action = Action.ACCOUNT_RESPOND
    case_id: int
    response: str

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> accountability.AccountResult:
        return accountability.record_response(uow, case_id=self.case_id, response=self.response)


@dataclass(frozen=True, kw_only=True)
class JudgeResponse(_AccountCommand[accountability.AccountResult]):
    """The Safeguarding Board accepts the response (closing the case) or reopens it."""

    action = Action.ACCOUNT_CONCLUDE
    case_id: int
    accept: bool
    note: str
    new_deadline: date | None = None

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> accountability.AccountResult:
        return accountability.conclude(
            uow,
            case_id=self.case_id,
            accept=self.accept,
            note=self.note,
            new_deadline=self.new_deadline,
        )


# --- approval gates (11.3.5, 21.1.1) ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RequestApproval(Command[approvals.ApprovalResult]):
    """Ask the approving body to approve a proposal."""

    action = Action.APPROVAL_REQUEST
    gate: str
    title: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        g = approvals.gate(current_constitution(uow.session), self.gate)
        return Permission(self.action, approvals.scope_of(g), g.clause)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> approvals.ApprovalResult:
        return approvals.request_approval(uow, gate_id=self.gate, title=self.title)


@dataclass(frozen=True, kw_only=True)
class DecideApproval(Command[approvals.ApprovalResult]):
    """Record the approving body's decision."""

    action = Action.APPROVAL_DECIDE
    request_id: int
    approve: bool
    note: str

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        request = approvals.lock(uow.session, self.request_id)
        g = approvals.gate(current_constitution(uow.session), request.gate)
        return Permission(self.action, approvals.scope_of(g), g.clause)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> approvals.ApprovalResult:
        return approvals.decide_approval(
            uow, request_id=self.request_id, approve=self.approve, note=self.note
        )


# --- the partnership's records: constitution, members, outbox --------------------------------


@dataclass(frozen=True, kw_only=True)
class LoadConstitution(Command[ConstitutionApplied]):
    """Load a checked constitution (an amendment when one is in force)."""

    action = Action.CONSTITUTION_LOAD
    document: Constitution
    source: str

    @override
    def constitution(self, uow: UnitOfWork) -> Constitution:
        """The one in force decides an amendment; the first is loaded on its own terms."""
        try:
            return current_constitution(uow.session)
        except NotInitialised:
            return self.document

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> ConstitutionApplied:
        return apply_constitution(uow, constitution=self.document, source=self.source)


@dataclass(frozen=True, kw_only=True)
class ImportMembers(Command[MembersImported]):
    """Add or update members from a members file (`prune`: deactivate those not in it)."""

    action = Action.MEMBERS_IMPORT
    text: str
    source: str
    prune: bool = False
    confirmed: bool = False  # a prune that deactivates more than half the active members

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> MembersImported:
        rows = parse_members(self.text, current_constitution(uow.session), source=self.source)
        return import_members(uow, rows=rows, prune=self.prune, confirmed=self.confirmed)


@dataclass(frozen=True, kw_only=True)
class EraseMember(Command[str]):
    """UK GDPR erasure of a member's personal data; returns their pseudonym."""

    action = Action.MEMBERS_ERASE
    who: str

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> str:
        return erase_member(uow, who=self.who)


@dataclass(frozen=True, kw_only=True)
class RetryMessages(Command[list[int]]):
    """Queue failed, dead or unknown messages again, now; returns the ids queued."""

    action = Action.OUTBOX_RETRY
    ids: Sequence[int] = field(default_factory=tuple)
    all_failed: bool = False

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> list[int]:
        retried = outbox.retry(
            uow.session, now=uow.clock.now(), ids=self.ids, all_failed=self.all_failed
        )
        if retried:
            uow.record("outbox.retried", "outbox", before=None, after={"ids": retried})
        return retried


__all__ = [
    "AnswerDeadline",
    "ApproveMinutes",
    "AssessRisk",
    "CancelMeeting",
    "ChallengeReview",
    "CloseRisk",
    "CompleteReview",
    "DecideApproval",
    "DeclareDisputeInterest",
    "DeclareMeetingInterest",
    "EraseMember",
    "EscalateRisk",
    "ImportMembers",
    "JudgeResponse",
    "LoadConstitution",
    "OpenCallToAccount",
    "OpenDispute",
    "OpenReports",
    "OpenReview",
    "PlanMeeting",
    "RaiseRisk",
    "RecordAdr",
    "RecordDisputeOutcome",
    "RecordMeeting",
    "RequestApproval",
    "RespondToCall",
    "RetryMessages",
    "ReviewRisk",
    "SendApologies",
    "SubmitItem",
    "SubmitReport",
    "UpdateAction",
]
