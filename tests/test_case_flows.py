"""Cases as Prefect flow runs on a real Prefect server, served by a real `serve()` process that
the tests stop and start again: forms answered, refused, timers firing once, restarts survived."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from sqlmodel import Session, select
from typer.testing import CliRunner

from deployments.cli import Runtime, app
from flows.cases import CaseSummary, RaiseRisk, risk_case
from flows.steps import step
from models.clock import LONDON, SystemClock
from models.commands import apply_constitution, current_constitution, import_members
from models.config import Settings
from models.constitution import load_constitution
from models.db import make_engine, migrate
from models.members import parse_members
from models.steps import pending_steps
from models.tables import ApprovalRequest, AuditEvent, CallToAccount, Dispute, Person, Risk
from models.uow import UnitOfWork

from .conftest import DATA
from .cycles_support import recipients
from .flows_harness import CycleDb

WAIT = 90.0  # an upper bound for the server to reach a state, never an expectation of speed


@dataclass
class CaseServer:
    """A Prefect server (the harness), a wct database, and a serving process we can restart."""

    api_url: str
    database_url: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    async def start(self) -> None:
        log = (self.workdir / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cases"], env=self.env, stdout=log, stderr=log
        )
        await _until_deployments_exist(self)

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.process = None


async def _until_deployments_exist(server: CaseServer) -> None:
    deadline = time.monotonic() + WAIT
    async with get_client() as client:
        while time.monotonic() < deadline:
            if server.process is not None and server.process.poll() is not None:
                log = (server.workdir / "serve.log").read_text()[-2000:]
                raise AssertionError(f"the serving process exited:\n{log}")
            try:
                await client.read_deployment_by_name("step/step")
                await client.read_deployment_by_name("dispute/dispute")
                return
            except Exception:  # not registered yet
                await asyncio.sleep(0.25)
    raise AssertionError("the serving process did not register its deployments")


@pytest.fixture(scope="module")
def case_server(
    prefect_harness: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CaseServer]:
    workdir = tmp_path_factory.mktemp("case-server")
    database_url = f"sqlite:///{workdir / 'wct.db'}"
    engine = make_engine(database_url)
    migrate(engine)
    with UnitOfWork(engine, clock=SystemClock(), actor="test") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        text = (DATA / "cases-members.csv").read_text()
        rows = parse_members(text, current_constitution(uow.session), source="members")
        import_members(uow, rows=rows)
        uow.commit()
    engine.dispose()
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_harness,  # the session's one harness
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # pick resumed runs up promptly
        "WCT_DATABASE_URL": database_url,
        "WCT_HOME": str(workdir),
    }
    server = CaseServer(prefect_harness, database_url, workdir, env=env)
    asyncio.run(server.start())
    try:
        yield server
    finally:
        if server.process is not None:
            server.stop()


async def _state(run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(run_id)


async def until(run_id: UUID, kinds: set[StateType], *, key_part: str = "") -> FlowRun:
    """Poll the server until the run is in one of `kinds` (and waits on a key with `key_part`)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        run = await _state(run_id)
        state = run.state
        if state is not None and state.type in kinds:
            key = state.state_details.pause_key or ""
            if key_part in key:
                return run
        await asyncio.sleep(0.2)
    run = await _state(run_id)
    raise AssertionError(f"run {run.name} is {run.state}; wanted {kinds} {key_part!r}")


async def answer(run_id: UUID, **fields: Any) -> None:
    async with get_client() as client:
        result = await client.resume_flow_run(run_id, run_input=fields)
    assert result.status.value == "ACCEPT", result


def db(server: CaseServer) -> Session:
    return Session(make_engine(server.database_url))


def actions(server: CaseServer, subject: str) -> list[str]:
    with db(server) as session:
        rows = session.exec(select(AuditEvent.action).where(AuditEvent.subject == subject))
        return list(rows.all())


async def timer_runs(name: str) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=10,
        )


async def fire_timer(key: str, as_of: datetime) -> None:
    """What the scheduler would do when the timer comes due (the harness has no scheduler)."""
    run = await arun_deployment(
        "step/step", parameters={"key": key, "as_of": as_of.isoformat()}, timeout=WAIT
    )
    assert run.state is not None and run.state.is_completed(), run.state


def test_dispute_answered_refused_timed_out_and_resumed_across_a_restart(
    case_server: CaseServer,
) -> None:
    asyncio.run(_dispute_story(case_server))


