"""Approval gates that hold (11.3.5, 21.1.1): an item put forward under an approval request cannot
be decided by another body until the approving body approves, and the approving body is chased
by a date, as reports are. Messages are counted per recipient."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import meetings
from models.clock import FixedClock
from models.decision import Outcome, Vote
from models.errors import NotFound, Refused
from models.instructions import DecideApproval, RequestApproval, SubmitItem
from models.meetings.papers import meeting_papers
from models.steps.engine import run_due
from models.tables import ApprovalRequest, OutboxMessage, Person

from .cases_support import act, run, state
from .cycles_support import fire, london, populate
from .test_meetings import STEM, plan

PRESENT = ["lead@council.example", "eve@council.example", "dcs@council.example"]
VOTES = {"lead@council.example": Vote.FOR, "eve@council.example": Vote.FOR}


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def requested(engine: Engine, clock: FixedClock) -> int:
    result = act(
        engine,
        clock,
        "jack@council.example",
        RequestApproval(gate="safeguarding-commissioning", title="Parenting support contract"),
    )
    return result.request_id


def board_item_under(engine: Engine, clock: FixedClock, request_id: int) -> tuple[int, int]:
    """The Board's 9 March 2027 meeting, held, with the contract on its agenda under the
    request: (meeting id, the item's agenda position)."""
    planned = plan(engine, clock)
    act(
        engine,
        clock,
        "coord@council.example",
        SubmitItem(
            meeting_id=planned.meeting_id,
            title="Award the parenting support contract",
            approval_id=request_id,
        ),
    )
    fire(engine, clock, f"{STEM}:agenda")
    clock.set(planned.starts_at + timedelta(hours=2))
    run(
        engine,
        clock,
        lambda uow: meetings.record_attendance(uow, meeting_id=planned.meeting_id, present=PRESENT),
    )
    with Session(engine) as session:
        lines = meetings.agenda(session, planned.meeting_id)
    position = next(line.position for line in lines if line.title.startswith("Award the"))
    return planned.meeting_id, position


def decide_item(engine: Engine, clock: FixedClock, meeting_id: int, item: int) -> Outcome:
    decided = run(
        engine,
        clock,
        lambda uow: meetings.record_motion(
            uow, meeting_id=meeting_id, text="Award the contract", item=item, votes=VOTES
        ),
    )
    return decided.decision.outcome


def test_the_board_cannot_decide_until_the_wscb_approves(people: Engine, clock: FixedClock) -> None:
    request_id = requested(people, clock)
    meeting_id, item = board_item_under(people, clock, request_id)
    before = state(people)
    with pytest.raises(
        Refused, match="waits on Wirral Safeguarding Children Board's approval"
    ) as e:
        decide_item(people, clock, meeting_id, item)
    assert e.value.clause == "11.3.5"
    assert state(people) == before  # nothing recorded
    with Session(people) as session:  # the papers say why the item waits
        papers = meeting_papers(session, meeting_id)
    [awaiting] = [i for i in papers.items if i.title.startswith("Award the")]
    assert (
        awaiting.awaits == "needs Wirral Safeguarding Children Board's approval (11.3.5): awaited"
    )
    act(
        people,
        clock,
        "chair@wscb.example",
        DecideApproval(request_id=request_id, approve=True, note="Safeguarding assured"),
    )
    assert decide_item(people, clock, meeting_id, item) == Outcome.CARRIED


def test_a_refused_proposal_cannot_be_decided(people: Engine, clock: FixedClock) -> None:
    request_id = requested(people, clock)
    act(
        people,
        clock,
        "chair@wscb.example",
        DecideApproval(request_id=request_id, approve=False, note="Not safe enough"),
    )
    meeting_id, item = board_item_under(people, clock, request_id)
    with pytest.raises(Refused, match="was refused by"):
        decide_item(people, clock, meeting_id, item)


def test_an_item_under_an_unknown_request_is_refused_and_writes_nothing(
    people: Engine, clock: FixedClock
) -> None:
    planned = plan(people, clock)
    before = state(people)
    with pytest.raises(NotFound, match="no approval request #99"):
        act(
            people,
            clock,
            "coord@council.example",
            SubmitItem(meeting_id=planned.meeting_id, title="X", approval_id=99),
        )
    assert state(people) == before


def chasers(engine: Engine, request_id: int) -> Counter[str]:
    """Who was sent each chaser of the request (one message per chaser per person)."""
    with Session(engine) as session:
        rows = session.exec(
            select(Person.email, OutboxMessage.key)
            .join(OutboxMessage, col(OutboxMessage.person_id) == col(Person.id))
            .where(col(OutboxMessage.key).startswith(f"approval:{request_id}:"))
        ).all()
    stages = [(email, key.split(":")[2]) for email, key in rows]
    return Counter(
        f"{email} {stage}" for email, stage in stages if stage.startswith(("reminder", "overdue"))
    )


def test_the_approving_body_is_chased_by_its_date_and_the_proposers_told_when_it_passes(
    people: Engine, clock: FixedClock
) -> None:
    request_id = requested(people, clock)
    with Session(people) as session:
        request = session.get(ApprovalRequest, request_id)
        assert request is not None and request.due_on is not None
        due_on = request.due_on
    assert due_on.weekday() < 5  # 20 working days from 23 November 2026
    while clock.now() < london(due_on.year, due_on.month, due_on.day, 18, 0):
        clock.advance(timedelta(hours=12))
        run_due(people, clock)
    assert chasers(people, request_id) == Counter(
        {
            "chair@wscb.example reminder-10": 1,
            "chair@wscb.example reminder-5": 1,
            "chair@wscb.example reminder-1": 1,
            "chair@wscb.example overdue": 1,  # the approving body's chair
            "jack@council.example overdue": 1,  # the proposing body's chair
            "coord@council.example overdue": 1,
        }
    )


def test_a_decision_stops_the_chasers(people: Engine, clock: FixedClock) -> None:
    request_id = requested(people, clock)
    act(
        people,
        clock,
        "chair@wscb.example",
        DecideApproval(request_id=request_id, approve=True, note="Fine"),
    )
    for _ in range(40):
        clock.advance(timedelta(days=1))
        run_due(people, clock)
    assert chasers(people, request_id) == Counter()
