"""`wct up` as a user runs it: a real `prefect server start` (not the test harness), Prefect's own
scheduler creating runs, the runs served under the run limit, mail arriving in the mail folder with
nobody running `wct dispatch`, a timer set seconds ahead firing, and `wct status` telling the truth.

One `wct up` process for the whole module (it takes a minute to start and catch up). The partnership
is Wirral's constitution edited as data: only the Safeguarding Board meets, every day, with short
offsets, so that on any date a meeting two working days ahead already has its call for items and its
items deadline behind it when `wct up` starts (the stale-call case of a first start).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled
from sqlmodel import Session, col, select

from deployments.server import healthy
from models.calendar import add_working_days
from models.clock import LONDON
from models.constitution import default_constitution_path
from models.db import make_engine
from models.tables import AuditEvent, Step

from .conftest import DATA

pytestmark = pytest.mark.server
WCT = str(Path(sys.executable).with_name("wct"))  # the console script, as a user runs it
WAIT = 360.0  # an upper bound for something to happen at all, never an expectation of speed
WSCB = sorted(
    [
        "chair@wscb.example",
        "dcs@council.example",
        "lead@council.example",
        "nina@nhs.example",
        "pat@police.example",
    ]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daily_safeguarding_board(target: Path) -> None:
    """Wirral's constitution with only the WSCB meeting, daily; no reviews or reports."""
    data = yaml.safe_load(default_constitution_path().read_text(encoding="utf-8"))
    for body in data["bodies"]:
        if body["id"] == "wscb":
            body["cadence"] = {"rrule": "FREQ=DAILY", "first": "2026-01-01T16:00:00"}
        else:
            body.pop("cadence", None)
    data["reminders"].update(call_for_items=5, items_deadline=4, agenda=3, meeting_reminder=1)
    data["reviews"], data["quarterly_reports"] = [], []
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


