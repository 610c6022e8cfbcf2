"""Time that survives: the cycle deployments served by a real `serve()` process that the test
stops in the middle of a cycle and starts again; every step still happens exactly once. Also
`wct up --register-only` and a short `wct simulate` against the same Prefect server.

The harness runs no scheduler: a timer is made due by rescheduling its run to now, which is what
happens when its time comes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Scheduled
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from deployments.cli import Runtime, app
from flows.cycles import meeting_cycle
from models.clock import FixedClock
from models.config import Settings
from models.tables import AuditEvent, OutboxMessage, Step

from .cycles_support import london
from .flows_harness import CycleDb
from .test_cycle_flows import runs_named

WAIT = 120.0  # an upper bound for the server to reach a state, never an expectation of speed
STEM = "meeting:wscb:2027-03-25"


class Served:
    """`python -m deployments.serve` as a child process we can stop and start again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve"], env=self.env, stdout=out, stderr=out
        )

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.process = None


async def make_due(name: str) -> FlowRun:
    """What the passing of time does to a timer: its scheduled time arrives."""
    [run] = await runs_named(name)
    async with get_client() as client:
        await client.set_flow_run_state(
            run.id, Scheduled(scheduled_time=datetime.now(UTC)), force=True
        )
    return run


async def until_completed(run: FlowRun) -> FlowRun:
    deadline = time.monotonic() + WAIT
    async with get_client() as client:
        while time.monotonic() < deadline:
            current = await client.read_flow_run(run.id)
            if current.state is not None and current.state.type is StateType.COMPLETED:
                return current
            if current.state is not None and current.state.is_final():
                raise AssertionError(f"{current.name} ended {current.state}")
            await asyncio.sleep(0.25)
    raise AssertionError(f"{run.name} did not complete")


def count(db: CycleDb, action: str) -> int:
    with Session(db.engine) as session:
        return session.exec(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        ).one()


def test_every_step_happens_once_across_a_restart(
    cycle_db: CycleDb, prefect_harness: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_harness,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "WCT_DATABASE_URL": cycle_db.url,
    }
    served = Served(env, tmp_path / "serve.log")
    asyncio.run(meeting_cycle(body="wscb", day=date(2027, 3, 25), as_of=london(2026, 11, 23, 9)))
    served.start()
    try:
        first = asyncio.run(make_due("wscb-2027-03-25-call_for_items"))
        asyncio.run(until_completed(first))
        served.stop()
        # Stopped in the middle of the cycle: the other timers are still there, waiting.
        waiting = asyncio.run(
            runs_named("wscb-2027-03-25-items_deadline", "wscb-2027-03-25-agenda")
        )
        assert [r.state.type for r in waiting if r.state] == [StateType.SCHEDULED] * 2
        late = [asyncio.run(make_due(r.name)) for r in waiting]  # due while nothing serves
        served.start()
        for run in late:
            asyncio.run(until_completed(run))
    finally:
        if served.process is not None:
            served.stop()
    with Session(cycle_db.engine) as session:
        done = session.exec(
            select(Step.key).where(Step.status == "done", col(Step.key).startswith(STEM))
        ).all()
        notices = session.exec(
            select(func.count())
            .select_from(OutboxMessage)
            .where(col(OutboxMessage.key).startswith(f"{STEM}:call-for-items"))
        ).one()
    assert sorted(done) == sorted(
        [f"{STEM}:call_for_items", f"{STEM}:items_deadline", f"{STEM}:agenda"]
    )
    assert count(cycle_db, "meeting.items_called") == 1
    assert count(cycle_db, "meeting.agenda_composed") == 1
    assert count(cycle_db, "meeting.agenda_published") == 1
    assert notices == 5  # the WSCB members of the test partnership, once each
    # Running the cycle again after the restart creates no second timer.
    asyncio.run(meeting_cycle(body="wscb", day=date(2027, 3, 25), as_of=london(2026, 11, 23, 9)))
    assert len(asyncio.run(runs_named("wscb-2027-03-25-reminder"))) == 1


def _runtime(db: CycleDb, home: Path) -> Runtime:
    return Runtime(
        settings=Settings(home=home, database_url=db.url),
        clock=FixedClock(london(2026, 11, 23, 9)),
    )


def test_up_registers_every_cycle_on_the_constitutions_schedule(
    cycle_db: CycleDb, prefect_harness: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    sweeps_before = len(asyncio.run(runs_named("catch-up-sweep")))
    result = CliRunner().invoke(
        app, ["up", "--register-only"], obj=_runtime(cycle_db, tmp_path / "home")
    )
    assert result.exit_code == 0, result.output
    assert f"Prefect UI: {prefect_harness.removesuffix('/api')}" in result.output

    async def check() -> None:
        async with get_client() as client:
            board = await client.read_deployment_by_name("meeting-cycle/board")
            review = await client.read_deployment_by_name("annual-review/mou-review")
            sweep = await client.read_deployment_by_name("sweep/sweep")
        assert board.schedules and "BYDAY=2TU" in str(board.schedules[0].schedule)
        assert board.parameters == {"body": "board"}
        assert review.schedules and "BYMONTH=2;BYMONTHDAY=14" in str(review.schedules[0].schedule)
        assert sweep.schedules and "900" in str(sweep.schedules[0].schedule)  # every 15 minutes
        caught = await runs_named("catch-up-sweep")
        assert len(caught) == sweeps_before + 1, "one catch-up run of the one sweep"

    asyncio.run(check())


def test_simulate_plays_the_calendar_and_summarises(
    cycle_db: CycleDb, prefect_harness: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    args = ["simulate", "--from", "2027-03-01", "--to", "2027-05-31", "--seed", "3", "--json"]
    result = CliRunner().invoke(
        app, [*args, "--home", str(tmp_path / "sim")], obj=_runtime(cycle_db, tmp_path / "home")
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    for key in (
        "meetings_held",
        "reports_requested",
        "reports_overdue",
        "reviews_completed",
        "messages_delivered",
        "flow_runs",
    ):
        assert isinstance(summary[key], int), key
    assert summary["meetings_held"] > 5 and summary["reports_requested"] == 6
    assert summary["messages_delivered"] > 0 and summary["flow_runs"] > 20
    mails = list((tmp_path / "sim" / "mail").rglob("*.eml"))
    assert len(mails) == summary["messages_delivered"]
    # The caller's own database was not touched by the simulation.
    assert count(cycle_db, "meeting.planned") == 0


def test_deploy_registers_every_cycle_on_a_work_pool(
    cycle_db: CycleDb, prefect_harness: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(cycle_db, tmp_path / "home")
    missing = CliRunner().invoke(app, ["deploy", "--pool", "wct-pool"], obj=runtime)
    assert missing.exit_code == 1 and "set PREFECT_API_URL" in missing.output
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    result = CliRunner().invoke(app, ["deploy", "--pool", "wct-pool"], obj=runtime)
    assert result.exit_code == 0, result.output
    assert "on work pool 'wct-pool' (created, type process)" in result.output

    async def check() -> None:
        async with get_client() as client:
            step = await client.read_deployment_by_name("step/step")
            board = await client.read_deployment_by_name("meeting-cycle/board")
        assert step.work_pool_name == "wct-pool" and board.work_pool_name == "wct-pool"
        assert step.entrypoint == "flows.steps.step"

    asyncio.run(check())
