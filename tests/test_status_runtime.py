"""`wct status` against a Prefect server with no scheduler (the test harness runs none): a
deployment on a schedule with no runs is reported as a broken scheduler, and status exits 1."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from deployments.cli_up import Watchdog
from deployments.dispatch import dispatch_deployments
from models.clock import FixedClock, SystemClock

from .conftest import Cli


@pytest.fixture
def scheduled(prefect_harness: str, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """An initialised home whose Prefect server (the harness) has `dispatch` on its schedule."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    [made] = dispatch_deployments()
    made.apply()
    assert cli("init").exit_code == 0
    return cli


def test_status_reports_a_scheduler_that_creates_no_runs(scheduled: Cli) -> None:
    cli = scheduled
    # Ten minutes after the deployment was registered, as `wct status` would see it then.
    cli.runtime.clock = FixedClock(SystemClock().now() + timedelta(minutes=10))
    result = cli("status", "--json")
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert result.stdout, result.stderr
    runtime = json.loads(result.stdout)["runtime"]
    assert runtime["server"]["answers"] is True
    assert runtime["scheduler"]["ok"] is False
    # (Other deployments on the shared harness may be reported too: it has no scheduler at all.)
    messages = [f["message"] for f in runtime["findings"] if f["what"] == "scheduler"]
    assert any("'dispatch' runs every 60 s but has no run scheduled" in m for m in messages)
    text = cli("status")
    assert text.exit_code == 1
    assert "scheduler: NOT creating runs" in text.stdout
    assert "error: the Prefect scheduler is not creating runs" in text.stderr


def test_the_up_console_says_when_the_scheduler_breaks_and_when_it_is_right_again(
    scheduled: Cli,
) -> None:
    cli = scheduled
    said: list[str] = []
    watchdog = Watchdog(cli.runtime, cli.runtime.engine(), said.append)
    cli.runtime.clock = FixedClock(SystemClock().now() + timedelta(minutes=10))
    watchdog.check()
    watchdog.check()  # said once, not every minute
    broken = [s for s in said if "'dispatch' runs every 60 s" in s]
    assert len(broken) == 1, said
    assert broken[0].startswith("wct up: error: the Prefect scheduler is not creating runs")
    said.clear()
    cli.runtime.clock = FixedClock(SystemClock().now())  # within the grace again
    watchdog.check()
    assert said and all(s.startswith("wct up: resolved:") for s in said), said


def test_status_shows_an_unreachable_smtp_server(cli: Cli) -> None:
    from sqlmodel import Session

    from models import outbox

    assert cli("init").exit_code == 0
    engine = cli.runtime.engine()
    now = cli.runtime.clock.now()
    with Session(engine) as session:
        for _ in range(12):
            outbox.record_refused(session, "SMTP mail.example.org:587", now=now, error="refused")
        session.commit()
    result = cli("status", "--json")
    assert result.exit_code == 1
    [down] = json.loads(result.stdout)["runtime"]["channels_down"]
    assert (down["channel"], down["refused"]) == ("SMTP mail.example.org:587", 12)
    text = cli("status")
    assert f"SMTP mail.example.org:587 unreachable since {now:%H:%M} (12 attempts refused)" in (
        text.stderr
    )
