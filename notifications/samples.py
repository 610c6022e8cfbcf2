"""A sample context for every kind, so `wct preview KIND` lets a coordinator proof a template."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from models.clock import LONDON

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
        "clause": "20.4",
        "action": "Accept the invitation; send apologies to the coordinator if you cannot come.",
    },
    "meeting_cancelled": {
        "body": "Wirral Children's Trust Board",
        "starts_at": _MEETING,
        "ends_at": datetime(2027, 1, 12, 12, 0, tzinfo=LONDON),
        "ical_uid": "meeting-board-2027-01-12@wct",
        "ical_sequence": 1,
        "reason": "Not quorate: fewer than half the members can attend.",
        "clause": "20.4",
        "action": "Nothing: the business moves to the next meeting.",
    },
    "call_for_items": {
        "body": "Wirral Children's Trust Board",
        "starts_at": _MEETING,
        "items_due": datetime(2026, 12, 22, 17, 0, tzinfo=LONDON),
        "clause": "20.4.2",
        "action": "Reply with the title of any item you want on the agenda, and its paper.",
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
        "clause": "20.4.3",
        "action": "Read the papers before the meeting; declare any interest at item 1.",
    },
    "reminder": {
        "what": "the Executive's quarterly report for 2026-Q4",
        "due": datetime(2027, 1, 5, 17, 0, tzinfo=LONDON),
        "body": "Children's Trust Executive",
        "clause": "22.2.1",
        "action": "Submit the report with `wct report submit`, or ask the coordinator for help.",
    },
    "report_request": {
        "report": "Quarterly progress report",
        "period": "2026-Q4",
        "from_body": "Children's Trust Executive",
        "to_body": "Wirral Children's Trust Board",
        "due_on": date(2027, 1, 5),
        "clause": "22.2.1",
        "action": "Prepare the report and submit it by the due date.",
    },
    "report_overdue": {
        "report": "Quarterly progress report",
        "period": "2026-Q4",
        "from_body": "Children's Trust Executive",
        "to_body": "Wirral Children's Trust Board",
        "due_on": date(2027, 1, 5),
        "days_overdue": 3,
        "escalated_to": "the Chair of the Board",
        "clause": "22.2.1",
        "action": "Submit the report now, or tell the Chair when it will come.",
    },
    "review_due": {
        "review": "Annual review of the Children and Young People's Plan",
        "year": 2027,
        "owner_body": "Wirral Children's Trust Board",
        "due_on": date(2027, 3, 31),
        "clause": "11.4.1",
        "action": "Put the review on the agenda of the Board's next meeting.",
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
        "action": "The risk will be on the Board's next agenda for formal assessment.",
    },
    "risk_review_overdue": {
        "risk_id": 7,
        "title": "Social worker vacancies above 20%",
        "score": 20,
        "due": date(2027, 2, 1),
        "clause": "16.1",
        "action": "Review the risk at the Executive and record its new scores.",
    },
    "dispute_stage": {
        "dispute_id": 3,
        "title": "Funding of the early help hub",
        "stage": "chief_executives",
        "parties": ["council", "nhs-cheshire-merseyside"],
        "deadline": date(2027, 2, 12),
        "reason": "not resolved informally by the deadline",
        "clause": "18.2",
        "action": "The Chief Executive of each agency involved is asked to meet to resolve it.",
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
        "action": "Agree a deadline for your response with the Safeguarding Board.",
    },
    "approval_request": {
        "request_id": 4,
        "title": "Revised Children and Young People's Plan",
        "gate": "The Board approves the CYPP",
        "from_body": "Children's Trust Executive",
        "approver_body": "Wirral Children's Trust Board",
        "clause": "11.3.5",
        "action": "The proposal is on your body's next agenda for a decision.",
    },
}


def sample(kind: str, recipient: str = "Alex Example") -> dict[str, Any]:
    """The sample context of `kind`, addressed to `recipient`; KeyError if there is none."""
    return {**SAMPLES[kind], "recipient": recipient}