async def _dispute_story(server: CaseServer) -> None:
    started = await arun_deployment(
        "dispute/dispute",
        parameters={
            "request": {
                "title": "Front door information sharing",
                "parties": ["merseyside-police", "nhs-wirral"],
                "opened_by": "pat@police.example",
            }
        },
        timeout=0,
    )
    run = await until(started.id, {StateType.PAUSED}, key_part="-a0")
    with db(server) as session:
        dispute = session.exec(select(Dispute)).one()
    subject = f"dispute:{dispute.id}"
    assert run.name == f"dispute-{dispute.id}" and subject in run.tags
    assert dispute.stage == "informal"
    # The deadline is a timer the coordinator can see: one scheduled run, named for the step.
    timer_name = f"dispute-{dispute.id}-informal-deadline"
    [timer] = await timer_runs(timer_name)
    assert timer.state is not None and timer.state.type is StateType.SCHEDULED
    assert dispute.stage_deadline is not None
    assert timer.expected_start_time is not None
    assert timer.expected_start_time.date() == dispute.stage_deadline

    # Someone not allowed answers: refused, nothing changes, the run waits again.
    await answer(started.id, your_email="coord@council.example", decision="resolved", note="x")
    await until(started.id, {StateType.PAUSED}, key_part="-a1")
    assert actions(server, subject) == ["dispute.opened"]

    # A party answers: not resolved, so it goes to the Chief Executives.
    await answer(started.id, your_email="nina@nhs.example", decision="unresolved", note="No")
    await until(started.id, {StateType.PAUSED}, key_part="-r2-a0")
    assert actions(server, subject) == ["dispute.opened", "dispute.escalated"]

    # The serving process stops and starts again.
    server.stop()
    await server.start()

    # The Chief Executives' deadline passes with no outcome: the timer fires (twice, as a
    # retried or duplicated timer would): one escalation to ADR, and the case run moves on.
    key = f"{subject}:chief_executives:deadline"
    late = datetime.now(LONDON) + timedelta(days=120)
    await fire_timer(key, late)
    await fire_timer(key, late)
    await until(started.id, {StateType.PAUSED}, key_part="-r3-a0")
    assert actions(server, subject).count("dispute.escalated") == 2

    # ADR: the coordinator records provider and result; the case run completes.
    await answer(
        started.id,
        your_email="coord@council.example",
        provider="CEDR",
        decision="resolved",
        note="Mediated",
    )
    done = await until(started.id, {StateType.COMPLETED})
    assert done.state is not None
    with db(server) as session:
        closed = session.get(Dispute, dispute.id)
        assert closed is not None and closed.outcome == "resolved_adr"


def test_call_to_account_by_form_overdue_by_the_sweep_closed_from_the_cli(
    case_server: CaseServer,
) -> None:
    asyncio.run(_account_story(case_server))


async def _account_story(server: CaseServer) -> None:
    proposed = date.today() + timedelta(days=28)
    started = await arun_deployment(
        "call-to-account/call-to-account",
        parameters={
            "request": {
                "organisation": "merseyside-police",
                "evidence": "Section 11 audit: strategy meetings missed",
                "proposed_deadline": proposed.isoformat(),
                "opened_by": "chair@wscb.example",
            }
        },
        timeout=0,
    )
    await until(started.id, {StateType.PAUSED}, key_part="-a0")
    with db(server) as session:
        case = session.exec(select(CallToAccount)).one()
    subject = f"account:{case.id}"
    # The partner agrees from the UI form; the same answer sent twice is applied once.
    await answer(started.id, your_email="pat@police.example", decision="accept")
    await until(started.id, {StateType.PAUSED}, key_part="-r2-a0")
    assert actions(server, subject) == ["account.opened", "account.deadline_agreed"]

    # Nobody responds; the serving process restarts; the sweep (what runs every 15 minutes)
    # finds the passed deadline, escalates once, and wakes the case run.
    server.stop()
    await server.start()
    late = datetime.now(LONDON) + timedelta(days=90)
    for _ in range(2):
        sweep = await arun_deployment(
            "sweep/sweep",
            parameters={"as_of": late.isoformat()},
            timeout=WAIT,
        )
        assert sweep.state is not None and sweep.state.is_completed(), sweep.state
    assert actions(server, subject).count("account.overdue") == 1
    await until(started.id, {StateType.PAUSED}, key_part=f"-r{3}-a0")

    # The partner responds from the form; the WSCB accepts from the CLI instead of the form; the
    # sweep sees the run waiting on a stale revision, wakes it, and it completes.
    await answer(started.id, your_email="chief@police.example", response="Action plan")
    await until(started.id, {StateType.PAUSED}, key_part="-r4-a0")
    # The coordinator's view: the sweep gives the waiting run a state message saying whom it
    # waits on and until when, and the run still waits on the same key and resumes after it.
    await arun_deployment("sweep/sweep", timeout=WAIT)
    waiting = await until(started.id, {StateType.PAUSED}, key_part="-r4-a0")
    assert waiting.state is not None
    assert waiting.state.message == (
        f"Waiting on the Safeguarding Board's chair until {proposed.day} {proposed:%B %Y}"
    )
    runtime = Runtime(settings=Settings(database_url=server.database_url, home=server.workdir))
    accepted = CliRunner().invoke(
        app,
        ["account", "accept", str(case.id), "--note", "Fine", "--as", "chair@wscb.example"],
        obj=runtime,
    )
    assert accepted.exit_code == 0, accepted.output
    await arun_deployment("sweep/sweep", timeout=WAIT)
    await until(started.id, {StateType.COMPLETED})
    assert actions(server, subject)[-1] == "account.closed"
    names = await event_names(f"wct.account.{case.id}", until_seen="wct.account.closed")
    assert {"wct.account.opened", "wct.account.overdue", "wct.account.closed"} <= names


