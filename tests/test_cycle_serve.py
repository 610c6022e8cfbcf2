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
import urllib.request
from collections import Counter
from datetime import UTC, date, datetime
from email import message_from_bytes
from email import policy as email_policy
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL
from prefect.states import Scheduled
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from deployments.cli import Runtime, app
from deployments.cli_cycles import run_simulation
from deployments.server import UNUSED_CA
from flows.cycles import meeting_cycle
from models.calendar import add_working_days
from models.clock import LONDON, FixedClock
from models.config import Settings
from models.constitution import load_constitution
from models.db import make_engine
from models.tables import (
    ApprovalRequest,
    AuditEvent,
    CallToAccount,
    Dispute,
    DisputeParty,
    DisputeStageRecord,
    OutboxMessage,
    Person,
    PersonRole,
    Step,
)

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
    sweeps_before = len(asyncio.run(runs_named("catch-up-sweep", timers=False)))
    result = CliRunner().invoke(
        app, ["up", "--register-only"], obj=_runtime(cycle_db, tmp_path / "home")
    )
    assert result.exit_code == 0, result.output
    assert f"Prefect UI: {prefect_harness.removesuffix('/api')}" in result.output
    assert f"Deployments: {prefect_harness.removesuffix('/api')}/deployments" in result.output

    async def check() -> None:
        async with get_client() as client:
            board = await client.read_deployment_by_name("meeting-cycle/board")
            review = await client.read_deployment_by_name("annual-review/mou-review")
            sweep = await client.read_deployment_by_name("sweep/sweep")
        assert board.schedules and "BYDAY=2TU" in str(board.schedules[0].schedule)
        assert board.parameters == {"body": "board"}
        assert review.schedules and "BYMONTH=2;BYMONTHDAY=14" in str(review.schedules[0].schedule)
        assert sweep.schedules and "900" in str(sweep.schedules[0].schedule)  # every 15 minutes
        caught = await runs_named("catch-up-sweep", timers=False)
        assert len(caught) == sweeps_before + 1, "one catch-up run of the one sweep"

    asyncio.run(check())


