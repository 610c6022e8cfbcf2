"""Serve the members' app with uvicorn: in a thread of `wct up`, or alone (`wct web`).

uvicorn's access log is off: a link's token is in its path, and tokens are never logged."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn
from sqlalchemy.engine import Engine

from deployments.web.app import OnChange, WebApp, create_app
from models.clock import Clock
from models.config import Settings
from models.links import link_key


def host_port(web_url: str) -> tuple[str, int]:
    """Where to listen for WCT_WEB_URL (a proxy in front may serve https on another port)."""
    parts = urlsplit(web_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"WCT_WEB_URL must be an http(s) URL, not {web_url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def web_app(
    settings: Settings, engine: Engine, clock: Clock, on_change: OnChange | None = None
) -> WebApp:
    return WebApp(
        engine=engine,
        clock=clock,
        key=link_key(settings.home, settings.link_key),
        home=settings.home,
        secure=settings.web_url.startswith("https://"),
        max_body=settings.web_max_body,
        on_change=on_change,
    )


def server(web: WebApp, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(web),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        lifespan="off",
    )
    return uvicorn.Server(config)


@dataclass
class Running:
    """A server in a thread of this process; `stop()` ends it and waits."""

    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start(web: WebApp, host: str, port: int, *, timeout: float = 10.0) -> Running:
    """Start serving in a daemon thread and wait until it listens (or raise)."""
    srv = server(web, host, port)
    # The thread runs in a copy of this context, so the app talks to the Prefect server `wct up`
    # chose (its settings are a context variable), not to a temporary one of its own.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=lambda: context.run(asyncio.run, srv.serve()), name="wct-web", daemon=True
    )
    thread.start()
    started = threading.Event()

    def wait() -> None:
        while thread.is_alive() and not srv.started:
            started.wait(0.05)

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(timeout)
    if not srv.started:
        srv.should_exit = True
        thread.join(timeout)
        raise RuntimeError(f"the members' pages did not start on {host}:{port}")
    return Running(srv, thread)


async def prefect_follow_up(subjects: Sequence[str]) -> None:
    """After a member's change inside `wct up`: relay its events to Prefect and wake the case
    runs waiting on what changed (as the step flow does)."""
    from flows.cases import follow_up
    from flows.runtime import engine as wct_engine
    from flows.signals import relay

    await asyncio.to_thread(relay, wct_engine())
    await follow_up(subjects)
