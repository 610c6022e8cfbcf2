"""Every kind of step, gathered from the domain modules that declare them next to their rules:
the one table the step engine looks a step's kind up in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from models import accountability, approvals, disputes, reports, reviews, risks
from models.errors import NotFound
from models.meetings import actions as meeting_actions
from models.meetings import steps as meeting_steps
from models.steps.kind import StepKind


def _by_name(kinds: Iterable[StepKind[Any]]) -> Mapping[str, StepKind[Any]]:
    found: dict[str, StepKind[Any]] = {}
    for kind in kinds:
        if kind.name in found:
            raise ValueError(f"step kind '{kind.name}' is declared twice")
        found[kind.name] = kind
    return found


KINDS: Mapping[str, StepKind[Any]] = _by_name(
    [
        *meeting_steps.STEP_KINDS,
        *reports.STEP_KINDS,
        *reviews.STEP_KINDS,
        *disputes.STEP_KINDS,
        *accountability.STEP_KINDS,
        *risks.STEP_KINDS,
        *approvals.STEP_KINDS,
        *meeting_actions.STEP_KINDS,
    ]
)


def kind_of(name: str) -> StepKind[Any]:
    """The registered kind `name`, or a clear error naming the kinds there are."""
    try:
        return KINDS[name]
    except KeyError:
        raise NotFound(f"no step kind '{name}' (known: {', '.join(sorted(KINDS))})") from None
