"""What `wct simulate` costs against Prefect's own cost of the flow runs it makes.

Runs the simulation of the shipped constitution over a period (default 2027-01-01..2027-12-31)
and, every `--probe-every` events of it, one no-op async flow run under wct's settings (one
client, its own result storage, no persisted result, Prefect's logs at WARNING) on a thread of its
own while the simulation waits: the baseline, measured on the same server at the same moments as
the simulation, because this machine's speed drifts by up to 2x over a minute (a block of no-op
runs on one idle server went from 63 to 40 ms per run in four minutes). The probes' time is taken
out of the simulation's wall time, their CPU out of its CPU times, and their runs are not the
simulation's (not tagged with it, not counted). Then, in the same process and against the same
server, no-op runs under wct's settings and under Prefect's defaults (a new client per run, the
default result storage looked up, INFO logs) in turns. Prints the simulation's figures and, as its
last lines,

    simulate ratio (default) R          wall / (flow runs x default no-op run median, after it)
    simulate ratio, after it R          wall / (flow runs x wct no-op run median, after it)
    simulate ratio R                    wall / (flow runs x median of the wct no-op runs between
                                        the simulation's events): the goal, <= 1.3

and, before them, where the time went when the bench runs its own server (a child process whose
CPU time this process can read, on Linux): the CPU time of this process (the simulation: Prefect's
client and wct) and of the Prefect server, for the simulation and for a block of wct no-op runs.
The server's part of the simulation, `simulate ratio, server CPU alone S` = the server's CPU time
for the simulation / (flow runs x wct no-op run median), is what the ratio would be if everything
this process does cost nothing and the server never waited for it.

    python bench/simulate.py [--months 12] [--runs 30] [--probe-every 10]

wct's settings are in the environment before Prefect is imported. Uses PREFECT_API_URL when set,
else, for the whole bench, the server `wct simulate` makes for itself when it is not given one
(deployments.server.throwaway_server: Prefect's test harness without the services nobody can
watch on it).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def _cpu_of(pid: int) -> float:
    """CPU seconds so far of process `pid`, from /proc/PID/stat (utime, stime: fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu() -> float | None:
    """CPU seconds so far of this process's child processes (the bench's own Prefect server and
    its workers), or None where /proc cannot tell (not Linux, or the server is another's)."""
    try:
        children = [
            int(pid)
            for task in Path(f"/proc/{os.getpid()}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        return sum(_cpu_of(pid) for pid in children) if children else None
    except OSError:
        return None


class CpuTimes:
    """CPU seconds of this process and of its server over a block of work."""

    def __init__(self) -> None:
        self.client = self.server = 0.0
        self.known = False

    def __enter__(self) -> CpuTimes:
        self._client, self._server = time.process_time(), server_cpu()
        return self

    def __exit__(self, *_: object) -> None:
        self.client = time.process_time() - self._client
        after = server_cpu()
        self.known = self._server is not None and after is not None
        if self.known:
            self.server = (after or 0.0) - (self._server or 0.0)


class Probes:
    """The simulation's `progress` callback: every `every` events, one wct no-op flow run on a
    thread of its own (its own event loop and client) while the simulation waits for it; the
    runs' wall times, and the wall and CPU time the simulation spent waiting for them."""

    def __init__(self, every: int) -> None:
        self.every, self.events = every, 0
        self.walls: list[float] = []
        self.wall = self.client = self.server = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[concurrent.futures.Future[float] | None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        from step_overhead import noop_flows

        from flows.runtime import one_client

        wct_noop, _ = noop_flows()
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        async with one_client():
            await wct_noop()  # warm: the probes' client, flow and storage
            self._ready.set()
            while (asked := await self._queue.get()) is not None:
                started = time.perf_counter()
                try:
                    await wct_noop()
                except BaseException as exc:  # told to the simulation's thread, which stops
                    asked.set_exception(exc)
                    raise
                asked.set_result(time.perf_counter() - started)

    @contextmanager
    def running(self) -> Iterator[Probes]:
        self._thread.start()
        if not self._ready.wait(120):
            raise SystemExit("the probes' thread did not start")
        try:
            yield self
        finally:
            assert self._loop is not None and self._queue is not None
            if self._thread.is_alive():  # not after a failed probe, which ended it
                self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
            self._thread.join(60)

    def __call__(self, _when: object, _summary: object) -> None:
        self.events += 1
        if self.events % self.every:
            return
        assert self._loop is not None and self._queue is not None
        asked: concurrent.futures.Future[float] = concurrent.futures.Future()
        with CpuTimes() as spent:
            started = time.perf_counter()
            self._loop.call_soon_threadsafe(self._queue.put_nowait, asked)
            self.walls.append(asked.result(timeout=120))
            self.wall += time.perf_counter() - started
        self.client += spent.client
        self.server += spent.server


async def noop_block(runs: int) -> CpuTimes:
    """`runs` wct no-op runs one after another, with their CPU times."""
    from step_overhead import noop_flows

    from flows.runtime import one_client

    wct_noop, _ = noop_flows()
    async with one_client():
        await wct_noop()
        with CpuTimes() as times:
            for _ in range(runs):
                await wct_noop()
    return times


async def noop_medians(runs: int) -> tuple[float, float]:
    """Median wall time of a no-op flow run under wct's settings and under Prefect's defaults."""
    import contextvars
    import logging

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


def bench(
    months: int, runs: int, every: int
) -> tuple[dict[str, Any], float, Probes, float, float, CpuTimes, CpuTimes]:
    from deployments.cli_cycles import run_simulation
    from models.constitution import load_constitution

    probes = Probes(every)
    with tempfile.TemporaryDirectory(prefix="wct-bench-simulate-") as tmp:
        with probes.running(), CpuTimes() as simulated:
            started = time.perf_counter()
            summary = run_simulation(
                load_constitution(), START, period_end(months), 7, Path(tmp), progress=probes
            )
            wall = time.perf_counter() - started - probes.wall
        simulated.client -= probes.client
        simulated.server -= probes.server
        wct, default = asyncio.run(noop_medians(runs))
        noop = asyncio.run(noop_block(runs))
    return summary, wall, probes, wct, default, simulated, noop


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--runs", type=int, default=30, help="no-op runs of each kind after it")
    parser.add_argument(
        "--probe-every", type=int, default=10, help="a no-op run every N simulated events"
    )
    args = parser.parse_args()
    for name, value in WCT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if os.environ.get("PREFECT_API_URL"):
        figures = bench(args.months, args.runs, args.probe_every)
    else:
        from deployments.server import throwaway_server

        with throwaway_server() as api_url:  # the server `wct simulate` makes for itself
            os.environ["PREFECT_API_URL"] = api_url  # the simulation's server
            try:
                figures = bench(args.months, args.runs, args.probe_every)
            finally:
                os.environ.pop("PREFECT_API_URL", None)
    summary, wall, probes, wct, default, simulated, noop = figures
    runs, between = int(summary["flow_runs"]), statistics.median(probes.walls)
    print(
        f"simulated {summary['start']}..{summary['end']}: {runs} flow runs in {wall:.1f} s "
        f"(without the {len(probes.walls)} no-op runs between its events, {probes.wall:.1f} s)"
    )
    print(f"no-op flow run, wct settings, between its events: median {between * 1000:.1f} ms")
    print(f"no-op flow run, wct settings, after it: median {wct * 1000:.1f} ms")
    print(f"no-op flow run, Prefect defaults, after it: median {default * 1000:.1f} ms")
    print(
        f"CPU per flow run, this process: simulation {simulated.client / runs * 1000:.1f} ms, "
        f"wct no-op {noop.client / args.runs * 1000:.1f} ms"
    )
    if simulated.known and noop.known:
        print(
            f"CPU per flow run, Prefect server: simulation {simulated.server / runs * 1000:.1f} "
            f"ms, wct no-op {noop.server / args.runs * 1000:.1f} ms"
        )
        print(f"simulate ratio, server CPU alone {simulated.server / (runs * between):.2f}")
    print(f"simulate ratio (default) {wall / (runs * default):.2f}")
    print(f"simulate ratio, after it {wall / (runs * wct):.2f}")
    print(f"simulate ratio {wall / (runs * between):.2f}")


if __name__ == "__main__":
    main()
