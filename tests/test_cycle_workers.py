"""Beyond one machine, as the README's "Running it for a partnership" lays it out: a Prefect
server on PostgreSQL behind the one shared credential, the wct database on PostgreSQL, every
deployment registered on a process work pool with `wct deploy --pool`, and two Prefect workers
polling it. Every step of a meeting cycle acts exactly once, even when each step's timer is
fired twice at the same moment.

Time moves forward as it does in a partnership: the steps of a meeting come due one after the
other, in the order of their due times, and each is fired twice at once. Firing every step of
the meeting at the same moment would race the steps against each other as well as against
their twins, and what a step does rightly depends on the steps before it (no call for items
once the agenda is out; no reminder while the agenda is due and unsent), so the outcome would
depend on which worker's process happened to start first."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    WorkerFilter,
    WorkerFilterStatus,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from deployments.cli import Runtime, app
from deployments.server import healthy, stop
from flows.cycles import meeting_cycle
from flows.timers import STEP_DEPLOYMENT
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

pytestmark = [pytest.mark.postgres, pytest.mark.server]
# An upper bound for the cluster to reach each state (started, workers polling, one step's two
# runs finished), never an expectation of speed: a loaded CI machine is slow, not wrong.
WAIT = 240.0
POOL = "wct-two"
WORKERS = 2
STEM = "meeting:executive:2027-04-21"
RUN_STEM = "executive-2027-04-21"
STEPS = ("call_for_items", "items_deadline", "agenda", "reminder", "minutes_due")  # due order


@dataclass
class Cluster:
    api_url: str
    auth: str
    wct_url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`prefect worker start` in a process group of its own, which its flow runs share."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def _stop_worker(process: subprocess.Popen[bytes]) -> None:
    """End the worker and any flow run it started (such as a scheduled `dispatch`), which would
    outlive the databases the fixture drops; the test's runs have finished. Not SIGTERM: Prefect
    3.8.8's worker stops on SIGTERM by sending itself SIGINT, and a worker started from a shell's
    background job (as a CI script may start pytest) inherits SIGINT ignored and polls on."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


@contextmanager
def _prefect(cluster: Cluster) -> Iterator[None]:
    """This process talks to the cluster's server, with its credential."""
    with temporary_settings(
        {PREFECT_API_URL: cluster.api_url, PREFECT_API_AUTH_STRING: cluster.auth}
    ):
        yield


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
    auth = f"wct:{secrets.token_hex(8)}"
    # Each process gets what the README's "Running it for a partnership" tells it to set.
    server_env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-server"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"{base}/{prefect_db}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": api_url,
        "PREFECT_SERVER_API_AUTH_STRING": auth,
    }
    worker_env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-worker"),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_AUTH_STRING": auth,
        "WCT_DATABASE_URL": wct_url,
        "WCT_HOME": str(tmp_path / "home"),
        # Poll every second (default 10) so that a step's two runs start within the test's
        # patience; they still come from one poll, as two runs due at once do in production.
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    log = tmp_path / "cluster.log"  # the server's and both workers' output, kept on failure
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
            env=server_env,
            stdout=out,
            stderr=out,
        )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + WAIT
        while not healthy(api_url):
            assert server.poll() is None, f"the Prefect server exited; see {log}"
            assert time.monotonic() < deadline, f"the Prefect server did not start; see {log}"
            time.sleep(0.5)
        made = Cluster(api_url, auth, wct_url, log)
        runtime = Runtime(
            settings=Settings(home=tmp_path / "home", database_url=wct_url),
            clock=FixedClock(london(2026, 11, 23, 9)),
        )
        saved = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = api_url  # `wct deploy` asks for it
        try:
            with _prefect(made):
                deployed = CliRunner().invoke(app, ["deploy", "--pool", POOL], obj=runtime)
        finally:
            if saved is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = saved
        assert deployed.exit_code == 0, deployed.output
        workers.extend(_start_worker(worker_env, log) for _ in range(WORKERS))
        yield made
    finally:
        for worker in workers:
            _stop_worker(worker)
        stop(server)
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {prefect_db} WITH (FORCE)"))
            connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


async def _until_workers_poll(client: PrefectClient, log: Path) -> None:
    """Both workers have announced themselves to the pool: two pollers race for every run."""
    deadline = time.monotonic() + WAIT
    online = WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
    # offset and limit given: prefect 3.8.8's client sends null for them, which its server refuses.
    while (
        len(await client.read_workers_for_work_pool(POOL, worker_filter=online, offset=0, limit=10))
        < WORKERS
    ):
        assert time.monotonic() < deadline, f"the workers did not start polling; see {log}"
        await asyncio.sleep(0.5)


async def _timers(client: PrefectClient) -> list[FlowRun]:
    """The step timers the meeting cycle set, in due order."""
    return await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[f"{RUN_STEM}-{s}" for s in STEPS])
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=50,
    )


async def _fire_twice(client: PrefectClient, timer: FlowRun) -> list[FlowRun]:
    """The step's timer comes due, and a second run of the same step is started beside it."""
    due = datetime.now(UTC)
    await client.set_flow_run_state(timer.id, Scheduled(scheduled_time=due), force=True)
    twin = await arun_deployment(
        STEP_DEPLOYMENT,
        parameters=dict(timer.parameters),
        flow_run_name=f"{timer.name}-twin",
        scheduled_time=due,
        timeout=0,
    )
    return [timer, twin]


async def _until_completed(client: PrefectClient, runs: list[FlowRun], log: Path) -> list[FlowRun]:
    """Wait for the runs to complete; any other final state fails at once, naming it."""
    deadline = time.monotonic() + WAIT
    while True:
        current = [await client.read_flow_run(r.id) for r in runs]
        states = {r.name: r.state.name if r.state else None for r in current}
        ended_badly = [
            r.name for r in current if r.state and r.state.is_final() and not r.state.is_completed()
        ]
        assert not ended_badly, f"runs ended badly: {states}; see {log}"
        if all(r.state and r.state.type is StateType.COMPLETED for r in current):
            return current
        assert time.monotonic() < deadline, f"not all runs completed: {states}; see {log}"
        await asyncio.sleep(1)


async def _run_the_meeting(cluster: Cluster) -> list[FlowRun]:
    """Plan the meeting (its steps become timers), then let each step come due in turn and fire
    it twice at once."""
    await meeting_cycle(body="executive", day=date(2027, 4, 21), as_of=london(2026, 11, 23, 9))
    finished: list[FlowRun] = []
    async with get_client() as client:
        await _until_workers_poll(client, cluster.log)
        timers = await _timers(client)
        assert [t.name for t in timers] == [f"{RUN_STEM}-{s}" for s in STEPS]
        for timer in timers:
            finished += await _until_completed(
                client, await _fire_twice(client, timer), cluster.log
            )
    return finished


def test_two_workers_run_every_step_exactly_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WCT_DATABASE_URL", cluster.wct_url)
    get_settings.cache_clear()
    try:
        with _prefect(cluster):
            done = asyncio.run(_run_the_meeting(cluster))
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
