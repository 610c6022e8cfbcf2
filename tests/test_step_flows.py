"""The step engine as Prefect flows on the session's harness: one timer flow (`step`) and one sweep
(`sweep`) for cycles and cases alike, and the upgrade of an installation whose Prefect server still
has the deployments of the two engines before it (`cycle-step`, `case-step`, `cycle-reconcile`,
`case-reconcile`) and timers under them.

The harness runs no scheduler: a test runs a flow with the time its run would have started at,
which is what the scheduled run does when its time comes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments.flow_runs import arun_deployment
from prefect.exceptions import ObjectNotFound
from sqlmodel import Session, select
from typer.testing import CliRunner

from deployments.cli import Runtime, app
from deployments.steps import RETIRED
from flows.steps import step, sweep
from models.clock import FixedClock
from models.config import Settings
from models.instructions import OpenReports
from models.permissions import SYSTEM_CYCLE
from models.tables import Step

from .cases_support import act
from .cycles_support import london
from .flows_harness import CycleDb
from .test_cycle_flows import runs_named
from .test_late_steps import agreed_call, reminders_sent

NOV = london(2026, 11, 23, 9, 0)


@pytest.fixture(scope="module")
def case_deployments_registered(prefect_harness: str) -> None:  # noqa: ARG001
    """A sweep starts a visible `follow-case` run for an open case that nobody follows."""
    from deployments.cases import case_deployments

    for made in case_deployments():
        made.apply()


def due_of(db: CycleDb, key: str) -> datetime:
    with Session(db.engine) as session:
        return session.exec(select(Step.due_at).where(Step.key == key)).one()


def test_three_reminders_of_a_call_to_account_by_their_timer_runs(cycle_db: CycleDb) -> None:
    case_id = agreed_call(cycle_db.engine, FixedClock(NOV))
    stem = f"account:{case_id}:r2:reminder-"  # planned by the case's second change
    for days in (10, 5, 1):
        key = f"{stem}{days}"
        assert asyncio.run(step(key=key, as_of=due_of(cycle_db, key))) == "acted"
        assert asyncio.run(step(key=key, as_of=due_of(cycle_db, key))) == "done"  # once
    assert reminders_sent(cycle_db.engine, case_id) == {"pat@police.example": 3}


def test_a_timer_of_another_database_acts_on_nothing_here(cycle_db: CycleDb) -> None:
    """A run left by one database's serving process and picked up by another's (the same
    deployment on a shared Prefect server) ends without acting on this database."""
    from prefect import tags

    case_id = agreed_call(cycle_db.engine, FixedClock(NOV))
    key = f"account:{case_id}:r2:reminder-10"
    with tags("wct-db-0123456789"):
        assert asyncio.run(step(key=key, as_of=due_of(cycle_db, key))) == "another database's timer"
    assert reminders_sent(cycle_db.engine, case_id) == {}
    assert asyncio.run(step(key=key, as_of=due_of(cycle_db, key))) == "acted"  # ours still acts
    assert reminders_sent(cycle_db.engine, case_id) == {"pat@police.example": 1}


def test_three_reminders_of_a_call_to_account_by_the_sweep(
    cycle_db: CycleDb,
    case_deployments_registered: None,  # noqa: ARG001
) -> None:
    case_id = agreed_call(cycle_db.engine, FixedClock(NOV))
    stem = f"account:{case_id}:r2:reminder-"  # planned by the case's second change
    followed = []
    for days in (10, 5, 1):
        key = f"{stem}{days}"
        due = due_of(cycle_db, key)
        swept = asyncio.run(sweep(as_of=due + timedelta(minutes=15), cycles=False))
        assert swept["acted"] == [key] and swept["problems"] == []
        followed.append(swept["followed"])
    assert reminders_sent(cycle_db.engine, case_id) == {"pat@police.example": 3}
    assert followed == [1, 0, 0]  # the case opened outside a flow run is followed, once


@flow(name="cycle-step")
async def old_cycle_step(key: str, as_of: datetime | None = None) -> str:
    return f"{key} {as_of}"


@flow(name="case-step")
async def old_case_step(key: str, as_of: datetime | None = None) -> bool:
    return bool(key or as_of)


@flow(name="cycle-reconcile")
async def old_cycle_reconcile(as_of: datetime | None = None) -> None:  # noqa: ARG001
    return None


@flow(name="case-reconcile")
async def old_case_reconcile(as_of: datetime | None = None) -> None:  # noqa: ARG001
    return None


@pytest.fixture
def old_installation(cycle_db: CycleDb) -> Iterator[UUID]:
    """The deployments an earlier wct registered, and a timer of a report's request under
    `cycle-step`, as the server of an installation upgraded in place holds them."""
    olds: list[tuple[Flow[..., Any], str]] = [
        (old_cycle_step, "cycle-step"),
        (old_case_step, "case-step"),
        (old_cycle_reconcile, "cycle-reconcile"),
        (old_case_reconcile, "case-reconcile"),
    ]
    for old, name in olds:
        made = old.to_deployment(name=name)
        assert not asyncio.iscoroutine(made)
        made.apply()
    act(cycle_db.engine, FixedClock(NOV), SYSTEM_CYCLE, OpenReports(period="2028-Q3"))
    key = "report:wscb-quarterly:wscb:2028-Q3:request"
    due = due_of(cycle_db, key)
    timer = asyncio.run(
        arun_deployment(
            "cycle-step/cycle-step",
            parameters={"key": key, "as_of": due.isoformat()},
            scheduled_time=due,
            idempotency_key=key,
            flow_run_name="wscb-quarterly-wscb-2028-Q3-request",
            timeout=0,
            as_subflow=False,
        )
    )
    yield timer.id


def test_an_upgrade_retires_the_old_engines_and_the_sweep_sets_their_timers_again(
    cycle_db: CycleDb,
    old_installation: UUID,
    prefect_harness: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "report:wscb-quarterly:wscb:2028-Q3:request"
    name = "wscb-quarterly-wscb-2028-Q3-request"
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    runtime = Runtime(
        settings=Settings(home=tmp_path / "home", database_url=cycle_db.url), clock=FixedClock(NOV)
    )
    upgraded = CliRunner().invoke(app, ["up", "--register-only"], obj=runtime)
    assert upgraded.exit_code == 0, upgraded.output
    for old in RETIRED:
        assert f"removed the deployment {old} of an earlier wct" in upgraded.output
    # What the catch-up sweep run does when it runs, at a time the request is due within the
    # sweep's horizon.
    swept = asyncio.run(sweep(as_of=due_of(cycle_db, key) - timedelta(days=7), cycles=False))
    assert swept["timers"] >= 1

    async def check() -> None:
        async with get_client() as client:
            for old in RETIRED:
                with pytest.raises(ObjectNotFound):
                    await client.read_deployment_by_name(old)
            with pytest.raises(ObjectNotFound):  # deleted with its deployment
                await client.read_flow_run(old_installation)
            timer = await client.read_deployment_by_name("step/step")
            await client.read_deployment_by_name("sweep/sweep")
        [run] = await runs_named(name)
        assert run.deployment_id == timer.id
        assert run.state is not None and run.state.type is StateType.SCHEDULED
        assert run.parameters["key"] == key
        assert run.expected_start_time == due_of(cycle_db, key)

    asyncio.run(check())
    again = CliRunner().invoke(app, ["up", "--register-only"], obj=runtime)
    assert again.exit_code == 0 and "removed the deployment" not in again.output


def test_a_timer_is_this_databases_for_this_step_at_this_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two databases on one Prefect server never take each other's timers, and a step planned
    again for another time gets a timer of its own."""
    from flows.runtime import _engine
    from flows.timers import timer_key
    from models.config import get_settings
    from models.steps.planning import PlannedStep

    due = london(2027, 3, 9, 9)
    planned = PlannedStep("meeting:board:2027-03-09:agenda", "agenda", "meeting:1", due, "x")
    keys = []
    for name in ("one", "two"):
        monkeypatch.setenv("WCT_DATABASE_URL", f"sqlite:///{tmp_path / name}.db")
        get_settings.cache_clear()
        _engine.cache_clear()
        keys.append(timer_key(planned))
    get_settings.cache_clear()
    later = PlannedStep(planned.key, "agenda", "meeting:1", due + timedelta(days=1), "x")
    assert len({*keys, timer_key(later)}) == 3
    assert all(planned.key in key for key in keys)
