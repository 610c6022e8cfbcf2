"""The case deployments: opening forms in the UI, and following a case opened elsewhere."""

from __future__ import annotations

from typing import Any

from prefect.deployments.runner import RunnerDeployment

from deployments.common import deployment, serve_until_stopped
from deployments.steps import step_deployments
from flows.cases import (
    CASE_TAG,
    approval_case,
    call_to_account_case,
    dispute_case,
    follow_case,
    risk_case,
)


def case_deployments(*, for_workers: bool = False) -> list[RunnerDeployment]:
    """One deployment per case kind (typed parameters render as a form), and the follower."""
    common: dict[str, Any] = {"tags": [CASE_TAG], "for_workers": for_workers}
    return [
        deployment(dispute_case, "dispute", **common),
        deployment(call_to_account_case, "call-to-account", **common),
        deployment(risk_case, "risk", **common),
        deployment(approval_case, "approval", **common),
        deployment(follow_case, "follow-case", **common),
    ]


def main() -> None:
    """Serve the case deployments with the step timer and the sweep (until stopped)."""
    serve_until_stopped([*case_deployments(), *step_deployments()])  # timers outlive it


if __name__ == "__main__":
    main()
