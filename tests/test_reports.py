"""Quarterly reports (22.2.1, 11.4.1): request, reminders that stop, escalation, the agenda."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import meetings, reports
from models.clock import FixedClock
from models.errors import WctError
from models.instructions import SubmitReport
from models.permissions import NotPermitted
from models.tables import Report

from .cases_support import act
from .cycles_support import fire, london, populate, recipients, run, state, step_status

WSCB = "report:wscb-quarterly:wscb:2027-Q1"
HEALTHY = "report:strategy-group-performance:be-healthy:2027-Q1"


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def open_q1(engine: Engine, clock: FixedClock) -> reports.ReportsOpened:
    return run(engine, clock, lambda uow: reports.open_reports(uow, period="2027-Q1"))


def submit(engine: Engine, clock: FixedClock, kind: str, body: str, by: str) -> Report:
    submission = SubmitReport(
        kind=kind, from_body=body, period="2027-Q1", document="https://x.example/r"
    )
    return act(engine, clock, by, submission)


def compose(engine: Engine, clock: FixedClock, meeting_id: int) -> None:
    run(engine, clock, lambda uow: meetings.compose_agenda(uow, meeting_id=meeting_id))


def test_every_report_owed_is_opened_once_with_its_steps(people: Engine, clock: FixedClock) -> None:
    opened = open_q1(people, clock)
    assert sorted(opened.created) == sorted(
        [WSCB]
        + [
            f"report:strategy-group-performance:{g}:2027-Q1"
            for g in (
                "be-healthy",
                "stay-safe",
                "enjoy-and-achieve",
                "positive-contribution",
                "economic-wellbeing",
            )
        ]
    )
    due = {s.key: s.due_at for s in opened.steps if s.key.startswith(WSCB)}
    # Due 15 working days after 31 March 2027: 21 April.
    assert due == {
        f"{WSCB}:request": london(2027, 3, 22, 9, 0),  # 20 back, over Easter 26 and 29 March
        f"{WSCB}:reminder-10": london(2027, 4, 7, 9, 0),
        f"{WSCB}:reminder-5": london(2027, 4, 14, 9, 0),
        f"{WSCB}:reminder-1": london(2027, 4, 20, 9, 0),
        f"{WSCB}:overdue": london(2027, 4, 26, 17, 0),
    }
    before = state(people)
    again = open_q1(people, clock)
    assert again.created == [] and len(again.steps) == len(opened.steps)
    assert state(people) == before


@pytest.mark.parametrize("period", ["2027-Q5", "2027Q1", "Q1", "1999-Q1"])
def test_bad_period_is_refused(people: Engine, clock: FixedClock, period: str) -> None:
    before = state(people)
    with pytest.raises(WctError, match="quarter|out of range"):
        run(people, clock, lambda uow: reports.open_reports(uow, period=period))
    assert state(people) == before


def test_reminders_stop_once_the_report_is_submitted(people: Engine, clock: FixedClock) -> None:
    open_q1(people, clock)
    assert fire(people, clock, f"{WSCB}:request") == "acted"
    assert recipients(people, "report_request", WSCB) == ["chair@wscb.example"]
    assert fire(people, clock, f"{WSCB}:reminder-10") == "acted"
    assert recipients(people, "reminder", WSCB) == ["chair@wscb.example"]
    submitted = submit(people, clock, "wscb-quarterly", "wscb", "chair@wscb.example")
    assert submitted.status == reports.SUBMITTED
    for later in ("reminder-5", "reminder-1", "overdue"):
        assert step_status(people, f"{WSCB}:{later}") == "settled"
        assert fire(people, clock, f"{WSCB}:{later}") == "settled"
    assert recipients(people, "reminder", WSCB) == ["chair@wscb.example"]  # one, not three
    assert recipients(people, "report_overdue", WSCB) == []


def test_a_report_not_received_is_escalated_to_the_executive_chair(
    people: Engine, clock: FixedClock
) -> None:
    open_q1(people, clock)
    assert fire(people, clock, f"{HEALTHY}:overdue") == "acted"
    assert recipients(people, "report_overdue", HEALTHY) == [
        "coord@council.example",
        "dcs@council.example",
        "hana@nhs.example",
    ]
    with Session(people) as session:
        report = reports.find_report(
            session, kind="strategy-group-performance", from_body="be-healthy", period="2027-Q1"
        )
        assert report.status == reports.OVERDUE_STATUS
    # A reminder that fires only once the escalation is due adds nothing to it: skipped.
    assert fire(people, clock, f"{HEALTHY}:reminder-1") == "skipped"
    assert recipients(people, "reminder", HEALTHY) == []
    late = submit(people, clock, "strategy-group-performance", "be-healthy", "hana@nhs.example")
    assert late.status == reports.SUBMITTED_LATE


def test_submission_refused_for_bad_input_changes_nothing(
    people: Engine, clock: FixedClock
) -> None:
    open_q1(people, clock)
    before = state(people)
    with pytest.raises(NotPermitted, match="may not report.submit for wscb"):
        submit(people, clock, "wscb-quarterly", "wscb", "olly@fire.example")
    with pytest.raises(WctError, match="no quarterly report 'nope'"):
        submit(people, clock, "nope", "wscb", "chair@wscb.example")
    with pytest.raises(WctError, match="no wscb-quarterly report from board"):
        submit(people, clock, "wscb-quarterly", "board", "chair@wscb.example")
    assert state(people) == before
    submit(people, clock, "wscb-quarterly", "wscb", "chair@wscb.example")
    with pytest.raises(WctError, match="already submitted"):
        submit(people, clock, "wscb-quarterly", "wscb", "chair@wscb.example")


def test_received_reports_land_on_the_next_agenda_once(people: Engine, clock: FixedClock) -> None:
    open_q1(people, clock)
    submit(people, clock, "wscb-quarterly", "wscb", "chair@wscb.example")
    submit(people, clock, "strategy-group-performance", "stay-safe", "sally@council.example")
    board = run(
        people, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=date(2027, 3, 9))
    )
    executive = run(
        people,
        clock,
        lambda uow: meetings.plan_meeting(uow, body_id="executive", day=date(2027, 4, 21)),
    )
    for meeting_id in (board.meeting_id, executive.meeting_id):
        compose(people, clock, meeting_id)
    with Session(people) as session:
        on_board = [line.title for line in meetings.agenda(session, board.meeting_id)]
        on_exec = [line.title for line in meetings.agenda(session, executive.meeting_id)]
    assert "Report: wscb-quarterly from wscb, 2027-Q1" in on_board
    assert "Report: strategy-group-performance from stay-safe, 2027-Q1" in on_exec
    assert not any("stay-safe" in t for t in on_board)
    later = run(
        people,
        clock,
        lambda uow: meetings.plan_meeting(uow, body_id="board", day=date(2027, 5, 11)),
    )
    run(people, clock, lambda uow: meetings.compose_agenda(uow, meeting_id=later.meeting_id))
    with Session(people) as session:
        on_later = [line.title for line in meetings.agenda(session, later.meeting_id)]
    assert not any(t.startswith("Report:") for t in on_later)  # tabled once
