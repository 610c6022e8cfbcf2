"""What every deployment module shares."""

from __future__ import annotations

from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment


def deployment(flow: Flow[Any, Any], name: str, **options: Any) -> RunnerDeployment:
    """`flow.to_deployment` from synchronous code (Prefect types it as maybe-awaitable)."""
    made = flow.to_deployment(name=name, **options)
    assert isinstance(made, RunnerDeployment)
    return made
