"""The step engine as two Prefect flows, for cycles and cases alike:

- `step`, the timer: a future-scheduled run of it per step (flows/timers.py), named for the step
  (`board-2027-03-09-agenda`, `dispute-3-informal-deadline`), acts on the step once when it
  comes due, by its kind's rules (models/steps/engine.py);
- `sweep`, every 15 minutes: whatever a lost timer or a failed run left undone.

Orchestration only: what a step does, and whether it is late, too late or already satisfied, is
decided in models/; these flows say when, and show and tell what changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger

from flows.cases import describe_waits, follow_unwatched, follow_up, stale_subjects
from flows.cycles import ensure_cycles, publish_overdue_list, publish_step_artifacts
from flows.forward_look import publish_forward_look
from flows.runtime import (
    RETRIES,
    RETRY_DELAY,
    clock_at,
    engine,
    partnership_time,
    until_due,
    wct_flow,
)
from flows.signals import relay
from flows.timers import foreign_database_tag, pending, schedule_timers
from models.steps.engine import run_due, run_step

# The sweep re-creates any lost timer due within this horizon (the cycles create them all).
TIMER_HORIZON = timedelta(days=35)


@wct_flow("step", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
async def step(key: str, as_of: datetime | None = None, timers: bool = True) -> str:
    """A step comes due: act on it once (or find it satisfied, or too late to be of use), relay
    what changed, show a meeting's agenda, and for a case set the timers of its new deadlines
    and wake its run. A second run of the same step does nothing. Its timer names the run for
    what it is about (`board-2027-03-09-agenda`, flows/timers.py) when it creates it: the flow
    has no `flow_run_name`, which would cost every run a rename request (and a result store)."""
    with partnership_time():
        foreign = foreign_database_tag()
        if foreign is not None:
            get_run_logger().warning(
                "step %s is a timer of database %s, not this one: ignored", key, foreign
            )
            return "another database's timer"
        await until_due(key, as_of)
        outcome = run_step(engine(), clock_at(as_of), key)
        get_run_logger().info("step %s: %s", key, outcome.result)
        relay(engine())
        await publish_step_artifacts([outcome])
        if outcome.changed_a_case and timers:
            await follow_up([outcome.subject], as_of=as_of)
        return outcome.result


@wct_flow("sweep", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
async def sweep(
    as_of: datetime | None = None, timers: bool = True, cycles: bool = True
) -> dict[str, Any]:
    """Every 15 minutes: re-plan every cycle (so a cycle run that failed is repaired), act on
    every step whose time passed without its timer run (server down, run deleted) by the late
    rules, set the timers of cases that moved and wake their runs, make sure every pending step
    due soon has its timer, start a visible run for every open case nobody follows, and publish
    the overdue list and each body's forward look."""
    with partnership_time():
        clock = clock_at(as_of)
        problems = ensure_cycles(clock) if cycles else []
        for problem in problems:
            get_run_logger().warning("%s", problem)
        done = run_due(engine(), clock)
        for run in done:
            if run.result == "failed":  # rolled back alone; the next sweep tries it again
                get_run_logger().warning("step %s failed: %s", run.key, run.error)
        relay(engine())
        await publish_step_artifacts(done)
        moved = {run.subject for run in done if run.changed_a_case} | await stale_subjects()
        woken = await follow_up(moved, as_of=as_of) if timers else 0
        horizon = clock.now() + TIMER_HORIZON
        ensured = await schedule_timers(pending(before=horizon), as_of=as_of) if timers else 0
        followed = await follow_unwatched()
        described = await describe_waits()
        overdue = await publish_overdue_list(clock.now())
        ahead = await publish_forward_look(clock.now())
        return {
            "acted": [r.key for r in done if r.result == "acted"],
            "skipped": [r.key for r in done if r.result == "skipped"],
            "failed": [r.key for r in done if r.result == "failed"],
            "timers": ensured,
            "woken": woken,
            "followed": followed,
            "described": described,
            "overdue": overdue,
            "ahead": ahead,
            "problems": problems,
        }
