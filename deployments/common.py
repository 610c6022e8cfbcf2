"""What every deployment module shares."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import TerminationSignal
from prefect.logging.handlers import APILogHandler
from prefect.runner import Runner
from prefect.types.entrypoint import EntrypointType

#: How long a stop waits for the runner's last logs to reach the API (seconds).
LAST_LOGS_WAIT = 5.0


def deployment(
    flow: Flow[Any, Any], name: str, *, for_workers: bool = False, **options: Any
) -> RunnerDeployment:
    """`flow.to_deployment` from synchronous code (Prefect types it as maybe-awaitable).
    `for_workers`: the flow is named by module path, so a worker anywhere wct is installed can
    run it."""
    if for_workers:
        options["entrypoint_type"] = EntrypointType.MODULE_PATH
    made = flow.to_deployment(name=name, **options)
    assert isinstance(made, RunnerDeployment)
    return made


def serve_until_stopped(deployments: list[RunnerDeployment], *, limit: int | None = None) -> None:
    """`prefect.serve`, leaving schedules and timers in place on a stop (no pause on shutdown),
    at most `limit` flow runs at once (each run is its own process, so this bounds memory; the
    rest wait as Scheduled), until Ctrl-C or SIGTERM (a service manager's stop), which ends it
    quietly (`until_stopped`)."""
    runner = Runner(pause_on_shutdown=False, limit=limit)
    for made in deployments:
        runner.add_deployment(made)
    try:
        asyncio.run(until_stopped(runner))
    except (KeyboardInterrupt, TerminationSignal):
        pass  # stopped, as `prefect.serve` treats it


async def until_stopped(runner: Runner) -> None:
    """Run `runner` until SIGTERM, then end it by cancelling its `start()`, as Ctrl-C does, and
    send its last logs while the API still answers. Prefect 3.8's own handler
    (`Runner.handle_sigterm`, which `start()` sets) calls the synchronous `stop()` inside the
    running loop, where that only makes an `astop()` coroutine nobody awaits ("RuntimeWarning:
    coroutine 'Runner.astop' was never awaited"), then exits by SystemExit, with an asyncio
    traceback when a run is in flight and "--- Error logging to API ---" once `wct up` has
    stopped its server. This handler takes its place once `start()` has set it. It does not await
    `astop()` either: that cancels every run whose process is still alive, and a case run that
    has just suspended itself (Paused, waiting for an answer across a restart) is one of them
    until its process has exited (tests/test_case_flows.py, the dispute across a restart)."""
    loop = asyncio.get_running_loop()
    running = asyncio.ensure_future(runner.start())
    await asyncio.sleep(0)  # `start()` sets Prefect's handler before its first await
    loop.add_signal_handler(signal.SIGTERM, running.cancel)
    try:
        await running
    except asyncio.CancelledError:
        if not running.cancelled():
            raise
    finally:
        # The runner's last logs, while the API still answers; bounded, as Prefect bounds its own
        # flush at exit (5 s), so that an API gone away cannot hold up a service manager's stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(APILogHandler.aflush(), LAST_LOGS_WAIT)
