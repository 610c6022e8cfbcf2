"""The dispatcher's deployment: drain the outbox every minute."""

from __future__ import annotations

from datetime import timedelta

from prefect.deployments.runner import RunnerDeployment

from deployments.common import deployment
from flows.dispatch import dispatch


def dispatch_deployments(
    every: timedelta = timedelta(minutes=1), *, for_workers: bool = False
) -> list[RunnerDeployment]:
    return [
        deployment(
            dispatch,
            "dispatch",
            for_workers=for_workers,
            interval=every,
            tags=["wct", "outbox"],
            description="Deliver due email and Teams messages from the outbox; retry; dead-letter.",
        )
    ]
