"""How much a wct timer step costs over Prefect's own cost of a flow run, and against a plain one.

Measures, on the same Prefect server in the same process, the median wall time of three arms,
taking turns (each round in a rotated order, so drift and order hit all three alike):
  - `wct no-op`: a no-op async flow run as wct runs flows in-process (`wct simulate`): one
    Prefect client for every run (flows.runtime.one_client), its own result storage and no
    persisted result (flows.runtime.RESULT_STORAGE), Prefect's logs at WARNING;
  - `wct step`: one wct timer step under the same settings: the `step` flow reading the step,
    applying its kind's rule, writing the audit event and the outbox rows in one transaction,
    relaying the audit events and publishing its artifacts;
  - `default no-op`: a no-op async flow run under Prefect's defaults, what a user of plain
    Prefect gets: no client in context (a new client per run), the server asked for its default
    result storage, INFO logs to the console and the API.
Prints, as its last lines, `step overhead ratio R` (wct step / wct no-op), `step speedup bound B`
(default no-op / wct no-op: the speedup of a step that cost nothing beyond Prefect's own calls)
and `step speedup S` (default no-op / wct step).

    python bench/step_overhead.py [--runs 40]

wct's settings are in the environment before Prefect is imported (Prefect reads its logging
level when it configures logging, at import); the default arm raises the `prefect` logger to
INFO, Prefect's default level, for its own runs only. Uses PREFECT_API_URL when set, else a
temporary local server; the wct database is a temporary SQLite file with the Wirral
constitution and one simulated member per seat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

#: How wct runs flows in-process, set before Prefect is imported.
WCT_ENVIRONMENT = {"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
ARMS = ("wct no-op", "wct step", "default no-op")


def prepare(home: Path, quarters: int) -> list[tuple[str, datetime]]:
    """A database with `quarters` quarters of reports open: their steps, in due order."""
    from sqlmodel import Session

    from flows.simulate import prepare_database
    from models.clock import LONDON, FixedClock
    from models.config import get_settings
    from models.constitution import load_constitution
    from models.db import make_engine
    from models.reports import open_reports
    from models.steps import pending_until
    from models.uow import UnitOfWork

    url = f"sqlite:///{home / 'wct.db'}"
    os.environ["WCT_DATABASE_URL"] = url
    get_settings.cache_clear()
    engine = make_engine(url)
    clock = FixedClock(datetime(2026, 11, 23, 9, tzinfo=LONDON))
    prepare_database(engine, load_constitution(), clock)
    for n in range(quarters):
        period = f"{2027 + n // 4}-Q{n % 4 + 1}"
        with UnitOfWork(engine, clock=clock, actor="bench") as uow:
            open_reports(uow, period=period)
            uow.commit()
    with Session(engine) as session:
        steps = pending_until(session, datetime(2100, 1, 1, tzinfo=LONDON))
    engine.dispose()
    return [(s.key, s.due_at) for s in steps]


def noop_flows() -> tuple[
    Callable[[], Coroutine[Any, Any, None]], Callable[[], Coroutine[Any, Any, None]]
]:
    """The no-op flow as wct declares its flows, and as plain Prefect declares one."""
    from prefect import flow

    from flows.runtime import wct_flow

    @wct_flow("bench-noop")
    async def wct_noop() -> None:
        return None

    @flow(name="bench-noop-default")
    async def default_noop() -> None:
        return None

    return wct_noop, default_noop


async def measure(steps: list[tuple[str, datetime]], runs: int) -> dict[str, list[float]]:
    """Wall times of each arm, `runs` each after three of each to warm up."""
    from flows.runtime import one_client
    from flows.steps import step

    wct_noop, default_noop = noop_flows()
    plain = contextvars.copy_context()  # Prefect's contexts as they are before wct's client
    prefect_logger = logging.getLogger("prefect")
    wct_level = prefect_logger.level
    queue = iter(steps)

    async def wct_step() -> None:
        key, due = next(queue)
        await step(key=key, as_of=due)

    async def default_run() -> None:
        prefect_logger.setLevel(logging.INFO)  # Prefect's default PREFECT_LOGGING_LEVEL
        try:
            loop = asyncio.get_running_loop()
            await loop.create_task(default_noop(), context=plain.copy())
        finally:
            prefect_logger.setLevel(wct_level)

    arms: dict[str, Callable[[], Awaitable[Any]]] = {
        "wct no-op": wct_noop,
        "wct step": wct_step,
        "default no-op": default_run,
    }
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    async with one_client():
        for n in range(runs + 3):
            order = ARMS[n % 3 :] + ARMS[: n % 3]
            for arm in order:
                started = time.perf_counter()
                await arms[arm]()
                if n >= 3:
                    times[arm].append(time.perf_counter() - started)
    return times


def spread(values: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"median {median * 1000:.1f} ms (quartiles {q1 * 1000:.1f}-{q3 * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    for name, value in WCT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix="wct-bench-") as tmp:
        steps = prepare(Path(tmp), quarters=max(1, (args.runs + 3) // 30 + 1))
        if len(steps) < args.runs + 3:
            raise SystemExit(f"only {len(steps)} steps for {args.runs + 3} runs")
        if os.environ.get("PREFECT_API_URL"):
            times = asyncio.run(measure(steps, args.runs))
        else:
            from prefect.testing.utilities import prefect_test_harness

            with prefect_test_harness(server_startup_timeout=120):
                times = asyncio.run(measure(steps, args.runs))
    for arm in ARMS:
        print(f"{arm + ' flow run' if 'no-op' in arm else arm}: {spread(times[arm])}")
    medians = {arm: statistics.median(times[arm]) for arm in ARMS}
    print(f"step overhead ratio {medians['wct step'] / medians['wct no-op']:.2f}")
    # What a step would reach if it cost nothing beyond Prefect's own calls (a wct no-op run):
    # Prefect's client and server time, shared by every arm, bounds the speedup.
    print(f"step speedup bound {medians['default no-op'] / medians['wct no-op']:.2f}")
    print(f"step speedup {medians['default no-op'] / medians['wct step']:.2f}")


if __name__ == "__main__":
    main()
