"""Messages: a context is checked when it is queued (a malformed one fails its command, which
writes nothing), and a message's key names what makes it distinct, so a transition that happens
again is told again while a retried command is told once. Counted per recipient, not in rows."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typing_extensions import override

from models import risks
from models.casework import notify
from models.clock import FixedClock
from models.instructions import (
    AnswerDeadline,
    JudgeResponse,
    OpenCallToAccount,
    RaiseRisk,
    RespondToCall,
    ReviewRisk,
)
from models.messages import (
    CONTEXTS,
    CallToAccount,
    MessageMalformed,
    Reminder,
    ReviewChallenged,
    serialise,
    validate_context,
)
from models.permissions import Principal
from models.steps import pending_steps
from models.steps.engine import run_due
from models.tables import OutboxMessage, Person, Risk, Step
from models.uow import UnitOfWork
from notifications.render import render

from .cases_support import act, populate, state

PARTNER = ("chief@police.example", "pat@police.example")  # Merseyside Police's people
WSCB = ("chair@wscb.example",)
DEADLINE = date(2027, 1, 15)


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def told(engine: Engine, kind: str, **context: Any) -> Counter[str]:
    """How many messages of `kind` (whose context has the given values) each person was sent."""
    with Session(engine) as session:
        rows = session.exec(
            select(Person.email, OutboxMessage.context)
            .join(OutboxMessage, col(OutboxMessage.person_id) == col(Person.id))
            .where(OutboxMessage.kind == kind)
        ).all()
    return Counter(
        email
        for email, stored in rows
        if all(json.loads(stored).get(k) == v for k, v in context.items())
    )


def each(emails: tuple[str, ...], n: int) -> Counter[str]:
    return Counter(dict.fromkeys(emails, n))


# --- contexts are typed, and checked when queued ---------------------------------------------


def untyped(**fields: Any) -> Reminder:
    """A reminder built around its model's checks, as a bug might build one."""
    return Reminder.model_construct(**fields)


def test_every_kind_has_a_typed_model_naming_its_kind() -> None:
    assert all(model.kind == kind for kind, model in CONTEXTS.items())
    assert ReviewChallenged.kind == "reminder"  # a richer model of a kind keeps the kind


def test_a_context_is_stored_as_its_kind_reads_it_back() -> None:
    message = CallToAccount(
        clause="11.5.1",
        case_id=3,
        case_kind="evidence_request",
        organisation="Merseyside Police",
        evidence="Section 11 audit",
        status="negotiating",
        event="opened",
        proposed_deadline=DEADLINE,
        action="Agree a deadline.",
    )
    stored = serialise(message)
    assert stored["kind"] == "evidence_request" and stored["proposed_deadline"] == "2027-01-15"
    assert "was_due" not in stored and "agreed_deadline" not in stored
    back = validate_context("call_to_account", {**stored, "recipient": "Pat Police"})
    assert back == message.model_copy(update={"recipient": "Pat Police"})


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (untyped(clause="16.1", action="Review it"), "what: Field required"),
        (
            untyped(clause="16.1", action="x", what="y", due="next week"),
            "due",
        ),
        ({"clause": "16.1", "action": "x", "what": "y"}, "not dict"),
    ],
)
def test_a_malformed_context_is_named_before_anything_is_queued(bad: Any, words: str) -> None:
    with pytest.raises(MessageMalformed, match=words):
        serialise(bad)


@dataclass(frozen=True, kw_only=True)
class RaiseRiskAndTellBadly(RaiseRisk):
    """A command with a bug: it raises a risk (its row, audit, messages to the Board's chair, a
    review step), then queues a message whose context does not fit its kind."""

    bad: Any

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> risks.RiskResult:
        raised = super().run(uow, actor)
        owner = uow.session.exec(select(Person).where(Person.email == self.owner)).one()
        notify(uow, self.bad, people=[owner], key=f"risk:{raised.risk_id}:bug")
        return raised


@pytest.mark.parametrize(
    "bad",
    [
        untyped(clause="16.1", action="Review it"),
        {"clause": "16.1", "action": "Review it", "what": "the risk", "due": "2027-01-01"},
    ],
    ids=["model-missing-fields", "dict"],
)
def test_a_command_whose_message_is_malformed_fails_and_writes_nothing(
    people: Engine, clock: FixedClock, bad: Any
) -> None:
    before = state(people)  # audit events, outbox rows, steps
    with pytest.raises(MessageMalformed):
        bug = RaiseRiskAndTellBadly(
            title="Placements", owner="sally@council.example", likelihood=5, impact=5, bad=bad
        )
        act(people, clock, "dcs@council.example", bug)
    assert state(people) == before
    with Session(people) as session:
        assert session.exec(select(Risk)).all() == []


# --- calls to account (11.5.1): each occurrence is its own message ----------------------------


def open_call(engine: Engine, clock: FixedClock) -> int:
    call = OpenCallToAccount(
        organisation="merseyside-police",
        evidence="Section 11 audit: strategy meetings not attended",
        proposed_deadline=DEADLINE,
    )
    return act(engine, clock, "chair@wscb.example", call).case_id


def agree(engine: Engine, clock: FixedClock, case_id: int) -> None:
    act(engine, clock, "pat@police.example", AnswerDeadline(case_id=case_id, accept=True))