async def event_names(resource_id: str, *, until_seen: str) -> set[str]:
    """The Prefect events emitted for a case (signals for the UI feed and automations); the
    server ingests events asynchronously, so poll (bounded) until `until_seen` is there."""
    deadline = time.monotonic() + WAIT
    names: set[str] = set()
    async with get_client() as client:
        while time.monotonic() < deadline and until_seen not in names:
            response = await client.request(
                "POST",
                "/events/filter",
                json={"filter": {"resource": {"id": [resource_id]}}, "limit": 50},
            )
            names = {e["event"] for e in response.json()["events"]}
            if until_seen not in names:
                await asyncio.sleep(0.2)
    return names


def test_a_case_opened_from_the_cli_becomes_a_visible_run(case_server: CaseServer) -> None:
    asyncio.run(_cli_story(case_server))


async def _cli_story(server: CaseServer) -> None:
    began = datetime.now(UTC)
    runtime = Runtime(settings=Settings(database_url=server.database_url, home=server.workdir))
    raised = CliRunner().invoke(
        app,
        [
            "risk",
            "raise",
            "--title",
            "Agency staff turnover",
            "--owner",
            "sally@council.example",
            "--likelihood",
            "4",
            "--impact",
            "4",
            "--as",
            "dcs@council.example",
            "--json",
        ],  # fmt: skip
        obj=runtime,
    )
    assert raised.exit_code == 0, raised.output
    risk_id = json.loads(raised.stdout)["risk_id"]
    subject = f"risk:{risk_id}"
    for _ in range(2):  # the sweep twice: still one follower
        await arun_deployment("sweep/sweep", timeout=WAIT)
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[subject])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=10,
        )
    # The shared harness also holds other modules' cases tagged risk:1: this test's are newer.
    ours = [r for r in runs if r.created is not None and r.created >= began]
    [follower] = [r for r in ours if r.name.startswith("follow") or r.name == f"risk-{risk_id}"]
    run = await until(follower.id, {StateType.PAUSED}, key_part="-a0")
    assert run.name == f"risk-{risk_id}"
    # The Board assesses it from the form; the case closes and the run completes.
    await answer(follower.id, your_email="lead@council.example", assessment="Accepted")
    await until(follower.id, {StateType.COMPLETED})
    assert actions(server, subject)[-1] == "risk.assessed"


def test_same_trigger_twice_is_one_case_and_one_waiting_run(case_server: CaseServer) -> None:
    asyncio.run(_twice_story(case_server))


async def _twice_story(server: CaseServer) -> None:
    request = {
        "request": {
            "gate": "safeguarding-commissioning",
            "title": "Parenting support contract",
            "requested_by": "jack@council.example",
        }
    }
    first = await arun_deployment("approval/approval", parameters=request, timeout=0)
    await until(first.id, {StateType.PAUSED}, key_part="-a0")
    second = await arun_deployment("approval/approval", parameters=request, timeout=0)
    done = await until(second.id, {StateType.COMPLETED})
    assert done.name == (await _state(first.id)).name  # both name the one case
    with db(server) as session:
        [request_row] = session.exec(select(ApprovalRequest)).all()
    subject = f"approval:{request_row.id}"
    # The Board's chair may not decide for the WSCB: refused, and the run waits again.
    await answer(first.id, your_email="lead@council.example", decision="approve", note="x")
    await until(first.id, {StateType.PAUSED}, key_part="-a1")
    await answer(first.id, your_email="chair@wscb.example", decision="approve", note="Agreed")
    await until(first.id, {StateType.COMPLETED})
    assert actions(server, subject) == ["approval.requested", "approval.decided"]


