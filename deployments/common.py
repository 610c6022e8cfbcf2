"""What every deployment module shares."""

from __future__ import annotations

from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
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
