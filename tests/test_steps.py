"""Cycle steps: a timer acts once when due; the reconcile sweep acts on what timers missed."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import meetings, reports, reviews
from models.clock import FixedClock
from models.cycle_steps import overdue_steps, reconcile, run_step
from models.errors import WctError
from models.steps import PlannedStep

from .cycles_support import london, populate, recipients, run, state, step_status


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def test_a_step_before_its_time_does_nothing(people: Engine, clock: FixedClock) -> None:
    run(
        people, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=date(2027, 3, 9))
    )
    before = state(people)
    assert run_step(people, clock, "meeting:board:2027-03-09:agenda").result == "not_due"
    assert state(people) == before
    assert step_status(people, "meeting:board:2027-03-09:agenda") == "pending"


def test_unknown_step_is_a_clear_error(people: Engine, clock: FixedClock) -> None:
    with pytest.raises(WctError, match="no step 'meeting:nope'"):
        run_step(people, clock, "meeting:nope")


def test_reconcile_acts_on_every_missed_step_once_in_due_order(
    people: Engine, clock: FixedClock
) -> None:
    run(
        people, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=date(2027, 3, 9))
    )
    run(people, clock, lambda uow: reports.open_reports(uow, period="2027-Q1"))
    run(people, clock, lambda uow: reviews.open_review(uow, kind="mou-review", year=2027))
    clock.set(london(2027, 3, 3, 12, 0))  # the server was down since November
    with Session(people) as session:
        missed = [s.key for s in overdue_steps(session, now=clock.now())]
    assert missed[:4] == [
        "meeting:board:2027-03-09:call_for_items",
        "meeting:board:2027-03-09:items_deadline",
        "review:mou-review:2027:notice",
        "meeting:board:2027-03-09:agenda",
    ]
    done = reconcile(people, clock)
    assert [d.key for d in done] == missed
    # Found after its items deadline, the call for items is skipped; everything else acts.
    assert {d.key: d.result for d in done if d.result != "acted"} == {
        "meeting:board:2027-03-09:call_for_items": "skipped"
    }
    assert recipients(people, "meeting_notice") != []
    assert step_status(people, "meeting:board:2027-03-09:reminder") == "pending"
    before = state(people)
    assert reconcile(people, clock) == []
    assert state(people) == before


def test_run_names_say_what_the_step_is_about() -> None:
    step = PlannedStep(
        "report:wscb-quarterly:wscb:2027-Q1:reminder-5",
        reports.REMINDER,
        "report:1",
        london(2027, 4, 14, 9, 0),
    )
    assert step.run_name == "wscb-quarterly-wscb-2027-Q1-reminder-5"
    assert step.as_dict()["due_at"] == "2027-04-14T09:00:00+01:00"
