"""`wct status` says whether the members' pages answer at WCT_WEB_URL: fine when they do, or when
`wct up` is not running; an error (exit 1) when `wct up` runs and they do not answer."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from deployments.cli_base import Runtime
from deployments.server import Running
from deployments.web.app import WebApp
from deployments.web.serve import Running as PagesRunning
from deployments.web.serve import start
from models.clock import FixedClock
from models.config import Settings
from models.health import Level, RuntimeFacts, assess

from .conftest import Cli
from .test_web import free_port

NOW = datetime.fromisoformat("2026-11-23T09:00:00+00:00")


def test_pages_not_answering_are_an_error_only_while_wct_up_runs() -> None:
    facts = RuntimeFacts(None, False, web_url="http://127.0.0.1:4300", web_answers=False)
    assert assess(facts, NOW).findings == []
    findings = assess(facts, NOW, expected_up=True).findings
    [finding] = [f for f in findings if f.what == "web"]
    assert (finding.level, finding.what) == (Level.ERROR, "web")
    assert "members' pages at http://127.0.0.1:4300 do not answer" in finding.message
    answering = RuntimeFacts(None, False, web_url="http://127.0.0.1:4300", web_answers=True)
    assert [f.what for f in assess(answering, NOW, expected_up=True).findings] == ["server"]
    assert assess(answering, NOW).as_dict(NOW)["web"] == {
        "url": "http://127.0.0.1:4300",
        "answers": True,
    }


@pytest.fixture
def web_cli(
    database_url: str, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    """An initialised home whose WCT_WEB_URL is a free port, and no Prefect server to find."""
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        web_url=f"http://127.0.0.1:{free_port()}",
    )
    cli = Cli(Runtime(settings=settings, clock=clock), CliRunner())
    assert cli("init").exit_code == 0
    yield cli
    cli.runtime.engine().dispose()


def serve_pages(cli: Cli, engine: Engine, home: Path) -> PagesRunning:
    web = WebApp(engine=engine, clock=cli.runtime.clock, key=b"s" * 32, home=home)
    port = int(cli.runtime.settings.web_url.rsplit(":", 1)[1])
    return start(web, "127.0.0.1", port)


def test_status_says_the_members_pages_answer(web_cli: Cli, tmp_path: Path) -> None:
    url = web_cli.runtime.settings.web_url
    running = serve_pages(web_cli, web_cli.runtime.engine(), tmp_path / "pages")
    try:
        text = web_cli("status")
        as_json = web_cli("status", "--json")
    finally:
        running.stop()
    assert text.exit_code == 0, (text.stdout, text.stderr)
    assert f"members' pages: answering at {url}" in text.stdout
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["runtime"]["web"] == {"url": url, "answers": True}


def test_status_without_wct_up_says_the_pages_are_not_running_and_is_not_an_error(
    web_cli: Cli,
) -> None:
    url = web_cli.runtime.settings.web_url
    text = web_cli("status")
    assert text.exit_code == 0, (text.stdout, text.stderr)
    assert f"members' pages: not running at {url} (they start with `wct up`)" in text.stdout
    runtime = json.loads(web_cli("status", "--json").stdout)["runtime"]
    assert runtime["web"] == {"url": url, "answers": False}
    assert [f for f in runtime["findings"] if f["what"] == "web"] == []


def test_status_while_wct_up_runs_says_pages_that_do_not_answer_are_an_error(
    web_cli: Cli,
) -> None:
    url = web_cli.runtime.settings.web_url
    api_url = os.environ["PREFECT_API_URL"]
    Running(os.getpid(), api_url, api_url, None, NOW.isoformat()).write(
        web_cli.runtime.settings.home
    )
    text = web_cli("status")
    assert text.exit_code == 1
    assert f"members' pages: NOT answering at {url}" in text.stdout
    assert f"error: the members' pages at {url} do not answer although `wct up`" in text.stderr
    as_json = web_cli("status", "--json")
    assert as_json.exit_code == 1
    [web] = [f for f in json.loads(as_json.stdout)["runtime"]["findings"] if f["what"] == "web"]
    assert web["level"] == "error"
