"""Which form a link opens, what it is about in words a member reads, and the command it gives.

A link names an action and a subject (`meeting:12`); `form_of` says which one-page form that
is, refusing a link whose action has no form or whose subject is of the wrong kind. `describe`
says what the subject is ("the Board meeting on Tuesday 9 March 2027 at 14:00"): organisations
and bodies by name, never ids or pseudonyms. `command` turns the form's answers into the same
command the CLI gives; the constitution decides whether this member may give it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any

from sqlmodel import Session

from models.commands import current_constitution
from models.constitution import Constitution
from models.errors import InvalidInput, NotFound
from models.instructions import (
    AnswerDeadline,
    DecideApproval,
    DeclareMeetingInterest,
    RecordDisputeOutcome,
    RespondToCall,
    ReviewRisk,
    SendApologies,
    SubmitItem,
    SubmitReport,
)
from models.links import PERSONAL_ACTION, Link
from models.meetings.agenda import AgendaItemKind, composed, items_of
from models.members_web.wording import long_date
from models.service import Command
from models.tables import (
    ApprovalRequest,
    Body,
    CallToAccount,
    Dispute,
    Meeting,
    Organisation,
    Report,
    Risk,
)


class Form(StrEnum):
    """The one-page forms (the path of each is /act/<form>)."""

    APOLOGIES = "apologies"
    ITEM = "item"
    DECLARE = "declare"
    REPORT = "report"
    DEADLINE = "deadline"
    RESPONSE = "response"
    DISPUTE = "dispute"
    APPROVAL = "approval"
    RISK = "risk"
    ME = "me"


#: A link's action -> its form and the kind of subject it must name.
FORMS: dict[str, tuple[Form, str]] = {
    "meeting.apologies": (Form.APOLOGIES, "meeting"),
    "meeting.item": (Form.ITEM, "meeting"),
    "meeting.declare": (Form.DECLARE, "meeting"),
    "report.submit": (Form.REPORT, "report"),
    "account.agree_for_partner": (Form.DEADLINE, "account"),
    "account.agree_for_wscb": (Form.DEADLINE, "account"),
    "account.respond": (Form.RESPONSE, "account"),
    "dispute.outcome": (Form.DISPUTE, "dispute"),
    "approval.decide": (Form.APPROVAL, "approval"),
    "risk.review": (Form.RISK, "risk"),
    PERSONAL_ACTION: (Form.ME, "person"),
}


class NoSuchForm(NotFound):
    """A genuine link whose action or subject no form answers (a newer message, say)."""


@dataclass(frozen=True)
class Target:
    """A link's form and the id of what it is about (for the personal page: the pseudonym)."""

    form: Form
    kind: str
    ref: str

    @property
    def id(self) -> int:
        return int(self.ref)


def form_of(link: Link) -> Target:
    """The form a genuine link opens; `NoSuchForm` if none does."""
    known = FORMS.get(link.action)
    kind, _, ref = link.subject.partition(":")
    if known is None or known[1] != kind or not ref:
        raise NoSuchForm(f"no form for {link.action} on {kind or 'nothing'}")
    if kind != "person" and not ref.isdigit():
        raise NoSuchForm(f"no form for {link.action} on {link.subject}")
    if kind == "person" and ref != link.person:
        raise NoSuchForm("a personal page link names its own person")
    return Target(known[0], kind, ref)


@dataclass(frozen=True)
class About:
    """What a form is about, in words: a heading and a few lines of detail, and the clause of
    the agreement (`agreement`: what the partnership calls it) that sets it, if any."""

    title: str
    lines: tuple[str, ...] = ()
    clause: str = ""
    agreement: str = ""

    @property
    def citation(self) -> str:
        """`Memorandum of Understanding, clause 11.5.1`; "" when there is no clause."""
        if not self.clause:
            return ""
        return (
            f"{self.agreement}, clause {self.clause}" if self.agreement else f"Clause {self.clause}"
        )


def _get(session: Session, table: type[Any], ident: int, what: str) -> Any:
    row = session.get(table, ident)
    if row is None:
        raise NotFound(f"this {what} no longer exists")
    return row


def _body(session: Session, body_id: str) -> str:
    body = session.get(Body, body_id)
    return body.name if body is not None else body_id


def _organisation(session: Session, org_id: str) -> str:
    org = session.get(Organisation, org_id)
    return org.name if org is not None else org_id


def describe(session: Session, target: Target) -> About:
    """What the form is about, for the page's heading, citing the clause the constitution
    gives (none where it gives none) of the agreement as the partnership calls it."""
    constitution = current_constitution(session)
    about = _describe(session, constitution, target)
    return replace(about, agreement=constitution.partnership.agreement_name)


