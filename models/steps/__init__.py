"""Steps: what a process owes at a time, recorded as `Step` rows and fired by one engine.

- `kind`: the types every step kind is declared with (a leaf: the domain modules import it);
- `planning`: recording steps, the times of day they fall at, whom they tell;
- `registry`: every kind, gathered from the domain modules that declare them next to their rules;
- `engine`: one step by key (a timer) or every due step (the sweep), by its kind's rules.

This package re-exports `kind` and `planning` only: the domain modules import them, and the
registry and the engine import the domain modules (`from models.steps.engine import run_step`).
"""

from __future__ import annotations

from models.steps.kind import (
    ALWAYS,
    GRACE,
    SAY_LATE,
    CoveredBy,
    DaysBefore,
    Firing,
    LatePolicy,
    NoParams,
    SkipRule,
    StepKind,
    StepParams,
    StepSpec,
    Subject,
    SupersededBy,
)
from models.steps.planning import (
    START_OF_DAY,
    Ladder,
    PlannedStep,
    as_planned,
    at_five,
    at_nine,
    body_members,
    due_steps,
    ladder_kinds,
    pending_steps,
    pending_until,
    plan,
    plan_deadline,
    role_holders,
    run_name,
)

__all__ = [
    "ALWAYS",
    "GRACE",
    "SAY_LATE",
    "START_OF_DAY",
    "CoveredBy",
    "DaysBefore",
    "Firing",
    "LatePolicy",
    "Ladder",
    "NoParams",
    "PlannedStep",
    "SkipRule",
    "StepKind",
    "StepParams",
    "StepSpec",
    "Subject",
    "SupersededBy",
    "as_planned",
    "at_five",
    "at_nine",
    "body_members",
    "due_steps",
    "ladder_kinds",
    "pending_steps",
    "pending_until",
    "plan",
    "plan_deadline",
    "role_holders",
    "run_name",
]
