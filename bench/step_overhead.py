"""How much a wct timer step costs over Prefect's own cost of a flow run.

Measures, on the same Prefect server in the same process, the median wall time of
  - a no-op async flow run, and
  - one wct timer step: the `step` flow reading the step, applying its kind's rule, writing the
    audit event and the outbox rows in one transaction, and relaying the audit events,
alternating the two so drift hits both alike. Prints `step overhead ratio R` as its last line.

    python bench/step_overhead.py [--runs 40]

Uses PREFECT_API_URL when set, else a temporary local server; the wct database is a temporary
SQLite file with the Wirral constitution and one simulated member per seat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from prefect import flow
from sqlmodel import Session

from models.clock import LONDON, FixedClock
from models.config import get_settings
from models.constitution import load_constitution
from models.db import make_engine
from models.reports import open_reports
from models.steps import pending_until
from models.uow import UnitOfWork


@flow(name="bench-noop")
async def noop() -> None:
    return None


def prepare(home: Path, quarters: int) -> list[tuple[str, datetime]]:
    """A database with `quarters` quarters of reports open: their steps, in due order."""
    from flows.simulate import prepare_database

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


async def measure(steps: list[tuple[str, datetime]], runs: int) -> tuple[float, float, int]:
    from flows.steps import step

    for _ in range(3):  # warm up: imports, connections, the server's caches
        await noop()
    noop_times: list[float] = []
    step_times: list[float] = []
    acted = 0
    for key, due in steps[: runs + 3]:
        started = time.perf_counter()
        await noop()
        noop_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = await step(key=key, as_of=due)
        step_times.append(time.perf_counter() - started)
        acted += result == "acted"
    return statistics.median(noop_times[3:]), statistics.median(step_times[3:]), acted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="wct-bench-") as tmp:
        steps = prepare(Path(tmp), quarters=max(1, (args.runs + 3) // 30 + 1))
        if os.environ.get("PREFECT_API_URL"):
            noop_median, step_median, acted = asyncio.run(measure(steps, args.runs))
        else:
            from prefect.testing.utilities import prefect_test_harness

            with prefect_test_harness(server_startup_timeout=120):
                noop_median, step_median, acted = asyncio.run(measure(steps, args.runs))
    print(f"no-op flow run, median: {noop_median * 1000:.1f} ms")  # noqa: T201
    print(f"wct timer step, median: {step_median * 1000:.1f} ms ({acted} acted)")  # noqa: T201
    print(f"step overhead ratio {step_median / noop_median:.2f}")  # noqa: T201


if __name__ == "__main__":
    main()