def _describe(session: Session, constitution: Constitution, target: Target) -> About:
    match target.kind:
        case "meeting":
            m: Meeting = _get(session, Meeting, target.id, "meeting")
            where = (f"At {m.location}",) if m.location else ()
            return About(f"The {_body(session, m.body_id)} on {long_date(m.starts_at)}", where)
        case "report":
            r: Report = _get(session, Report, target.id, "report")
            return About(
                f"The {_body(session, r.from_body_id)} report for {r.period}",
                (
                    f"To the {_body(session, r.to_body_id)}",
                    f"Due on {long_date(r.due_on)}",
                ),
            )
        case "account":
            c: CallToAccount = _get(session, CallToAccount, target.id, "call to account")
            lines = [
                f"The Safeguarding Board has called {_organisation(session, c.organisation_id)}"
                " to account.",
                f"What it asks: {c.evidence}",
            ]
            if c.proposed_deadline is not None:
                lines.append(f"Deadline proposed: {long_date(c.proposed_deadline)}")
            if c.agreed_deadline is not None:
                lines.append(f"Deadline agreed: {long_date(c.agreed_deadline)}")
            return About("A call to account", tuple(lines), constitution.cite("call_to_account"))
        case "dispute":
            d: Dispute = _get(session, Dispute, target.id, "dispute")
            lines = [f"Stage: {d.stage.replace('_', ' ')}"]
            if d.stage_deadline is not None:
                lines.append(f"This stage ends on {long_date(d.stage_deadline)}")
            return About(
                f"The dispute \u201c{d.title}\u201d", tuple(lines), constitution.cite("disputes")
            )
        case "approval":
            a: ApprovalRequest = _get(session, ApprovalRequest, target.id, "approval request")
            return About(
                f"Approval of \u201c{a.title}\u201d",
                (f"Asked by the {_body(session, a.from_body_id)}",),
                a.clause,
            )
        case "risk":
            k: Risk = _get(session, Risk, target.id, "risk")
            return About(
                f"The risk \u201c{k.title}\u201d",
                (
                    f"Likelihood {k.likelihood} of 5, impact {k.impact} of 5",
                    f"Review due on {long_date(k.review_due_on)}",
                ),
                constitution.cite("risk"),
            )
    return About("Your page")


def _text(answers: Mapping[str, str], name: str, what: str, *, required: bool = True) -> str:
    value = " ".join(answers.get(name, "").split())
    if required and not value:
        raise InvalidInput(f"please give {what}")
    return value


def _choice(answers: Mapping[str, str], name: str, options: tuple[str, ...], what: str) -> str:
    value = answers.get(name, "")
    if value not in options:
        raise InvalidInput(f"please choose {what}")
    return value


def _day(answers: Mapping[str, str], name: str, what: str) -> date:
    try:
        return date.fromisoformat(answers.get(name, "").strip())
    except ValueError:
        raise InvalidInput(f"please give {what} as a date") from None


def _score(answers: Mapping[str, str], name: str, what: str) -> int:
    value = answers.get(name, "").strip()
    if value not in ("1", "2", "3", "4", "5"):
        raise InvalidInput(f"please give the {what} as a number from 1 to 5")
    return int(value)


#: The choices a form offers that depend on its subject: field name -> (value, label) pairs.
Choices = dict[str, tuple[tuple[str, str], ...]]


def choices(session: Session, target: Target) -> Choices:
    """The agenda items of the meeting one may declare an interest in (18.1): every item but
    the standing headings, numbered once the agenda is composed."""
    if target.form != Form.DECLARE:
        return {}
    items = items_of(session, target.id)
    numbered = composed(items)
    return {
        "item": tuple(
            (str(i.position), f"{i.position}. {i.title}" if numbered else i.title)
            for i in items
            if i.kind != AgendaItemKind.STANDING
        )
    }


def command(
    session: Session, target: Target, answers: Mapping[str, str], *, document: str | None = None
) -> Command[Any]:
    """The command the form's answers give (`document`: the stored upload, for a report)."""
    match target.form:
        case Form.APOLOGIES:
            return SendApologies(meeting_id=target.id)
        case Form.ITEM:
            return SubmitItem(meeting_id=target.id, title=_text(answers, "title", "a title"))
        case Form.DECLARE:
            offered = dict(choices(session, target)["item"])
            item = _choice(answers, "item", tuple(offered), "the item")
            return DeclareMeetingInterest(
                meeting_id=target.id,
                item=int(item),
                nature=_text(answers, "nature", "the nature of your interest"),
            )
        case Form.REPORT:
            r: Report = _get(session, Report, target.id, "report")
            link = _text(answers, "link", "a link", required=False)
            if document is None and not link:
                raise InvalidInput("please attach the report, or give a link to it")
            return SubmitReport(
                kind=r.kind, from_body=r.from_body_id, period=r.period, document=document or link
            )
        case Form.DEADLINE:
            answer = _choice(answers, "answer", ("agree", "counter"), "agree or propose")
            if answer == "agree":
                return AnswerDeadline(case_id=target.id, accept=True)
            counter = _day(answers, "counter", "the deadline you propose")
            return AnswerDeadline(case_id=target.id, accept=False, counter=counter)
        case Form.RESPONSE:
            return RespondToCall(
                case_id=target.id, response=_text(answers, "response", "your response")
            )
        case Form.DISPUTE:
            resolved = _choice(answers, "resolved", ("yes", "no"), "whether it was resolved")
            return RecordDisputeOutcome(
                dispute_id=target.id,
                stage=None,
                resolved=resolved == "yes",
                note=_text(answers, "note", "a note of the outcome"),
            )
        case Form.APPROVAL:
            decision = _choice(answers, "decision", ("approve", "refuse"), "approve or refuse")
            return DecideApproval(
                request_id=target.id,
                approve=decision == "approve",
                # A refusal says why; an approval may go without a note (the record needs one).
                note=_text(answers, "note", "a note of the decision", required=decision == "refuse")
                or "Approved.",
            )
        case Form.RISK:
            return ReviewRisk(
                risk_id=target.id,
                likelihood=_score(answers, "likelihood", "likelihood"),
                impact=_score(answers, "impact", "impact"),
            )
    raise NoSuchForm(f"the {target.form} page has no form")
