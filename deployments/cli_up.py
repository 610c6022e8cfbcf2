"""`wct up`: run the partnership's calendar, and say truthfully whether it is running."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from deployments.cli_base import Runtime, app, errors, runtime
from deployments.health import gather
from deployments.server import Running, Server, announced, api, healthy, prefect_server
from models.commands import current_constitution
from models.constitution import Constitution
from models.health import Finding, Level, RuntimeHealth, assess

if TYPE_CHECKING:
    from deployments.web.serve import Running as WebRunning

DEFAULT_API = "http://127.0.0.1:4200/api"
WATCH_EVERY_SECONDS = 60.0
ERROR_ECHO_EVERY_SECONDS = 60.0


def constitution_of(rt: Runtime) -> Constitution:
    with Session(rt.ready_engine()) as session:
        return current_constitution(session)


def runtime_health(rt: Runtime, engine: Engine | None) -> RuntimeHealth:
    """The health of this home's running system: the server `wct up` runs (or PREFECT_API_URL,
    or a server on the default port), its scheduler, the dispatcher and the outbox."""
    running = Running.read(rt.settings.home)
    api_url = os.environ.get("PREFECT_API_URL") or (running.api_url if running else None)
    if api_url is None and healthy(DEFAULT_API):
        api_url = DEFAULT_API
    now = rt.clock.now()
    facts = asyncio.run(
        gather(api_url, engine=engine, now=now, log=running.log if running else None)
    )
    web_url = rt.settings.web_url
    facts = replace(facts, web_url=web_url, web_answers=members_pages_answer(web_url))
    return assess(facts, now, expected_up=running is not None)


def members_pages_answer(web_url: str, timeout: float = 2.0) -> bool:
    """Whether the members' pages answer at `web_url` (their /healthz says ok)."""
    if not web_url.startswith(("http://", "https://")):
        return False
    try:
        with urllib.request.urlopen(f"{web_url.rstrip('/')}/healthz", timeout=timeout) as r:  # noqa: S310
            return bool(r.status == 200 and r.read(16) == b"ok")
    except (OSError, ValueError):
        return False