def test_a_bad_opening_form_fails_the_run_with_a_clear_reason_and_changes_nothing(
    case_server: CaseServer,
) -> None:
    asyncio.run(_bad_form_story(case_server))


async def _bad_form_story(server: CaseServer) -> None:
    with db(server) as session:
        before = len(session.exec(select(AuditEvent)).all())
    started = await arun_deployment(
        "dispute/dispute",
        parameters={
            "request": {
                "title": "Bad parties",
                "parties": ["merseyside-police", "atlantis"],
                "opened_by": "pat@police.example",
            }
        },
        timeout=0,
    )
    failed = await until(started.id, {StateType.FAILED})
    assert failed.state is not None and "unknown organisation(s): atlantis" in (
        failed.state.message or ""
    )
    with db(server) as session:
        assert len(session.exec(select(AuditEvent)).all()) == before


def test_a_case_opened_as_of_a_moment_is_stamped_then_and_its_timers_are_set_from_it(
    cycle_db: CycleDb,
) -> None:
    """The injected clock, as the cycles have it: a risk raised `as_of` a moment (and not
    followed, as the simulation opens it) is raised then, its review falls due counted from that
    day, and its timer is a scheduled run of `step` at that time that acts by its own due time.
    (A risk: its review step is keyed by its date, so this database's timer cannot meet an
    earlier test's in the session's one Prefect server.)"""
    raised_at = datetime(2027, 6, 16, 10, 30, tzinfo=LONDON)
    request = RaiseRisk(
        title="Placement sufficiency",
        owner="sally@council.example",
        likelihood=2,
        impact=3,
        raised_by="hana@nhs.example",
    )

    async def raise_it() -> State[CaseSummary]:
        return await risk_case(request=request, as_of=raised_at, follow=False, return_state=True)

    state = asyncio.run(raise_it())
    assert state.is_completed()  # opened, not waiting on anyone
    summary = state.result()
    assert isinstance(summary, CaseSummary)
    assert summary.kind == "risk" and summary.stage == "managed" and not summary.closed
    subject = f"risk:{summary.case_id}"
    with Session(cycle_db.engine) as session:
        risk = session.get(Risk, summary.case_id)
        assert risk is not None
        [raising] = session.exec(select(AuditEvent).where(AuditEvent.subject == subject)).all()
        [review] = pending_steps(session, subject)
        hana = session.exec(select(Person).where(Person.email == "hana@nhs.example")).one()
    assert risk.raised_at == raised_at and raising.at == raised_at
    assert raising.action == "risk.raised" and raising.actor == hana.pseudonym
    due_day = raised_at.date() + timedelta(days=60)  # Wirral: reviewed every 60 days
    assert risk.review_due_on == due_day
    assert review.due_at == datetime(due_day.year, due_day.month, due_day.day, 17, tzinfo=LONDON)

    [timer] = asyncio.run(timer_runs(review.run_name))
    assert timer.state is not None and timer.state.type is StateType.SCHEDULED
    assert timer.expected_start_time == review.due_at
    assert timer.parameters == {"key": review.key, "as_of": review.due_at.isoformat()}
    assert state.state_details.flow_run_id is not None
    run = asyncio.run(_state(state.state_details.flow_run_id))
    assert run.name == f"risk-{summary.case_id}" and subject in run.tags  # named for the case

    # Nobody reviews it: the timer fires at its time (the harness has no scheduler, so run it as
    # the scheduler would) and chases the owner and the Executive's chair, once each.
    assert asyncio.run(step(key=review.key, as_of=review.due_at)) == "acted"
    told = recipients(cycle_db.engine, "risk_review_overdue", f"{subject}:")
    assert told == ["dcs@council.example", "sally@council.example"]
    with Session(cycle_db.engine) as session:
        chased = session.exec(
            select(AuditEvent).where(
                AuditEvent.subject == subject, AuditEvent.action == "risk.review_chased"
            )
        ).one()
    assert chased.at == review.due_at
