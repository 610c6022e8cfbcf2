"""One step engine for cycles and cases: a registry of kinds that covers every step planned, typed
parameters checked when planned and when fired, a timer that acts once when due, and a sweep
that acts on what timers missed."""

from __future__ import annotations

import inspect
import json
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models import accountability, approvals, disputes, meetings, reports, reviews, risks
from models.clock import FixedClock
from models.disputes import DisputeStage
from models.errors import InvalidInput, NotFound, WctError
from models.instructions import (
    AnswerDeadline,
    CompleteReview,
    OpenCallToAccount,
    OpenDispute,
    RaiseRisk,
    RequestApproval,
)
from models.steps import (
    DaysBefore,
    LatePolicy,
    NoParams,
    StepParams,
    StepSpec,
    Subject,
    pending_steps,
    plan,
)
from models.steps.engine import overdue_steps, run_due, run_step
from models.steps.registry import KINDS, kind_of
from models.tables import Step

from . import cases_support
from .conftest import DATA, Cli
from .cycles_support import london, populate, recipients, run, state, step_status

DOMAIN = (
    meetings.steps,
    meetings.actions,
    reports,
    reviews,
    disputes,
    accountability,
    risks,
    approvals,
)


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


@pytest.fixture
def case_people(loaded: Engine, clock: FixedClock) -> Engine:
    cases_support.populate(loaded, clock)
    return loaded


# --- the registry ----------------------------------------------------------------------------


def test_every_kind_says_what_it_is_about_carries_locks_does_and_does_when_late() -> None:
    assert len(KINDS) == 21
    for name, kind in KINDS.items():
        assert kind.name == name and name.startswith(f"{kind.subject.value}.")
        assert issubclass(kind.spec.params, StepParams)
        assert isinstance(kind.late, LatePolicy)
        assert callable(kind.lock) and callable(kind.act)
    assert KINDS["report.reminder"].spec.params is DaysBefore
    assert KINDS["dispute.deadline"].spec.params is disputes.StageParams
    assert KINDS["meeting.agenda"].spec.params is NoParams


def test_every_step_spec_a_domain_module_declares_is_registered() -> None:
    declared = {
        value.name
        for module in DOMAIN
        for value in vars(module).values()
        if isinstance(value, StepSpec)
    } | {spec.name for spec in meetings.kinds.SPECS.values()}
    assert declared == set(KINDS)


def test_an_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(NotFound, match="no step kind 'meeting.banquet' \\(known: account.overdue"):
        kind_of("meeting.banquet")