def respond(engine: Engine, clock: FixedClock, case_id: int) -> None:
    act(engine, clock, "chief@police.example", RespondToCall(case_id=case_id, response="Plan"))


def reopen(engine: Engine, clock: FixedClock, case_id: int, deadline: date) -> None:
    judge = JudgeResponse(case_id=case_id, accept=False, note="Not enough", new_deadline=deadline)
    act(engine, clock, "chair@wscb.example", judge)


def test_the_same_call_given_twice_is_one_case_and_one_message(
    people: Engine, clock: FixedClock
) -> None:
    assert open_call(people, clock) == open_call(people, clock)
    assert told(people, "call_to_account", event="opened") == each(PARTNER, 1)


def test_a_second_agreement_after_a_reopen_is_told_and_chased_again(
    people: Engine, clock: FixedClock
) -> None:
    """After `reopen` and a second `agree` of the same date, the partner and the WSCB are told
    again, and the second agreement's reminders and overdue escalation fire: each step and each
    message names its occurrence, not only the date."""
    case_id = open_call(people, clock)
    agree(people, clock, case_id)
    respond(people, clock, case_id)
    reopen(people, clock, case_id, DEADLINE)  # the same date, proposed again the same day
    agree(people, clock, case_id)
    assert told(people, "call_to_account", event="agreed") == each(PARTNER + WSCB, 2)
    with Session(people) as session:
        pending = pending_steps(session, f"account:{case_id}")
    assert [s.kind for s in pending] == ["account.reminder"] * 3 + ["account.overdue"]
    for step in pending:  # each fired in its time
        clock.set(step.due_at + timedelta(minutes=10))
        assert [r.key for r in run_due(people, clock) if r.result == "acted"] == [step.key]
    assert told(people, "call_to_account", event="reminder") == each(PARTNER, 3)
    overdue = told(people, "call_to_account", event=f"overdue-{DEADLINE}")
    assert overdue == Counter(["lead@council.example", "chair@wscb.example"])


def test_each_stalemate_of_a_reopened_case_is_its_own_step(
    people: Engine, clock: FixedClock
) -> None:
    """A case reopened the day it was opened has the same agreement window: its stalemate step
    is still planned, and escalates again."""
    case_id = open_call(people, clock)
    agree(people, clock, case_id)
    respond(people, clock, case_id)
    reopen(people, clock, case_id, DEADLINE)
    with Session(people) as session:
        stalemates = session.exec(
            select(Step.status)
            .where(Step.subject == f"account:{case_id}")
            .where(Step.kind == "account.stalemate")
        ).all()
    assert sorted(stalemates) == ["pending", "settled"]
    clock.advance(timedelta(days=30))
    run_due(people, clock)
    chairs = Counter(["lead@council.example", "chair@wscb.example"])
    assert told(people, "call_to_account", event="stalemate") == chairs


def test_a_counter_proposal_made_again_is_told_again(people: Engine, clock: FixedClock) -> None:
    case_id = open_call(people, clock)
    later, earlier = date(2027, 1, 29), date(2027, 1, 22)
    counter = AnswerDeadline(case_id=case_id, accept=False, counter=later)
    act(people, clock, "pat@police.example", counter)
    act(
        people,
        clock,
        "chair@wscb.example",
        AnswerDeadline(case_id=case_id, accept=False, counter=earlier),
    )
    act(people, clock, "pat@police.example", counter)  # the same date again, a new proposal
    assert told(people, "call_to_account", event=f"counter-{later}") == each(WSCB, 2)
    assert told(people, "call_to_account", event=f"counter-{earlier}") == each(PARTNER, 1)


def test_accepting_the_response_tells_the_partner_and_the_wscb(
    people: Engine, clock: FixedClock
) -> None:
    case_id = open_call(people, clock)
    agree(people, clock, case_id)
    respond(people, clock, case_id)
    judge = JudgeResponse(case_id=case_id, accept=True, note="Satisfied")
    act(people, clock, "chair@wscb.example", judge)
    assert told(people, "call_to_account", event="accepted") == each(PARTNER + WSCB, 1)
    with Session(people) as session:
        stored = session.exec(
            select(OutboxMessage.context).where(col(OutboxMessage.key).contains(":accepted:"))
        ).first()
    assert stored is not None
    out = render("call_to_account", validate_context("call_to_account", json.loads(stored)))
    assert out.subject == "Call to account of Merseyside Police: response accepted"
    assert "is now closed" in out.text and "accepted the response" in out.text
    action = json.loads(stored)["action"]
    assert action in out.text and "wct" not in action and "`" not in action  # no CLI here


# --- risks (16.1) -------------------------------------------------------------------------------


def test_a_risk_reviewed_the_day_it_was_raised_is_still_chased(
    people: Engine, clock: FixedClock
) -> None:
    """Its next review date is the same as the first: the review step is planned again all the
    same (named by the review that planned it), and its chase reaches the owner and the chair."""
    raised = act(
        people,
        clock,
        "dcs@council.example",
        RaiseRisk(title="Placements", owner="sally@council.example", likelihood=2, impact=2),
    )
    review = ReviewRisk(risk_id=raised.risk_id, likelihood=2, impact=3)
    act(people, clock, "dcs@council.example", review)
    clock.advance(timedelta(days=200))
    run_due(people, clock)
    assert told(people, "risk_review_overdue") == each(
        ("sally@council.example", "dcs@council.example"), 1
    )
