"""What a served flow run costs `wct up`: a new process per run, against Prefect's own.

`wct up` serves its deployments with Prefect's runner, which starts each flow run as a new
process (`python -m prefect.engine`, with the flow run's id and the runner's settings in its
environment): the process imports Prefect and the flow's module, connects, runs, reports. This
bench makes flow runs of three deployments on the same Prefect server and runs each in such a
process, in turns (each round in a rotated order), timing the process from start to exit:
  - `served no-op`: a no-op flow from a module that imports only Prefect, under the settings
    `wct up` gives its runs (`deployments.server.api`: no CA bundle for a plain-http API here);
  - `served step`: wct's `step/step` deployment acting on a due step (a quarterly report's
    request or reminder) in a temporary SQLite database, under the same settings;
  - `served no-op (Prefect defaults)`: the no-op flow under Prefect's own settings.
Prints the median wall time and CPU time of each, then, as its last lines,

    served step ratio R     served step / served no-op, both under wct's settings
    served no-op saving S   served no-op under Prefect's defaults / under wct's settings

    python bench/served_run.py [--runs 10]

Run it from the repository's root (the runs load their flows by path from there). Uses
PREFECT_API_URL when set, else a temporary local server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect import flow

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

sys.path.insert(0, str(Path(__file__).resolve().parent))

ARMS = ("served no-op", "served step", "served no-op (Prefect defaults)")


@flow(name="bench-served-noop")
async def noop() -> None:
    """A plain Prefect flow: the served run's floor (this module imports only Prefect)."""
    return None


def environment(api_url: str, *, wct: bool) -> dict[str, str]:
    """The environment a runner gives a flow run's process: its own, then its settings."""
    from prefect.settings import get_current_settings, temporary_settings

    from deployments.server import api

    if wct:
        with api(api_url):
            settings = get_current_settings().to_environment_variables(exclude_unset=True)
    else:
        from prefect.settings import PREFECT_API_URL

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            settings = get_current_settings().to_environment_variables(exclude_unset=True)
    return {**os.environ, **{k: str(v) for k, v in settings.items() if v is not None}}


async def flow_runs(
    deployments: list[RunnerDeployment], steps: list[tuple[str, Any]], runs: int
) -> dict[str, list[UUID]]:
    """`runs + 1` flow runs of each arm's deployment (the first of each warms the disk cache)."""
    from prefect.client.orchestration import get_client

    step_deployment, noop_deployment = [await d.aapply() for d in deployments]
    made: dict[str, list[UUID]] = {arm: [] for arm in ARMS}
    async with get_client() as client:
        for n in range(runs + 1):
            key, due = steps[n]
            parameters = {"key": key, "as_of": due.isoformat()}
            run = await client.create_flow_run_from_deployment(
                step_deployment, parameters=parameters
            )
            made["served step"].append(run.id)
            for arm in ("served no-op", "served no-op (Prefect defaults)"):
                made[arm].append((await client.create_flow_run_from_deployment(noop_deployment)).id)
    return made


def run_process(flow_run: UUID, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one flow run's process, as a runner starts it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "prefect.engine"],
        env={**env, "PREFECT__FLOW_RUN_ID": str(flow_run)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"flow run {flow_run} failed:\n{done.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


async def final_states(made: dict[str, list[UUID]]) -> set[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {
            str((await client.read_flow_run(run)).state_name)
            for runs in made.values()
            for run in runs
        }


def measure(api_url: str, runs: int) -> dict[str, list[tuple[float, float]]]:
    from step_overhead import prepare

    with tempfile.TemporaryDirectory(prefix="wct-bench-served-") as tmp:
        steps = prepare(Path(tmp), quarters=max(1, (runs + 1) // 30 + 1))
        from deployments.common import deployment
        from deployments.steps import step_deployments

        deployments = [step_deployments(sweep_every=None)[0], deployment(noop, "bench")]
        made = asyncio.run(flow_runs(deployments, steps, runs))
        envs = {
            "served no-op": environment(api_url, wct=True),
            "served step": environment(api_url, wct=True),
            "served no-op (Prefect defaults)": environment(api_url, wct=False),
        }
        times: dict[str, list[tuple[float, float]]] = {arm: [] for arm in ARMS}
        for n in range(runs + 1):
            order = ARMS[n % 3 :] + ARMS[: n % 3]
            for arm in order:
                measured = run_process(made[arm][n], envs[arm])
                if n >= 1:
                    times[arm].append(measured)
        states = asyncio.run(final_states(made))
    if states != {"Completed"}:
        raise SystemExit(f"not every flow run completed: {sorted(states)}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="flow runs of each arm")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    if Path.cwd() != root:
        raise SystemExit(f"run it from the repository's root: cd {root}")
    sys.path.insert(0, str(root))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    given = os.environ.get("PREFECT_API_URL")
    if given:
        times = measure(given, args.runs)
    else:
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            times = measure(str(PREFECT_API_URL.value()), args.runs)
    medians: dict[str, float] = {}
    for arm in ARMS:
        walls = [wall for wall, _ in times[arm]]
        cpus = [cpu for _, cpu in times[arm]]
        q1, medians[arm], q3 = statistics.quantiles(walls, n=4)
        print(
            f"{arm}: median {medians[arm]:.2f} s (quartiles {q1:.2f}-{q3:.2f}), "
            f"cpu {statistics.median(cpus):.2f} s"
        )
    print(f"served step ratio {medians['served step'] / medians['served no-op']:.2f}")
    default = medians["served no-op (Prefect defaults)"]
    print(f"served no-op saving {default / medians['served no-op']:.2f}")


if __name__ == "__main__":
    main()