def test_the_registry_covers_every_kind_planned_anywhere(
    case_people: Engine, clock: FixedClock
) -> None:
    """Every command that plans steps, run for real: each step it wrote names a registered kind,
    its subject by type and id, and parameters that its kind's model reads back."""
    engine = case_people
    board = run(
        engine, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=date(2027, 3, 9))
    )
    run(engine, clock, lambda uow: reports.open_reports(uow, period="2027-Q1"))
    run(engine, clock, lambda uow: reviews.open_review(uow, kind="cypp-review", year=2027))
    cases_support.act(
        engine,
        clock,
        "dcs@council.example",
        CompleteReview(kind="cypp-review", year=2027, outcome="Reviewed with its assessment."),
    )
    dispute = cases_support.act(
        engine,
        clock,
        "pat@police.example",
        OpenDispute(title="Referral thresholds", parties=["merseyside-police", "nhs-wirral"]),
    )
    call = cases_support.act(
        engine,
        clock,
        "chair@wscb.example",
        OpenCallToAccount(
            organisation="merseyside-police",
            evidence="Section 11 audit",
            proposed_deadline=date(2027, 1, 15),
        ),
    )
    cases_support.act(
        engine, clock, "pat@police.example", AnswerDeadline(case_id=call.case_id, accept=True)
    )
    cases_support.act(
        engine,
        clock,
        "dcs@council.example",
        RaiseRisk(title="Placements", owner="sally@council.example", likelihood=2, impact=2),
    )
    cases_support.act(
        engine,
        clock,
        "jack@council.example",
        RequestApproval(gate="safeguarding-commissioning", title="Parenting support contract"),
    )
    clock.set(london(2027, 3, 9, 16, 0))
    run(
        engine,
        clock,
        lambda uow: meetings.record_meeting(
            uow,
            meeting_id=board.meeting_id,
            present=["lead@council.example"],
            actions=[meetings.ActionInput("Cost it", "dcs@council.example", date(2027, 4, 30))],
        ),
    )
    with Session(engine) as session:
        steps = session.exec(select(Step)).all()
    assert {s.kind for s in steps} == set(KINDS)
    for step in steps:
        kind = kind_of(step.kind)
        assert step.subject_type == kind.subject
        assert step.subject == Subject(step.subject_type).of(step.subject_id)
        assert isinstance(kind.spec.load(step.key, step.params), kind.spec.params)
    by_key = {s.key: s for s in steps}
    assert by_key[f"dispute:{dispute.dispute_id}:informal:deadline"].params == {"stage": "informal"}
    assert by_key["report:wscb-quarterly:wscb:2027-Q1:reminder-5"].params == {"days": 5}
    assert by_key[f"account:{call.case_id}:r2:reminder-1"].params == {"days": 1}


def test_parameters_that_do_not_fit_the_kind_are_refused_when_planned(
    people: Engine, clock: FixedClock
) -> None:
    report = run(people, clock, lambda uow: reports.open_reports(uow, period="2027-Q1"))
    before = state(people)

    def bad(spec: StepSpec[Any], params: StepParams | None) -> None:
        run(
            people,
            clock,
            lambda uow: plan(
                uow.session,
                spec,
                key="report:made-up:1",
                subject_id=1,
                due_at=london(2027, 4, 1, 9),
                params=params,
            ),
        )

    with pytest.raises(InvalidInput, match="a report.reminder step needs parameters: days"):
        bad(reports.REMINDER_STEP, None)
    with pytest.raises(InvalidInput, match="takes DaysBefore, not StageParams"):
        bad(reports.REMINDER_STEP, disputes.StageParams(stage=DisputeStage.ADR))
    with pytest.raises(ValueError, match="less than or equal to 366"):
        DaysBefore(days=400)
    assert state(people) == before
    assert report.created


def test_parameters_that_no_longer_fit_fail_the_step_clearly_and_change_nothing(
    people: Engine, clock: FixedClock
) -> None:
    run(people, clock, lambda uow: reports.open_reports(uow, period="2027-Q1"))
    key = "report:wscb-quarterly:wscb:2027-Q1:reminder-5"
    with Session(people) as session:
        step = session.exec(select(Step).where(Step.key == key)).one()
        step.params = {"days": "five"}
        session.add(step)
        session.commit()
        clock.set(step.due_at)
    before = state(people)
    with pytest.raises(InvalidInput, match=f"step '{key}' has bad parameters for report.reminder"):
        run_step(people, clock, key)
    assert state(people) == before and step_status(people, key) == "pending"


# --- the timer and the sweep -----------------------------------------------------------------


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


