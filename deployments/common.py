"""What every deployment module shares."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import TerminationSignal
from prefect.logging.handlers import APILogHandler
from prefect.runner import Runner
from prefect.types.entrypoint import EntrypointType


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
    at most `limit` runs at once, and stopped by SIGTERM (a service manager's stop) as Prefect's
    runner means to be stopped (`until_stopped`). Ctrl-C stops it too."""
    runner = Runner(pause_on_shutdown=False, limit=limit)
    for made in deployments:
        runner.add_deployment(made)
    try:
        asyncio.run(until_stopped(runner))
    except (KeyboardInterrupt, TerminationSignal):
        pass  # stopped, as `prefect.serve` treats it


async def until_stopped(runner: Runner) -> None:
    """Run `runner` until SIGTERM, then await its `astop()`: the runs it is executing are
    cancelled (shown Cancelled in the UI, not left Running) and its loops end. Prefect 3.8's own
    handler (`Runner.handle_sigterm`, which `start()` sets) calls the synchronous `stop()` inside
    the running loop, where that only makes an `astop()` coroutine nobody awaits ("RuntimeWarning:
    coroutine 'Runner.astop' was never awaited"), then exits by SystemExit. This handler takes its
    place once `start()` has set it; a SIGTERM before the runner has started cancels the start.
    The runner's last logs are sent before this returns, so that they reach a Prefect server that
    `wct up` stops next, instead of "--- Error logging to API ---"."""
    loop = asyncio.get_running_loop()
    running = asyncio.ensure_future(runner.start())
    await asyncio.sleep(0)  # `start()` sets Prefect's handler before its first await
    stopping: list[asyncio.Task[None]] = []  # held, so that the task is not collected mid-way

    def stop() -> None:
        if runner.started:
            stopping.append(loop.create_task(runner.astop()))
        else:
            running.cancel()

    loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        await running
    except asyncio.CancelledError:
        if not running.cancelled():
            raise
    finally:
        await APILogHandler.aflush()  # the runner's last logs, while the API still answers
