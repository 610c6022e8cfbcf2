"""Every change is relayed as a Prefect event, whoever made it (flows/signals.py): the CLI when a
Prefect server is configured, a flow after each command. Read back from the server's own API."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from deployments.cli_base import Runtime
from deployments.server import Running
from flows import signals
from flows.cycles import quarterly_reports
from models.clock import FixedClock
from models.config import Settings
from models.tables import AuditHead, Meeting, Person, SignalCursor

from .conftest import DATA, Cli
from .cycles_support import london
from .flows_harness import CycleDb

WAIT = 60.0  # an upper bound for the server to persist an event, never an expectation of speed


def events(api_url: str, name: str, resource: str) -> list[dict[str, Any]]:
    """The events named `name` about `resource` the server has persisted (POST /events/filter)."""
    response = httpx.post(
        f"{api_url}/events/filter",
        json={
            "filter": {
                "event": {"name": [name]},
                "resource": {"id": [resource]},
                "occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
            },
            "limit": 50,
        },
        timeout=10,
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def until_relayed(
    api_url: str, name: str, resource: str, actor: str, **after: object
) -> dict[str, Any]:
    """The event of `actor`'s change with `after` in its payload's state, once the server has it;
    other tests share the server, and their databases number their rows alike."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for event in events(api_url, name, resource):
            payload = event["payload"]
            if payload["actor"] == actor and after.items() <= payload["after"].items():
                return event
        time.sleep(0.25)
    raise AssertionError(f"no {name} event for {resource} by {actor} within {WAIT} s")


def test_a_cli_change_is_relayed_to_the_prefect_server(
    prefect_harness: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime(
        settings=Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'wct.db'}"),
        clock=FixedClock(london(2026, 11, 23, 9, 0)),
    )
    cli = Cli(runtime, CliRunner())
    assert cli("init").exit_code == 0  # no Prefect server configured: nothing relayed yet
    assert cli("members", "import", DATA / "cycles-members.csv").exit_code == 0
    assert cli("meeting", "plan", "board", "2027-03-09").exit_code == 0
    with Session(runtime.engine()) as session:
        assert session.exec(select(SignalCursor)).first() is None
        pseudonyms = dict(session.exec(select(Person.email, Person.pseudonym)).all())
        meeting = session.exec(select(Meeting.id).where(Meeting.body_id == "board")).one()
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    risk = ("risk", "raise", "--title", "Placements", "--owner", "sally@council.example")
    raised = cli(*risk, "--likelihood", "2", "--impact", "2", "--as", "dcs@council.example")
    assert raised.exit_code == 0, raised.output
    with Session(runtime.engine()) as session:
        head = session.exec(select(AuditHead)).one()
        cursor = session.exec(select(SignalCursor)).one()
        assert cursor.seq == head.seq  # the earlier changes went with it
    dee = pseudonyms["dcs@council.example"]
    until_relayed(prefect_harness, "wct.risk.raised", "wct.risk.1", dee)
    eve = pseudonyms["eve@council.example"]
    sorry = cli("meeting", "apologies", "board", "2027-03-09", "--as", "eve@council.example")
    assert sorry.exit_code == 0, sorry.output
    resource = f"wct.meeting.{meeting}"
    event = until_relayed(prefect_harness, "wct.meeting.apologies", resource, eve)
    assert event["payload"]["after"] == {"person": eve}
    # Without PREFECT_API_URL, the running `wct up` of this home is the server to tell.
    monkeypatch.delenv("PREFECT_API_URL")
    Running(os.getpid(), prefect_harness, prefect_harness, None, "now").write(runtime.settings.home)
    item = ("meeting", "item", "board", "2027-03-09", "--title", "Relayed")
    assert cli(*item, "--as", "nina@nhs.example").exit_code == 0
    nina = pseudonyms["nina@nhs.example"]
    until_relayed(prefect_harness, "wct.meeting.item_submitted", resource, nina, title="Relayed")
    runtime.engine().dispose()


def test_a_cycle_flow_relays_what_it_changed(prefect_harness: str, cycle_db: CycleDb) -> None:
    opened = asyncio.run(quarterly_reports(period="2031-Q3", as_of=london(2026, 11, 23, 9, 0)))
    assert len(opened["created"]) == 6
    with Session(cycle_db.engine) as session:
        head = session.exec(select(AuditHead)).one()
        cursor = session.exec(select(SignalCursor)).one()
    assert cursor.seq == head.seq
    until_relayed(
        prefect_harness, "wct.report.opened", "wct.report.1", "system:cycle", period="2031-Q3"
    )


def test_two_first_relays_at_once_emit_each_event_once(
    loaded: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new database's first two relays at once (two commands in two processes): each event is
    emitted once and neither relay fails. On PostgreSQL the first holds its transaction, inside
    its first emit, until the second is waiting on it."""
    with Session(loaded) as session:
        head = session.exec(select(AuditHead)).one().seq
        assert session.exec(select(SignalCursor)).first() is None
    emitted: list[int] = []
    first = threading.Event()

    def emit(**event: Any) -> None:
        emitted.append(event["payload"]["seq"])
        if not first.is_set():
            first.set()
            if loaded.dialect.name == "postgresql":
                until_another_waits(loaded)

    monkeypatch.setattr(signals, "emit_event", emit)
    relayed: list[int | str] = []

    def relay() -> None:
        try:
            relayed.append(signals.relay(loaded))
        except Exception as exc:  # noqa: BLE001  (the failure is the finding)
            relayed.append(repr(exc))

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(relayed, key=str) == [0, head]
    assert sorted(emitted) == list(range(1, head + 1))


def until_another_waits(engine: Engine) -> None:
    """Until another PostgreSQL backend waits on a lock (the other relay, on this one's cursor)."""
    deadline = time.monotonic() + WAIT
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar()
            connection.commit()
            if waiting:
                return
    raise AssertionError(f"the other relay did not wait within {WAIT} s")
