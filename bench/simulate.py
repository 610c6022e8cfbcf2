"""What `wct simulate` costs against Prefect's own cost of the flow runs it makes.

Runs the simulation of the shipped constitution over a period (default 2027-01-01..2027-12-31),
then, in the same process and against the same Prefect server, times no-op async flow runs in
turns: under wct's settings (as the simulation runs its flows: one client, its own result
storage, no persisted result, Prefect's logs at WARNING) and under Prefect's defaults (a new
client per run, the default result storage looked up, INFO logs). Prints the simulation's
figures and, as its last lines,

    simulate ratio R            wall / (flow runs x wct no-op run median): the goal, <= 1.3
    simulate ratio (default) R  wall / (flow runs x default no-op run median)

    python bench/simulate.py [--months 12] [--runs 30]

wct's settings are in the environment before Prefect is imported. Uses PREFECT_API_URL when set,
else a temporary local server for the whole bench.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_overhead import WCT_ENVIRONMENT  # noqa: E402  (no Prefect import)

START = date(2027, 1, 1)


def period_end(months: int) -> date:
    """The last day of the `months`-th month from START."""
    year, month = START.year + (START.month - 1 + months) // 12, (START.month - 1 + months) % 12 + 1
    return date.fromordinal(date(year, month, 1).toordinal() - 1)


async def noop_medians(runs: int) -> tuple[float, float]:
    """Median wall time of a no-op flow run under wct's settings and under Prefect's defaults."""
    import contextvars
    import logging
    import time

    from step_overhead import noop_flows

    from flows.runtime import one_client

    wct_noop, default_noop = noop_flows()
    plain = contextvars.copy_context()
    prefect_logger = logging.getLogger("prefect")
    level = prefect_logger.level
    wct: list[float] = []
    default: list[float] = []
    async with one_client():
        for n in range(runs + 3):
            for arm in ("wct", "default") if n % 2 else ("default", "wct"):
                started = time.perf_counter()
                if arm == "wct":
                    await wct_noop()
                else:
                    prefect_logger.setLevel(logging.INFO)
                    try:
                        loop = asyncio.get_running_loop()
                        await loop.create_task(default_noop(), context=plain.copy())
                    finally:
                        prefect_logger.setLevel(level)
                elapsed = time.perf_counter() - started
                if n >= 3:
                    (wct if arm == "wct" else default).append(elapsed)
    return statistics.median(wct), statistics.median(default)


def bench(months: int, runs: int) -> tuple[dict[str, Any], float, float]:
    from deployments.cli_cycles import run_simulation
    from models.constitution import load_constitution

    with tempfile.TemporaryDirectory(prefix="wct-bench-simulate-") as tmp:
        summary = run_simulation(load_constitution(), START, period_end(months), 7, Path(tmp))
        wct, default = asyncio.run(noop_medians(runs))
    return summary, wct, default


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--runs", type=int, default=30, help="no-op runs of each kind")
    args = parser.parse_args()
    for name, value in WCT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if os.environ.get("PREFECT_API_URL"):
        summary, wct, default = bench(args.months, args.runs)
    else:
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the simulation's server
            try:
                summary, wct, default = bench(args.months, args.runs)
            finally:
                os.environ.pop("PREFECT_API_URL", None)
    wall, runs = float(summary["wall_seconds"]), int(summary["flow_runs"])
    print(f"simulated {summary['start']}..{summary['end']}: {runs} flow runs in {wall:.1f} s")
    print(f"no-op flow run, wct settings: median {wct * 1000:.1f} ms")
    print(f"no-op flow run, Prefect defaults: median {default * 1000:.1f} ms")
    print(f"simulate ratio (default) {wall / (runs * default):.2f}")
    print(f"simulate ratio {wall / (runs * wct):.2f}")


if __name__ == "__main__":
    main()
