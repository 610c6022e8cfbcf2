"""Durable timers: one future-scheduled run of the `step` flow (flows/steps.py) per step, keyed by
the database, the step and its due time, so a coordinator sees every deadline in the UI, each is
created once however often the flow that sets it runs, a step planned again for another time gets
a new timer (the old one finds nothing due and ends), and two databases sharing a Prefect server
never take each other's timers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prefect.deployments.flow_runs import arun_deployment
from prefect.runtime import flow_run as current_run
from sqlmodel import Session

from flows.runtime import database_tag, engine
from models.steps import PlannedStep, pending_steps, pending_until

STEP_DEPLOYMENT = "step/step"
STEP_TAG = "wct-step"


def database_run_tag() -> str:
    """The tag of this database's timers (`wct-db-3f2a9c0b1d`): to tell them apart from another
    database's on a shared Prefect server."""
    return f"wct-db-{database_tag()}"


def foreign_database_tag() -> str | None:
    """The database tag this run carries if it is another database's (a run left by one serving
    process and picked up by another that serves the same deployment name on a shared Prefect
    server): such a run must not act on this database. None when it is ours or untagged."""
    mine = database_run_tag()
    tags: list[str] = list(current_run.tags or [])
    return next((t for t in tags if t.startswith("wct-db-") and t != mine), None)


def timer_key(step: PlannedStep) -> str:
    """The timer's idempotency key: this database's, this step's, at this time."""
    return f"{database_tag()}:{step.key}@{step.due_at.isoformat()}"


async def schedule_timers(steps: Sequence[PlannedStep], *, as_of: datetime | None = None) -> int:
    """One future-scheduled `step` run per step, named for it (`board-2027-03-09-agenda`,
    `dispute-3-informal-deadline`) and keyed by it. Under an injected clock (simulation, tests)
    the timer carries its due time as the clock it acts by."""
    for step in steps:
        parameters: dict[str, Any] = {"key": step.key}
        if as_of is not None:
            parameters["as_of"] = step.due_at.isoformat()
        await arun_deployment(
            STEP_DEPLOYMENT,
            parameters=parameters,
            scheduled_time=step.due_at,
            idempotency_key=timer_key(step),
            flow_run_name=step.run_name,
            tags=[STEP_TAG, step.subject, database_run_tag()],
            timeout=0,
            as_subflow=False,  # a timer outlives the run that set it
        )
    return len(steps)


async def schedule_subject_timers(subject: str, *, as_of: datetime | None = None) -> int:
    """A timer for every pending step of `subject` (`dispute:3`)."""
    with Session(engine()) as session:
        steps = pending_steps(session, subject)
    return await schedule_timers(steps, as_of=as_of)


def pending(*, before: datetime) -> list[PlannedStep]:
    """Every step still waiting that is due before `before`: the timers a sweep makes sure of."""
    with Session(engine()) as session:
        return pending_until(session, before)
