"""The step engine's deployments: the timer `step/step` (each step's timer is a future-scheduled
run of it) and the sweep `sweep/sweep`, every 15 minutes; and the retirement of the four
deployments they replace, on an installation upgraded in place."""

from __future__ import annotations

from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound

from deployments.common import deployment
from flows.steps import step, sweep
from flows.timers import STEP_TAG

SWEEP_EVERY = timedelta(minutes=15)
#: Before one step engine served cycles and cases, each had its own timer and sweep.
RETIRED = (
    "cycle-step/cycle-step",
    "case-step/case-step",
    "cycle-reconcile/cycle-reconcile",
    "case-reconcile/case-reconcile",
)


def step_deployments(
    *, sweep_every: timedelta | None = SWEEP_EVERY, for_workers: bool = False
) -> list[RunnerDeployment]:
    """The timer and the sweep (`sweep_every=None`: registered without a schedule)."""
    schedule = {} if sweep_every is None else {"interval": sweep_every}
    return [
        deployment(
            step,
            "step",
            for_workers=for_workers,
            tags=[STEP_TAG],
            description="A step's timer: acts on the step once when it comes due.",
        ),
        deployment(
            sweep,
            "sweep",
            for_workers=for_workers,
            tags=[STEP_TAG],
            description="Re-plans the cycles, acts on steps whose timers were lost, sets timers.",
            **schedule,
        ),
    ]


async def retire_old_deployments() -> list[str]:
    """Delete the deployments an earlier wct registered for its two step engines, if present
    (the server deletes their scheduled runs with them: the sweep sets those timers again under
    `step/step`, a new flow, so the same keys make new runs once). Returns the names deleted."""
    retired = []
    async with get_client() as client:
        for name in RETIRED:
            try:
                old = await client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            await client.delete_deployment(old.id)
            retired.append(name)
    return retired