def test_the_sweep_acts_on_every_missed_step_once_in_due_order(
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
    done = run_due(people, clock)
    assert [d.key for d in done] == missed
    # Found after its items deadline, the call for items is skipped; everything else acts.
    assert {d.key: d.result for d in done if d.result != "acted"} == {
        "meeting:board:2027-03-09:call_for_items": "skipped"
    }
    assert recipients(people, "meeting_notice") != []
    assert step_status(people, "meeting:board:2027-03-09:reminder") == "pending"
    before = state(people)
    assert run_due(people, clock) == []
    assert state(people) == before


def test_the_sweep_acts_on_cycle_and_case_steps_alike(
    case_people: Engine, clock: FixedClock
) -> None:
    dispute = cases_support.act(
        case_people,
        clock,
        "pat@police.example",
        OpenDispute(title="Referral thresholds", parties=["merseyside-police", "nhs-wirral"]),
    )
    run(
        case_people,
        clock,
        lambda uow: meetings.plan_meeting(uow, body_id="wscb", day=date(2027, 1, 28)),
    )
    clock.advance(timedelta(days=45))
    done = {d.key: d for d in run_due(case_people, clock)}
    deadline = done[f"dispute:{dispute.dispute_id}:informal:deadline"]
    assert (deadline.result, deadline.subject, deadline.changed_a_case) == (
        "acted",
        f"dispute:{dispute.dispute_id}",
        True,
    )
    notice = done["meeting:wscb:2027-01-28:call_for_items"]
    assert notice.result == "acted" and not notice.changed_a_case
    assert [k for k, e in cases_support.messages(case_people, "dispute_stage") if "chief" in k]


def test_run_names_say_what_the_step_is_about(case_people: Engine, clock: FixedClock) -> None:
    opened = run(case_people, clock, lambda uow: reports.open_reports(uow, period="2027-Q1"))
    reminder = next(s for s in opened.steps if s.key.endswith("wscb:2027-Q1:reminder-5"))
    assert reminder.run_name == "wscb-quarterly-wscb-2027-Q1-reminder-5"
    assert reminder.as_dict()["due_at"] == "2027-04-14T09:00:00+01:00"
    dispute = cases_support.act(
        case_people,
        clock,
        "pat@police.example",
        OpenDispute(title="Referral thresholds", parties=["merseyside-police", "nhs-wirral"]),
    )
    with Session(case_people) as session:
        [deadline] = pending_steps(session, f"dispute:{dispute.dispute_id}")
    assert deadline.run_name == f"dispute-{dispute.dispute_id}-informal-deadline"


def test_no_handler_takes_its_data_apart_from_a_key() -> None:
    """Steps carry their subject and parameters in typed columns: nothing in the domain or the
    flows splits a key or a subject string to find them (the migration did, once)."""
    import flows.cases
    import flows.cycles
    import flows.simulate
    import flows.steps
    import models.steps.engine

    modules = [*DOMAIN, meetings.plan, models.steps.engine, models.steps.planning]
    modules += [flows.cases, flows.cycles, flows.simulate, flows.steps]
    for module in modules:
        text = inspect.getsource(module)
        for parse in ('.split(":"', ".rsplit(", '.partition(":")'):
            assert parse not in text, f"{module.__name__} parses with {parse}"


def test_wct_steps_lists_and_runs_case_steps_as_well(cli: Cli, clock: FixedClock) -> None:
    assert cli("init").exit_code == 0
    assert cli("members", "import", DATA / "cases-members.csv").exit_code == 0
    opened = cli(
        "dispute", "open", "--title", "Front door", "--party", "merseyside-police",
        "--party", "nhs-wirral", "--as", "pat@police.example", "--json",
    )  # fmt: skip
    assert opened.exit_code == 0, opened.output
    deadline = f"dispute:{json.loads(opened.stdout)['dispute_id']}:informal:deadline"
    cli("meeting", "plan", "wscb", "2027-01-28")
    clock.advance(timedelta(days=45))
    listed = cli("steps", "--json")
    assert listed.exit_code == 0, listed.output
    overdue = [s["key"] for s in json.loads(listed.stdout)]
    assert deadline in overdue and "meeting:wscb:2027-01-28:call_for_items" in overdue
    ran = cli("steps", "--reconcile", "--json")
    assert ran.exit_code == 0, ran.output
    results = {r["key"]: r["result"] for r in json.loads(ran.stdout)}
    assert results[deadline] == "acted"
    assert json.loads(cli("steps", "--json").stdout) == []