def describe(health: RuntimeHealth, now: datetime) -> list[str]:
    """The runtime part of `wct status`, one fact a line."""
    f = health.facts
    if f.server_answers:
        lines = [f"Prefect server: answering at {f.api_url}"]
    elif f.api_url:
        lines = [f"Prefect server: not answering at {f.api_url}"]
    else:
        lines = ["Prefect server: not running (start everything with `wct up`)"]
    if f.log:
        lines.append(f"server log: {f.log}")
    if f.server_answers:
        ok = health.scheduler_ok
        state = (
            "no schedules registered yet"
            if ok is None
            else ("creating runs" if ok else "NOT creating runs")
        )
        last = (
            f.last_runs_created_at.isoformat(timespec="seconds")
            if f.last_runs_created_at
            else "never"
        )
        lines.append(f"scheduler: {state}; last created runs at {last}")
        done = f.last_dispatch_at.isoformat(timespec="seconds") if f.last_dispatch_at else "never"
        lines.append(f"last completed dispatch: {done}")
    if f.web_url is not None:
        if f.web_answers:
            lines.append(f"members' pages: answering at {f.web_url}")
        elif any(x.what == "web" for x in health.findings):
            lines.append(f"members' pages: NOT answering at {f.web_url}")
        else:
            lines.append(f"members' pages: not running at {f.web_url} (they start with `wct up`)")
    if f.oldest_due_unsent is not None:
        minutes = int((now - f.oldest_due_unsent).total_seconds() // 60)
        lines.append(f"outbox: {f.due_unsent} due and unsent, the oldest for {minutes} min")
    else:
        lines.append("outbox: nothing due and unsent")
    return lines


class Watchdog:
    """While `wct up` serves, checks the runtime health every minute and says on the console
    when something goes wrong (and when it is right again): never silence."""

    def __init__(self, rt: Runtime, engine: Engine, echo: Callable[[str], None]) -> None:
        self.rt, self.engine, self.echo = rt, engine, echo
        self._stop = threading.Event()
        self._shown: dict[str, Finding] = {}
        self._thread = threading.Thread(target=self._run, name="wct-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> None:
        health = runtime_health(self.rt, self.engine)
        now = {f.identity: f for f in health.findings if f.level is not Level.OK}
        for key, finding in now.items():
            if key not in self._shown:
                self.echo(f"wct up: {finding.level.value}: {finding.message}")
        for key in sorted(set(self._shown) - set(now)):
            gone = self._shown[key]
            self.echo(f"wct up: resolved: {gone.what} {gone.about}".rstrip())
        self._shown = now

    def _run(self) -> None:
        while not self._stop.wait(WATCH_EVERY_SECONDS):
            try:
                self.check()
            except Exception as exc:  # the watchdog must never take `wct up` down
                self.echo(f"wct up: warning: health check failed: {type(exc).__name__}: {exc}")


class ErrorEcho:
    """Echo errors the server logs, at most one a minute, pointing at the log."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._last = 0.0

    def __call__(self, line: str) -> None:
        if time.monotonic() - self._last >= ERROR_ECHO_EVERY_SECONDS:
            self._last = time.monotonic()
            typer.echo(
                f"wct up: the Prefect server logged an error (see {self.log}): {line[:300]}",
                err=True,
            )


@app.command()
@errors
def up(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Where the local Prefect server and its UI listen.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Their port.", min=1, max=65535)] = 4200,
    register_only: Annotated[
        bool, typer.Option(help="Register deployments and timers, then exit (no serving).")
    ] = False,
) -> None:
    """Run the partnership's calendar: a Prefect server (unless PREFECT_API_URL is set), every
    cycle as a deployment on the constitution's schedule, served until stopped, at most
    WCT_RUN_LIMIT flow runs at a time."""
    from deployments.server import server_log

    rt = runtime(ctx)
    c = constitution_of(rt)
    engine = rt.ready_engine()
    home = rt.settings.home.resolve()
    os.environ.setdefault("WCT_DATABASE_URL", rt.settings.resolved_database_url)
    os.environ.setdefault("WCT_HOME", str(home))
    echo = ErrorEcho(server_log(home))
    with (
        prefect_server(host, port, home=home, on_error=echo) as server,
        api(server.api_url),
        announced(server, home),
    ):
        _serve(rt, c, engine, server, register_only=register_only)


def _serve(
    rt: Runtime, c: Constitution, engine: Engine, server: Server, *, register_only: bool
) -> None:
    from deployments.common import serve_until_stopped
    from deployments.serve import all_deployments, catch_up

    deployments = all_deployments(c)
    typer.echo(f"Prefect UI: {server.ui_url}")
    if server.log:
        typer.echo(f"Prefect server log: {server.log} (rotated)")
    for name in asyncio.run(catch_up(deployments)):
        typer.echo(
            f"removed the deployment {name} of an earlier wct, with its scheduled runs: "
            "the sweep sets their timers again under step/step"
        )
    typer.echo(
        f"{len(deployments)} deployments registered; cycles caught up; "
        f"at most {rt.settings.run_limit} run(s) at a time; `wct status` says how it is going"
    )
    typer.echo(f"Deployments: {server.ui_url}/deployments (a run of one can be started there)")
    if register_only:
        return
    members = _start_members_pages(rt, engine)
    watchdog = Watchdog(rt, engine, lambda line: typer.echo(line, err=True))
    watchdog.start()
    try:
        serve_until_stopped(deployments, limit=rt.settings.run_limit)
    finally:
        watchdog.stop()
        if members is not None:
            members.stop()


def _start_members_pages(rt: Runtime, engine: Engine) -> WebRunning | None:
    """The members' pages in a thread of this process, at WCT_WEB_URL; `wct up` goes on without
    them (and says so) if they cannot start."""
    from deployments.web.serve import host_port, prefect_follow_up, start, web_app

    url = rt.settings.web_url
    try:
        host, port = host_port(url)
        running = start(web_app(rt.settings, engine, rt.clock, prefect_follow_up), host, port)
    except (OSError, RuntimeError, ValueError) as exc:
        typer.echo(f"wct up: warning: members' pages not started at {url}: {exc}", err=True)
        return None
    typer.echo(f"Members' pages: {url}")
    return running


@app.command()
@errors
def web(ctx: typer.Context) -> None:
    """Serve only the members' pages, at WCT_WEB_URL, until stopped (Ctrl-C). Inside `wct up`
    they are served already."""
    from deployments.web.serve import host_port, prefect_follow_up, server, web_app

    rt = runtime(ctx)
    engine = rt.ready_engine()
    host, port = host_port(rt.settings.web_url)
    follow = prefect_follow_up if os.environ.get("PREFECT_API_URL") else None
    typer.echo(f"Members' pages: {rt.settings.web_url}")
    server(web_app(rt.settings, engine, rt.clock, follow), host, port).run()
