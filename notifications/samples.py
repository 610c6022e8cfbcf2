"""A sample context for every kind, so `wct preview KIND` lets a coordinator proof a template.
A kind that asks for an action has it in its sample (`ask`), as its command would give it. The
built-in samples are Wirral's; `sample_for` gives them as another partnership would send them:
its names, its bodies and organisations, its clauses (none where its file gives none)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from models.casework import branded
from models.clock import LONDON
from models.constitution import Body, BodyKind, Constitution
from models.errors import cited
from models.messages import CONTEXTS

_MEETING = datetime(2027, 1, 12, 10, 0, tzinfo=LONDON)

SAMPLES: dict[str, dict[str, Any]] = {
    "meeting_notice": {
        "body": "Wirral Children's Trust Board",
        "starts_at": _MEETING,
        "ends_at": datetime(2027, 1, 12, 12, 0, tzinfo=LONDON),
        "location": "Wallasey Town Hall, Committee Room 1",
        "ical_uid": "meeting-board-2027-01-12@wct",
        "ical_sequence": 0,
        "items_due": datetime(2026, 12, 22, 17, 0, tzinfo=LONDON),
        "clause": "20.4.1",
        "action": "Please attend. If you cannot come, send your apologies with the button below.",
        "ask": {"action": "meeting.apologies", "subject": "meeting:12"},
    },
    "meeting_cancelled": {
        "body": "Wirral Children's Trust Board",
        "starts_at": _MEETING,
        "ends_at": datetime(2027, 1, 12, 12, 0, tzinfo=LONDON),
        "ical_uid": "meeting-board-2027-01-12@wct",
        "ical_sequence": 1,
        "reason": "Not quorate: fewer than half the members can attend.",
        "clause": "20.4.1",
        "action": "Nothing: the meeting will not take place, and it is removed from your calendar.",
    },
    "minutes": {
        "body": "Wirral Children's Trust Board",
        "starts_at": _MEETING,
        "approved": False,
        "clause": "20.4.1",
        "action": "Read them before the next meeting, where they are approved; tell the "
        "coordinator of any correction.",
    },
    "call_for_items": {
        "body": "Wirral Children's Trust Board",
        "starts_at": _MEETING,
        "items_due": datetime(2026, 12, 22, 17, 0, tzinfo=LONDON),
        "clause": "20.4.1",
        "action": "If you want an item on the agenda, send its title and paper by Tuesday 22 "
        "December 2026 at 17:00 with the button below.",
        "ask": {"action": "meeting.item", "subject": "meeting:12"},
    },
    "agenda": {
        "body": "Wirral Children's Trust Board",
        "starts_at": _MEETING,
        "location": "Wallasey Town Hall, Committee Room 1",
        "items": [
            {"position": 1, "title": "Apologies and declarations of interest"},
            {"position": 2, "title": "Minutes of the last meeting"},
            {"position": 3, "title": "Quarterly report of the Executive"},
        ],
        "papers": "https://example.org/board/2027-01-12",
        "clause": "20.4.1",
        "action": "Read the papers before the meeting and declare any interest in an item at the "
        "start of it (18.1). If you cannot come, send your apologies with the button below.",
        "ask": {"action": "meeting.apologies", "subject": "meeting:12"},
    },
    "reminder": {
        "what": "the Quarterly performance progress report of the Be Healthy group for 2026-Q4",
        "due": datetime(2027, 1, 5, 17, 0, tzinfo=LONDON),
        "body": "Children's Trust Executive",
        "clause": "22.2.1",
        "action": "Submit the report with the button below: attach it, or give the link to where "
        "it is published. It then goes on the agenda of the next meeting.",
        "ask": {"action": "report.submit", "subject": "report:7"},
    },
    "report_request": {
        "report": "Quarterly progress report",
        "period": "2026-Q4",
        "from_body": "Children's Trust Executive",
        "to_body": "Wirral Children's Trust Board",
        "due_on": date(2027, 1, 5),
        "clause": "22.2.1",
        "action": "Submit the report with the button below: attach it, or give the link to where "
        "it is published. It then goes on the agenda of the next meeting.",
        "ask": {"action": "report.submit", "subject": "report:7"},
    },
    "report_overdue": {
        "report": "Quarterly progress report",
        "period": "2026-Q4",
        "from_body": "Children's Trust Executive",
        "to_body": "Wirral Children's Trust Board",
        "due_on": date(2027, 1, 5),
        "days_overdue": 3,
        "escalated_to": "Children's Trust Executive",
        "clause": "22.2.1",
        "action": "The report is needed now. If it is yours to submit, use the button below; "
        "otherwise Children's Trust Executive's chair will follow it up.",
        "ask": {"action": "report.submit", "subject": "report:7"},
    },
    "review_due": {
        "review": "Annual review of the Children and Young People's Plan",
        "year": 2027,
        "owner_body": "Wirral Children's Trust Board",
        "due_on": date(2027, 3, 31),
        "clause": "19.1",
        "action": "Put the review on the agenda of Wirral Children's Trust Board. When its "
        "outcome is agreed, send it to the governance coordinator, who records it.",
    },
    "risk_escalated": {
        "risk_id": 7,
        "title": "Social worker vacancies above 20%",
        "likelihood": 4,
        "impact": 5,
        "score": 20,
        "threshold": 15,
        "reason": "score at or above the escalation threshold",
        "body": "Wirral Children's Trust Board",
        "clause": "16.1",
        "action": "The risk will be on the agenda of the next Wirral Children's Trust Board "
        "meeting for its formal assessment.",
    },
    "risk_review_overdue": {
        "risk_id": 7,
        "title": "Social worker vacancies above 20%",
        "score": 20,
        "due": date(2027, 2, 1),
        "clause": "16.1",
        "action": "Review the risk with Children's Trust Executive and record its new "
        "likelihood and impact with the button below.",
        "ask": {"action": "risk.review", "subject": "risk:7"},
    },
    "dispute_stage": {
        "dispute_id": 3,
        "title": "Funding of the early help hub",
        "stage": "chief_executives",
        "parties": ["NHS Wirral", "Wirral Council"],
        "deadline": date(2027, 2, 12),
        "reason": "not resolved informally by the deadline",
        "clause": "18.2",
        "action": "The Chief Executive of each agency involved is asked to meet to resolve it, "
        "and to record the outcome (resolved or not) by the deadline with the button below.",
        "ask": {"action": "dispute.outcome", "subject": "dispute:3"},
    },
    "call_to_account": {
        "case_id": 2,
        "kind": "call_to_account",
        "organisation": "Merseyside Police",
        "evidence": "Three late strategy discussions in Q3.",
        "status": "negotiating",
        "event": "opened",
        "proposed_deadline": date(2027, 2, 1),
        "clause": "11.5.1",
        "action": "Accept the proposed deadline for your organisation's response, or propose "
        "another, by Friday 22 January 2027, with the button below.",
        "ask": {"action": "account.agree_for_partner", "subject": "account:2"},
    },
    "approval_request": {
        "request_id": 4,
        "title": "Revised Children and Young People's Plan",
        "gate": "The Board approves the CYPP",
        "from_body": "Children's Trust Executive",
        "approver_body": "Wirral Children's Trust Board",
        "clause": "11.3.5",
        "action": "The proposal goes on the agenda of the next Wirral Children's Trust Board "
        "meeting. Once it has decided, record its decision with the button below.",
        "ask": {"action": "approval.decide", "subject": "approval:4"},
    },
    "challenge_answer": {
        "review": "CYPP annual review with safeguarding assessment",
        "year": 2027,
        "owner_body": "Children's Trust Executive",
        "challenge": "The review says little about youth services in the west of the area.",
        "response": "Youth services in the west of the area are in the plan's second year; the "
        "Executive will report on them at its September meeting.",
        "answered_on": date(2027, 6, 21),
        "clause": "7.2",
        "action": "Nothing, unless you want to take it further: reply to the governance "
        "coordinator.",
    },
    "action_reminder": {
        "action_id": 3,
        "task": "Bring a costed youth offer for the west of the area to the next meeting",
        "owner": "Dee Director",
        "body": "Wirral Children's Trust Board",
        "agreed_on": date(2027, 3, 9),
        "item": "8. Youth offer",
        "due_on": date(2027, 4, 30),
        "clause": "12.1, 21.2.1",
        "action": "Carry out the action by Friday 30 April 2027. When it is done, or if it "
        "cannot be done by then, tell the chair or the governance coordinator, who record it.",
    },
    "action_overdue": {
        "action_id": 3,
        "task": "Bring a costed youth offer for the west of the area to the next meeting",
        "owner": "Dee Director",
        "body": "Wirral Children's Trust Board",
        "agreed_on": date(2027, 3, 9),
        "item": "8. Youth offer",
        "due_on": date(2027, 4, 30),
        "days_overdue": 1,
        "escalated_to": "the chair of Wirral Children's Trust Board",
        "clause": "12.1, 21.2.1",
        "action": "The action was due by Friday 30 April 2027. If it is yours, carry it out now "
        "or say when it will be done; otherwise the chair will follow it up.",
    },
}


def sample(kind: str, recipient: str = "Alex Example") -> dict[str, Any]:
    """The sample context of `kind`, addressed to `recipient`; KeyError if there is none."""
    return {**SAMPLES[kind], "recipient": recipient}


_BOARD, _EXECUTIVE = "Wirral Children's Trust Board", "Children's Trust Executive"
_ORGANISATIONS = ("Merseyside Police", "NHS Wirral", "Wirral Council")
_MEETING_KINDS = frozenset({"meeting_notice", "meeting_cancelled", "minutes", "call_for_items"})
#: Wirral's clauses that the samples' words cite (` (18.1)`), by the process that gives them.
_CITED_IN_WORDS = {"18.1": "interests"}


def _replaced(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in names.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _replaced(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, names) for v in value]
    return value


def _clause(c: Constitution, kind: str, board: Body) -> str:
    """The clause `c` gives the step the sample of `kind` shows ("" where it gives none)."""
    if kind in _MEETING_KINDS or kind == "agenda":
        return board.clause or ""
    specs: dict[str, list[str | None]] = {
        "reminder": [q.clause for q in c.quarterly_reports],
        "report_request": [q.clause for q in c.quarterly_reports],
        "report_overdue": [q.clause for q in c.quarterly_reports],
        "review_due": [r.clause for r in c.reviews],
        "approval_request": [g.clause for g in c.approval_gates],
    }
    return next(iter(specs.get(kind, [])), None) or ""


def sample_for(c: Constitution, kind: str, recipient: str = "Alex Example") -> dict[str, Any]:
    """The sample of `kind` as the partnership of `c` would send it: its Board (or first body)
    and another of its bodies, its organisations, its clauses and its branding; KeyError if
    there is no sample of `kind`."""
    board = next(iter(c.bodies_of(BodyKind.BOARD)), c.bodies[0])
    other = next((b for b in c.bodies if b.id != board.id), board)
    organisations = [o.name for o in c.organisations] or [board.name]
    names = {_BOARD: board.name, _EXECUTIVE: other.name} | {
        old: organisations[i % len(organisations)] for i, old in enumerate(_ORGANISATIONS)
    }
    # ` (18.1)` becomes ` (4.5)`, the clause `c` gives, or nothing where it gives none.
    names |= {f" ({old})": cited("", c.cite(p)) for old, p in _CITED_IN_WORDS.items()}
    data = _replaced(sample(kind, recipient), names)
    if "location" in data:
        location = board.cadence.location if board.cadence else None
        data = {k: v for k, v in data.items() if k != "location"} | (
            {"location": location} if location else {}
        )
    data["clause"] = _clause(c, kind, board)
    context = branded(c, CONTEXTS[kind].model_validate(data))
    return {**data, "clause": context.clause, "brand": context.brand.model_dump()}