def test_simulate_plays_the_calendar_and_the_cases_and_summarises(
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

    # One round of cases, each story played to where three months take it.
    assert summary["cases"] == {
        "risk": {"opened": 3, "escalated": 2, "assessed": 2, "closed": 1},
        "dispute": {"opened": 1, "escalated": 2, "reached_adr": 1, "closed": 0},
        "call_to_account": {
            "opened": 1,
            "agreed": 1,
            "reminders": 3,
            "overdue": 1,
            "answered_late": 1,
            "accepted": 1,
        },
        "approval": {"requested": 2, "granted": 1, "refused": 1},
    }
    # A member's escalation and another body's chair deciding an approval: refused by the rules.
    assert summary["commands_refused"] >= 3
    # Each body's part of the totals: together they make the totals.
    for key in ("meetings_planned", "meetings_held", "reports_requested", "reports_submitted"):
        assert sum(b[key] for b in summary["bodies"].values()) == summary[key], key
    _case_mail_reached_its_recipients(tmp_path / "sim")


def test_simulate_without_a_server_makes_its_own_without_the_services_nobody_watches(
    cycle_db: CycleDb, prefect_harness: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wct simulate` given no PREFECT_API_URL (the README's first command) runs on a Prefect
    server of its own, which keeps no event, evaluates no trigger, records no task run and
    streams nothing (deployments.server.UNWATCHED), and still plays the calendar and delivers."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    (tmp_path / "sim").mkdir()
    seen: list[tuple[str, str, dict[str, Any]]] = []

    def progress(_when: datetime, _summary: object) -> None:
        if not seen:  # the simulation's server, as Prefect's settings name it within
            url = str(PREFECT_API_URL.value())
            bundle = str(PREFECT_API_SSL_CERT_FILE.value())
            with urllib.request.urlopen(f"{url}/admin/settings", timeout=30) as response:
                seen.append((url, bundle, json.loads(response.read())))

    summary = run_simulation(
        load_constitution(),
        date(2027, 3, 1),
        date(2027, 3, 10),
        3,
        tmp_path / "sim",
        progress=progress,
    )
    assert summary["flow_runs"] > 5 and summary["messages_delivered"] > 0
    url, bundle, settings = seen[0]
    assert url != prefect_harness  # a server of its own, not the session's
    assert bundle == str(UNUSED_CA)  # plain http on this machine: no CA bundle loaded for it
    server = settings["server"]
    assert [
        server["services"]["event_persister"]["enabled"],
        server["services"]["triggers"]["enabled"],
        server["services"]["task_run_recorder"]["enabled"],
        server["events"]["stream_out_enabled"],
        server["logs"]["stream_out_enabled"],
        server["analytics_enabled"],
    ] == [False] * 6
    mails = list((tmp_path / "sim" / "mail").rglob("*.eml"))
    assert len(mails) == summary["messages_delivered"]
    assert count(cycle_db, "meeting.planned") == 0  # the caller's database was not touched


def test_two_simulations_of_the_same_period_on_one_server_count_their_own_runs(
    cycle_db: CycleDb, prefect_harness: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wct simulate` against `wct up`'s server, twice with the same seed: each summary counts
    its own flow runs (the first used to be counted again in the second), under its own tag."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    args = ["simulate", "--from", "2027-03-01", "--to", "2027-03-12", "--seed", "5", "--json"]
    summaries = []
    for n in (1, 2):
        result = CliRunner().invoke(
            app,
            [*args, "--home", str(tmp_path / f"sim{n}")],
            obj=_runtime(cycle_db, tmp_path / "home"),
        )
        assert result.exit_code == 0, result.output
        summaries.append(json.loads(result.output))
    first, second = summaries
    assert first["flow_runs"] > 0
    assert second["flow_runs"] == first["flow_runs"]
    assert first["prefect_tag"] != second["prefect_tag"]
    assert all(s["prefect_tag"].startswith("wct-simulation-5-20270301-") for s in summaries)

    async def tagged(tag: str) -> int:
        async with get_client() as client:
            return await client.count_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
            )

    assert [asyncio.run(tagged(s["prefect_tag"])) for s in summaries] == [first["flow_runs"]] * 2


def _case_mail_reached_its_recipients(home: Path) -> None:
    """Count the mail in the folder per recipient, per case and per day delivered, against who
    the constitution says is told of each step."""
    mail: Counter[tuple[str, str, date]] = Counter()
    for path in (home / "mail").glob("*.eml"):
        parsed = message_from_bytes(path.read_bytes(), policy=email_policy.default)
        sent = parsedate_to_datetime(str(parsed["Date"])).astimezone(LONDON).date()
        mail[(str(parsed["X-WCT-Key"]), str(parsed["To"].addresses[0].addr_spec), sent)] += 1

    def got(subject: str, who: str, day: date) -> int:
        return sum(
            n
            for (key, to, sent), n in mail.items()
            if key.startswith(f"{subject}:") and (to, sent) == (who, day)
        )

    c = load_constitution()
    engine = make_engine(f"sqlite:///{home / 'wct.db'}")
    with Session(engine) as session:
        people = session.exec(select(Person)).all()
        holds = session.exec(select(PersonRole.person_id, PersonRole.role_id)).all()

        def holding(role: str) -> list[str]:
            ids = {person for person, held in holds if held == role}
            return [p.email for p in people if p.id in ids]

        board_seats = {seat.role for seat in c.body("board").members}

        def voices(org: str) -> list[str]:
            """An organisation's people with a seat on the Board: its voice in a case."""
            seated = [holding(role) for role in sorted(board_seats)]
            found = [p.email for p in people if p.organisation_id == org]
            return [e for e in found if any(e in group for group in seated)]

        chairs = {body.id: holding(body.chair) for body in c.bodies}
        coordinator = holding("governance-coordinator")
        call = session.exec(select(CallToAccount)).one()
        dispute = session.exec(select(Dispute)).one()
        parties = session.exec(
            select(DisputeParty.organisation_id).where(DisputeParty.dispute_id == dispute.id)
        ).all()
        adr = session.exec(
            select(DisputeStageRecord).where(
                DisputeStageRecord.dispute_id == dispute.id, DisputeStageRecord.stage == "adr"
            )
        ).one()
        escalated = session.exec(
            select(AuditEvent.subject, AuditEvent.at).where(AuditEvent.action == "risk.escalated")
        ).all()
        requests = session.exec(select(ApprovalRequest)).all()
    engine.dispose()

    # 11.5.1: the partner's people get each of the three reminders on its day; at the deadline
    # the chairs of the Board and of the WSCB each get the escalation, once.
    deadline = call.agreed_deadline
    assert deadline is not None
    subject = f"account:{call.id}"
    assert voices(call.organisation_id) and chairs["board"] and chairs["wscb"]
    for who in voices(call.organisation_id):
        for days in (10, 5, 1):
            assert got(subject, who, add_working_days(deadline, -days)) == 1, (who, days)
    for who in chairs["board"] + chairs["wscb"]:
        assert got(subject, who, deadline) == 1, who
    # 18.2: each party's voices are told when the dispute opens and when it reaches ADR, and
    # so is the coordinator, who records the ADR result.
    subject = f"dispute:{dispute.id}"
    assert len(parties) == 2 and dispute.opened_at is not None and coordinator
    for org in parties:
        assert voices(org), org
        for who in voices(org):
            assert got(subject, who, dispute.opened_at.date()) == 1, who
            assert got(subject, who, adr.opened_at.date()) == 1, who
    for who in coordinator:
        assert got(subject, who, adr.opened_at.date()) == 1, who
    # 16.1: the Board's chair is told of each escalated risk, once, the day it is escalated.
    assert len(escalated) == 2
    for risk, at in escalated:
        for who in chairs["board"]:
            assert got(risk, who, at.astimezone(LONDON).date()) == 1, (risk, who)
    # 11.3.5 / 21.1.1: the approving body's chair is asked; the proposing body's chair is told.
    assert len(requests) == 2
    for request in requests:
        assert request.decided_at is not None
        assert chairs[request.approver_body_id] and chairs[request.from_body_id]
        subject = f"approval:{request.id}"
        for who in chairs[request.approver_body_id]:
            assert got(subject, who, request.requested_at.date()) == 1, (subject, who)
        for who in chairs[request.from_body_id]:
            assert got(subject, who, request.decided_at.date()) == 1, (subject, who)


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
