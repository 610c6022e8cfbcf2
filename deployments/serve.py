"""The cycle deployments with their schedules, taken from the constitution, and the process that
serves them (`wct up`, `python -m deployments.serve`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.schedules import RRuleSchedule
from prefect.deployments.flow_runs import arun_deployment
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound

from deployments.cases import case_deployments
from deployments.common import deployment as common_deployment
from deployments.common import serve_until_stopped
from deployments.dispatch import dispatch_deployments
from deployments.steps import retire_old_deployments, step_deployments
from flows.cycles import (
    CYCLE_TAG,
    annual_review,
    meeting_cycle,
    quarterly_reports,
    record_meeting,
)
from flows.timers import STEP_TAG
from models.constitution import Constitution, load_constitution
from models.reports import closing_months

# A review's run opens it `opens_before_days` (default 45) before it is due: after the
# scheduler's 100-day horizon shows it, before its notice (20 working days) falls due.
REVIEW_LEAD = timedelta(days=45)
# Reports for a period are opened on the first day of its last month.
QUARTERLY_RULE = "DTSTART:20260301T090000\nRRULE:FREQ=MONTHLY;BYMONTH=3,6,9,12;BYMONTHDAY=1"


def quarterly_rule(c: Constitution) -> str:
    """The first day of every month that closes some report's period (default: quarters)."""
    months = closing_months(c)
    by_month = ",".join(str(m) for m in months)
    return (
        f"DTSTART:2026{months[0]:02d}01T090000\nRRULE:FREQ=MONTHLY;BYMONTH={by_month};BYMONTHDAY=1"
    )


def _rrule(rule: str, c: Constitution) -> RRuleSchedule:
    """A schedule whose wall times are the partnership's (`partnership.time_zone`): a cycle runs
    at its meeting's local time, and the reports and reviews open at 09:00 local time."""
    return RRuleSchedule(rrule=rule, timezone=c.partnership.time_zone)


def meeting_rule(c: Constitution, body_id: str) -> str | None:
    """The body's cadence as a schedule: each run at a meeting plans the next meetings."""
    cadence = c.body(body_id).cadence
    if cadence is None:
        return None
    return f"DTSTART:{cadence.first:%Y%m%dT%H%M%S}\nRRULE:{cadence.rrule}"


def review_rule(due_month: int, due_day: int, lead: timedelta = REVIEW_LEAD) -> str:
    opens = date(2027, due_month, due_day) - lead
    return (
        f"DTSTART:{opens:%Y%m%d}T090000\n"
        f"RRULE:FREQ=YEARLY;BYMONTH={opens.month};BYMONTHDAY={opens.day}"
    )


def cycle_deployments(
    constitution: Constitution | None = None, *, for_workers: bool = False
) -> list[RunnerDeployment]:
    """One deployment per body's meetings and per annual review, on the constitution's
    schedules; the quarterly reports; and the meeting record form. `for_workers`: flows named
    by module path, so a worker anywhere wct is installed runs them."""
    c = constitution or load_constitution()
    tags = [CYCLE_TAG]

    def deployment(flow: Flow[Any, Any], name: str, **options: Any) -> RunnerDeployment:
        return common_deployment(flow, name, for_workers=for_workers, **options)

    made = [
        deployment(record_meeting, "record-meeting", tags=tags),
        deployment(
            quarterly_reports,
            "quarterly-reports",
            tags=tags,
            schedules=[_rrule(quarterly_rule(c), c)],
        ),
    ]
    for body in c.bodies:
        rule = meeting_rule(c, body.id)
        if rule is None:
            continue
        made.append(
            deployment(
                meeting_cycle,
                body.id,
                tags=tags,
                parameters={"body": body.id},
                schedules=[_rrule(rule, c)],
                description=f"Meetings of {body.name}",
            )
        )
    for review in c.reviews:
        made.append(
            deployment(
                annual_review,
                review.id,
                tags=tags,
                parameters={"kind": review.id},
                schedules=[
                    _rrule(
                        review_rule(
                            review.due_month,
                            review.due_day,
                            timedelta(days=review.opens_before_days),
                        ),
                        c,
                    )
                ],
                description=f"{review.title} ({review.clause})",
            )
        )
    return made


def all_deployments(
    constitution: Constitution | None = None, *, for_workers: bool = False
) -> list[RunnerDeployment]:
    """The cycles, the cases, the step timer and the sweep, and the dispatcher: everything
    `wct up` serves."""
    return (
        cycle_deployments(constitution, for_workers=for_workers)
        + case_deployments(for_workers=for_workers)
        + step_deployments(for_workers=for_workers)
        + dispatch_deployments(for_workers=for_workers)
    )


async def catch_up(deployments: list[RunnerDeployment]) -> list[str]:
    """Retire the deployments of an earlier wct's two step engines, register the deployments,
    then start the sweep once now: it plans every cycle (what each cycle's own run does), acts
    on every step missed while stopped, by the late rules, and sets every timer (again, under
    `step/step`, for an installation upgraded in place). One run, not one per cycle: on a small
    machine, with runs one at a time, the first dispatch is not kept waiting behind a queue of
    catch-up runs. Returns the names of the deployments retired."""
    retired = await retire_old_deployments()
    for made in deployments:
        await made.aapply()
    await arun_deployment(
        "sweep/sweep", timeout=0, tags=[STEP_TAG, "catch-up"], flow_run_name="catch-up-sweep"
    )
    return retired


async def register_on_pool(deployments: list[RunnerDeployment], pool: str) -> bool:
    """Register the deployments on a work pool (a process pool is created if missing), so that
    Prefect workers polling it run them. Returns True if the pool was created."""
    created = False
    async with get_client() as client:
        try:
            await client.read_work_pool(pool)
        except ObjectNotFound:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            created = True
    for made in deployments:
        await made.aapply(work_pool_name=pool)
    return created


def main() -> None:
    """Serve every deployment of the shipped constitution (`python -m deployments.serve`)."""
    from models.config import get_settings

    serve_until_stopped(all_deployments(), limit=get_settings().run_limit)


if __name__ == "__main__":
    main()
