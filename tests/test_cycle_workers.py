"""Beyond one machine: a Prefect server on PostgreSQL, the wct database on PostgreSQL, the cycles
registered on a work pool with `wct deploy`, and two Prefect workers polling it. Every step of a
meeting cycle runs exactly once, even when each step's timer is fired twice at the same moment."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from deployments.cli import Runtime, app
from flows.cycles import meeting_cycle
from models.clock import FixedClock, SystemClock
from models.commands import apply_constitution, current_constitution, import_members
from models.config import Settings, get_settings
from models.constitution import load_constitution
from models.db import make_engine, migrate
from models.members import parse_members
from models.tables import AuditEvent, Step
from models.uow import UnitOfWork

from .conftest import DATA, POSTGRES_URL
from .cycles_support import london

pytestmark = pytest.mark.postgres
WAIT = 240.0  # an upper bound for the servers to reach a state, never an expectation of speed
STEM = "meeting:executive:2027-04-21"
STEPS = ("call_for_items", "items_deadline", "agenda", "reminder", "minutes_due")


@dataclass
class Cluster:
    api_url: str
    wct_url: str
    workdir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture
def cluster(postgres_available: None, tmp_path: Path) -> Iterator[Cluster]:  # noqa: ARG001
    token = secrets.token_hex(4)
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    prefect_db, schema = f"prefect_wct_{token}", f"wct_workers_{token}"
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {prefect_db}"))
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql+psycopg", "postgresql+asyncpg")
    sep = "&" if "?" in POSTGRES_URL else "?"
    wct_url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(wct_url)
    migrate(engine)
    with UnitOfWork(engine, clock=SystemClock(), actor="test") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        rows = parse_members(
            (DATA / "cycles-members.csv").read_text(),
            current_constitution(uow.session),
            source="members",
        )
        import_members(uow, rows=rows)
        uow.commit()
    engine.dispose()
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"{base}/{prefect_db}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "WCT_DATABASE_URL": wct_url,
    }
    log = (tmp_path / "cluster.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + WAIT
        while not _healthy(api_url):
            assert server.poll() is None, "the Prefect server exited"
            assert time.monotonic() < deadline, "the Prefect server did not start"
            time.sleep(0.5)
        runtime = Runtime(
            settings=Settings(home=tmp_path / "home", database_url=wct_url),
            clock=FixedClock(london(2026, 11, 23, 9)),
        )
        saved = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = api_url
        try:
            deployed = CliRunner().invoke(app, ["deploy", "--pool", "wct-two"], obj=runtime)
        finally:
            if saved is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = saved
        assert deployed.exit_code == 0, deployed.output
        for _ in range(2):
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "prefect",
                        "worker",
                        "start",
                        "--pool",
                        "wct-two",
                        "--type",
                        "process",
                    ],
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            )
        yield Cluster(api_url, wct_url, tmp_path)
    finally:
        for worker in workers:
            _stop(worker)
        _stop(server)
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {prefect_db} WITH (FORCE)"))
            connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


async def _timers() -> list[FlowRun]:
    names = [f"executive-2027-04-21-{s}" for s in STEPS]
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=names)),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
        )


async def _fire_everything_twice() -> list[FlowRun]:
    """Each timer comes due, and a second run of the same step is started beside it."""
    timers = await _timers()
    assert len(timers) == len(STEPS)
    twins = []
    async with get_client() as client:
        for timer in timers:
            await client.set_flow_run_state(
                timer.id, Scheduled(scheduled_time=datetime.now(UTC)), force=True
            )
            twins.append(
                await arun_deployment(
                    "cycle-step/cycle-step",
                    parameters=dict(timer.parameters),
                    flow_run_name=f"{timer.name}-twin",
                    timeout=0,
                )
            )
    return [*timers, *twins]


async def _until_all_completed(runs: list[FlowRun]) -> list[FlowRun]:
    deadline = time.monotonic() + WAIT
    async with get_client() as client:
        while time.monotonic() < deadline:
            current = [await client.read_flow_run(r.id) for r in runs]
            states = [r.state.type if r.state else None for r in current]
            failed = [
                r.name
                for r in current
                if r.state and r.state.is_final() and not r.state.is_completed()
            ]
            assert not failed, f"runs ended badly: {failed}"
            if all(s is StateType.COMPLETED for s in states):
                return current
            await asyncio.sleep(1)
    raise AssertionError(f"not all runs completed: {states}")


def test_two_workers_run_every_step_exactly_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WCT_DATABASE_URL", cluster.wct_url)
    get_settings.cache_clear()
    try:
        with temporary_settings({PREFECT_API_URL: cluster.api_url}):
            asyncio.run(
                meeting_cycle(
                    body="executive", day=date(2027, 4, 21), as_of=london(2026, 11, 23, 9)
                )
            )
            runs = asyncio.run(_fire_everything_twice())
            done = asyncio.run(_until_all_completed(runs))
    finally:
        get_settings.cache_clear()
    assert len(done) == 2 * len(STEPS)
    engine = make_engine(cluster.wct_url)
    with Session(engine) as session:
        steps = session.exec(
            select(Step.key, Step.status).where(col(Step.key).startswith(STEM))
        ).all()
        actions = dict(
            session.exec(
                select(AuditEvent.action, func.count())
                .where(col(AuditEvent.subject).like("meeting:%"))
                .group_by(AuditEvent.action)
            ).all()
        )
    engine.dispose()
    assert sorted(steps) == sorted((f"{STEM}:{s}", "done") for s in STEPS)
    for action in (
        "meeting.items_called",
        "meeting.agenda_composed",
        "meeting.agenda_published",
        "meeting.reminded",
        "meeting.minutes_overdue",
    ):
        assert actions.get(action) == 1, (action, actions)