class Rss:
    """Samples the resident memory of a process and all its descendants, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> int:
        total = 0
        for pid in [self.pid, *_descendants(self.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # gone meanwhile
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            total += int(fields.get("VmRSS", "0 kB").split()[0])
        return total // 1024

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append(self._tree())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Up:
    home: Path
    api_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    meeting: date
    started: float
    rss: Rss
    console: Path
    notes: dict[str, Any] = field(default_factory=dict)

    def wct(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WCT, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def mail(self) -> list[EmailMessage]:
        found = []
        for path in sorted((self.home / "mail").glob("*.eml")):
            parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found

    def audit(self, action: str) -> list[AuditEvent]:
        engine = make_engine(f"sqlite:///{self.home / 'wct.db'}")
        try:
            with Session(engine) as session:
                return list(
                    session.exec(select(AuditEvent).where(AuditEvent.action == action)).all()
                )
        finally:
            engine.dispose()


def user_env(root: Path) -> dict[str, str]:
    """The environment of a user with a wct home and a Prefect home of their own under `root`
    (`home`, `prefect`), and nothing of this session's Prefect or wct settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "WCT_"))}
    return env | {
        "WCT_HOME": str(root / "home"),
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [WCT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("up")
    home = root / "home"
    constitution = root / "daily-wscb.yaml"
    daily_safeguarding_board(constitution)
    env = user_env(root)
    _cli(env, "init", "--constitution", str(constitution))
    _cli(env, "members", "import", str(DATA / "cycles-members.csv"))
    today = datetime.now(LONDON).date()
    meeting = add_working_days(today, 2)
    _cli(env, "meeting", "plan", "wscb", meeting.isoformat())
    port = free_port()
    console = root / "up-console.log"
    out = console.open("ab")
    process = subprocess.Popen(
        [WCT, "up", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=out,
    )
    rss = Rss(process.pid)
    started = time.monotonic()
    try:
        yield Up(home, f"http://127.0.0.1:{port}/api", env, process, meeting, started, rss, console)
    finally:
        rss.stop()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        out.close()


def until(what: str, check: Any, up: Up) -> Any:
    """Poll `check()` until it returns something truthy; fail after WAIT with the console log."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert up.process.poll() is None, "wct up exited:\n" + up.console.read_text()[-4000:]
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(
        f"{what}: not within {WAIT:.0f} s ({up.notes})\n" + up.console.read_text()[-4000:]
    )


async def _dispatch_runs(api_url: str) -> list[FlowRun]:
    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            try:
                dispatch = await client.read_deployment_by_name("dispatch/dispatch")
            except Exception:
                return []
            return await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[dispatch.id])
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
            )


def _completed_auto_scheduled(up: Up) -> list[FlowRun]:
    runs = asyncio.run(_dispatch_runs(up.api_url))
    return [r for r in runs if r.auto_scheduled and r.state and r.state.is_completed()]


def per_recipient(mail: list[EmailMessage], subject_part: str) -> Counter[str]:
    return Counter(
        str(m["To"]).split("<")[-1].rstrip(">") for m in mail if subject_part in str(m["Subject"])
    )


def test_the_scheduler_runs_dispatch_and_mail_arrives_without_anyone(up: Up) -> None:
    _completed_auto_scheduled_runs = until(
        "an auto-scheduled dispatch run that completed", lambda: _completed_auto_scheduled(up), up
    )
    up.notes["dispatch_completed_after_s"] = round(time.monotonic() - up.started)
    assert _completed_auto_scheduled_runs
    day = f"{up.meeting:%A} {up.meeting.day} {up.meeting:%B %Y}"
    until(
        "the meeting notice in every WSCB member's mail",
        lambda: (
            len(per_recipient(up.mail(), f"Wirral Safeguarding Children Board meeting, {day}"))
            == len(WSCB)
        ),
        up,
    )
    mail = up.mail()
    notices = per_recipient(mail, f"Wirral Safeguarding Children Board meeting, {day}")
    assert sorted(notices) == WSCB and set(notices.values()) == {1}
    late = [
        m
        for m in mail
        if f"meeting, {day}" in str(m["Subject"])
        and "sent late" in m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    ]
    assert len(late) == len(WSCB), "the late notice says it is late"
    # A first start after the items deadline: no stale call for items to anyone ...
    assert per_recipient(mail, "Agenda items for") == Counter()
    # ... and the skip is in the audit trail, with its reason.
    skipped = [json.loads(e.after) for e in up.audit("step.skipped") if "call_for_items" in e.after]
    keys = {s["step"] for s in skipped}
    assert f"meeting:wscb:{up.meeting.isoformat()}:call_for_items" in keys


def _move_step(up: Up, when: datetime, key: str | None = None) -> str:
    """Give step `key` (by default the last step still to come of the planted meeting) the due
    time `when`, as the passing of time would bring it near; returns its key."""
    engine = make_engine(f"sqlite:///{up.home / 'wct.db'}")
    try:
        with Session(engine) as session:
            planted = f"meeting:wscb:{up.meeting.isoformat()}:"
            step = session.exec(
                select(Step)
                .where(
                    Step.key == key
                    if key is not None
                    else col(Step.key).startswith(planted) & (Step.status == "pending")
                )
                .order_by(col(Step.due_at).desc())
            ).first()
            assert step is not None, f"no step {key or 'of the planted meeting still to come'}"
            assert step.status == "pending", step
            step.due_at = when
            session.add(step)
            session.commit()
            return step.key
    finally:
        engine.dispose()


async def _run_state(up: Up, run: FlowRun) -> StateType | None:
    with temporary_settings({PREFECT_API_URL: up.api_url}):
        async with get_client() as client:
            current = await client.read_flow_run(run.id)
    return current.state.type if current.state else None


def test_a_timer_set_seconds_ahead_fires(up: Up) -> None:
    """The reminder of the planted meeting is due tomorrow at 09:00; move its time (the step and
    its timer run, as the passing of time would) to a few seconds from now: it fires by itself,
    and the next scheduled dispatch delivers one reminder to each member."""
    key = f"meeting:wscb:{up.meeting.isoformat()}:reminder"
    name = f"wscb-{up.meeting.isoformat()}-reminder"
    soon = datetime.now(UTC) + timedelta(seconds=5)
    _move_step(up, soon, key)

    async def reschedule() -> FlowRun:
        with temporary_settings({PREFECT_API_URL: up.api_url}):
            async with get_client() as client:
                [run] = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
                    sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                    limit=5,
                )
                await client.set_flow_run_state(run.id, Scheduled(scheduled_time=soon), force=True)
                return run

    timer = asyncio.run(reschedule())

    def step_state() -> str:
        engine = make_engine(f"sqlite:///{up.home / 'wct.db'}")
        try:
            with Session(engine) as session:
                return session.exec(select(Step.status).where(Step.key == key)).one()
        finally:
            engine.dispose()

    def completed() -> bool:
        seen = asyncio.run(_run_state(up, timer))
        up.notes["timer"] = f"timer run {seen}, step {step_state()}"
        return seen is StateType.COMPLETED

    until("the timer run completed", completed, up)
    assert step_state() == "done", up.notes["timer"]
    subject = "Reminder: Wirral Safeguarding Children Board meeting"
    until("the reminder delivered", lambda: len(per_recipient(up.mail(), subject)) == len(WSCB), up)
    assert set(per_recipient(up.mail(), subject).values()) == {1}


def test_status_reports_a_working_scheduler_and_memory_stays_bounded(up: Up) -> None:
    done = up.wct("status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    runtime = json.loads(done.stdout)["runtime"]
    assert runtime["server"]["answers"] is True
    assert runtime["server"]["log"] and Path(runtime["server"]["log"]).is_file()
    assert runtime["scheduler"]["ok"] is True
    assert runtime["scheduler"]["last_runs_created_at"] is not None
    assert runtime["dispatch"]["last_completed_at"] is not None
    assert runtime["findings"] == []
    # The UI is pointed at this server's API, not at the default port.
    with urllib.request.urlopen(up.api_url.removesuffix("/api") + "/ui-settings") as answer:  # noqa: S310
        assert json.loads(answer.read())["api_url"] == up.api_url
    text = up.wct("status")
    assert "scheduler: creating runs" in text.stdout
    peak = max(up.rss.samples)
    print(f"wct up RSS (server and runs): peak {peak} MB, now {up.rss.samples[-1]} MB")  # noqa: T201
    after = up.notes.get("dispatch_completed_after_s")
    print(f"first auto-scheduled dispatch completed {after} s after start")  # noqa: T201


def test_a_stop_with_a_run_in_flight_is_quiet_and_leaves_no_process(up: Up) -> None:
    """Last of the tests on `up`: SIGTERM (a service manager's stop) while a step's run is in
    flight (its timer fired early, and it waits for its time). `wct up` exits 0 without Prefect's
    "coroutine 'Runner.astop' was never awaited", an asyncio traceback or "Error logging to API",
    the run's process goes with it, and nothing answers on its port."""
    key = _move_step(up, datetime.now(UTC) + timedelta(minutes=4))  # within the early limit

    async def start() -> FlowRun:
        with temporary_settings({PREFECT_API_URL: up.api_url}):
            async with get_client() as client:
                made = await client.read_deployment_by_name("step/step")
                return await client.create_flow_run_from_deployment(
                    made.id, parameters={"key": key}, name="stop-test-step"
                )

    run = asyncio.run(start())

    def running() -> bool:
        return asyncio.run(_run_state(up, run)) is StateType.RUNNING

    until("the step's run is running", running, up)
    processes = _descendants(up.process.pid)
    before = len(up.console.read_text())
    up.process.send_signal(signal.SIGTERM)
    code = up.process.wait(timeout=120)
    said = up.console.read_text()[before:]
    alarming = [a for a in ("never awaited", "Traceback", "Error logging to API") if a in said]
    left = [pid for pid in processes if Path(f"/proc/{pid}").exists()]
    assert (code, alarming, left) == (0, [], []), said
    assert not healthy(up.api_url)


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _descendants(pid: int) -> list[int]:
    """Every process under `pid`: the Prefect server and the flow runs' processes."""
    found, todo = [], [pid]
    while todo:
        try:
            children = _children(todo.pop())
        except OSError:  # gone meanwhile
            continue
        found += children
        todo += children
    return found


def _reap(process: subprocess.Popen[Any], server: int | None) -> None:
    """Whatever a failed test left running: `wct up`, and the Prefect server it started."""
    if process.poll() is None:
        process.kill()
    if server is not None and Path(f"/proc/{server}").exists():
        os.kill(server, signal.SIGKILL)


def test_a_stop_while_starting_stops_the_prefect_server_it_started(tmp_path: Path) -> None:
    """SIGTERM (a service manager's stop) while `wct up` is still starting, before Prefect's
    runner serves and sets its own handler: `wct up` exits as stopped (0) and takes the Prefect
    server it started with it, instead of dying at once and leaving the server running on its
    port, where the next `wct up` refuses to start ("a Prefect server already answers")."""
    env = user_env(tmp_path)
    _cli(env, "init")
    process = subprocess.Popen(
        [WCT, "up", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server: int | None = None
    try:
        deadline = time.monotonic() + WAIT
        while server is None and process.poll() is None and time.monotonic() < deadline:
            server = next(iter(_children(process.pid)), None)  # `prefect server start`, starting
            time.sleep(0.05)
        assert server is not None, "no Prefect server started:\n" + process.communicate()[0]
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0]
        assert process.returncode == 0, output
        assert not Path(f"/proc/{server}").exists(), "the Prefect server outlived wct up"
    finally:
        _reap(process, server)


def test_a_killed_wct_up_takes_its_prefect_server_with_it(tmp_path: Path) -> None:
    """`wct up` killed outright (SIGKILL, the kernel's out-of-memory killer), so that nothing of
    it runs on the way out: the Prefect server it started still stops (Linux's parent-death
    signal), instead of holding its port and its database until someone finds it."""
    env = user_env(tmp_path)
    _cli(env, "init")
    port = free_port()
    process = subprocess.Popen(
        [WCT, "up", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server: int | None = None
    try:
        deadline = time.monotonic() + WAIT
        while process.poll() is None and time.monotonic() < deadline:
            server = next(iter(_children(process.pid)), None)
            if server is not None and healthy(f"http://127.0.0.1:{port}/api"):
                break
            time.sleep(0.2)
        assert server is not None and process.poll() is None, "no Prefect server started"
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + WAIT
        while Path(f"/proc/{server}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{server}").exists(), "the Prefect server outlived a killed wct up"
        assert not healthy(f"http://127.0.0.1:{port}/api")
    finally:
        _reap(process, server)
