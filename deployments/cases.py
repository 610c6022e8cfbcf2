"""The case deployments: opening forms in the UI, the case timer, and the reconcile sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from deployments.common import deployment
from flows.cases import (
    CASE_TAG,
    approval_case,
    call_to_account_case,
    case_reconcile,
    case_step,
    dispute_case,
    follow_case,
    risk_case,
)

RECONCILE_EVERY = timedelta(minutes=15)


def case_deployments(
    *, reconcile_every: timedelta = RECONCILE_EVERY, for_workers: bool = False
) -> list[RunnerDeployment]:
    """One deployment per case kind (typed parameters render as a form), plus timer and sweep."""
    common: dict[str, Any] = {"tags": [CASE_TAG], "for_workers": for_workers}
    return [
        deployment(dispute_case, "dispute", **common),
        deployment(call_to_account_case, "call-to-account", **common),
        deployment(risk_case, "risk", **common),
        deployment(approval_case, "approval", **common),
        deployment(follow_case, "follow-case", **common),
        deployment(case_step, "case-step", **common),
        deployment(case_reconcile, "case-reconcile", interval=reconcile_every, **common),
    ]


def main() -> None:
    """Serve the case deployments (until stopped)."""
    serve(*case_deployments(), pause_on_shutdown=False)  # timers outlive a restart


if __name__ == "__main__":
    main()
