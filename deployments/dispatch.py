"""The dispatcher's deployment: drain the outbox every minute (found by deployments/serve.py)."""

from __future__ import annotations

from datetime import timedelta

from prefect.deployments.runner import RunnerDeployment

from flows.dispatch import dispatch


def dispatch_deployments(every: timedelta = timedelta(minutes=1)) -> list[RunnerDeployment]:
    made = dispatch.to_deployment(
        name="dispatch",
        interval=every,
        tags=["wct", "outbox"],
        description="Deliver due email and Teams messages from the outbox; retry; dead-letter.",
    )
    assert isinstance(made, RunnerDeployment)
    return [made]
