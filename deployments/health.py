"""Gather what `wct status` and the `wct up` console judge (models/health.py): the Prefect server,
its scheduler, the last dispatch, and the outbox backlog."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.client.schemas.sorting import DeploymentSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from sqlalchemy.engine import Engine
from sqlmodel import Session

from deployments.server import api, healthy
from models import outbox
from models.health import ChannelDown, RuntimeFacts, ScheduledDeployment

DISPATCH = "dispatch/dispatch"


def outbox_backlog(engine: Engine | None, now: datetime) -> tuple[int, datetime | None]:
    if engine is None:
        return 0, None
    with Session(engine) as session:
        return outbox.due_backlog(session, now=now)


def channels_down(engine: Engine | None) -> list[ChannelDown]:
    """The delivery channels whose circuit breaker is open (their messages wait)."""
    if engine is None:
        return []
    with Session(engine) as session:
        return [
            ChannelDown(b.channel, b.since, b.refused, b.next_probe_at, b.last_error)
            for b in outbox.breakers(session).values()
            if b.open
        ]


async def gather(
    api_url: str | None, *, engine: Engine | None, now: datetime, log: str | None = None
) -> RuntimeFacts:
    """Observe the server (if it answers) and the outbox at `now`."""
    due, oldest = outbox_backlog(engine, now)
    down = channels_down(engine)
    if api_url is None or not healthy(api_url):
        return RuntimeFacts(
            api_url, False, log, oldest_due_unsent=oldest, due_unsent=due, channels_down=down
        )
    try:
        facts = await _observe(api_url, now=now, log=log, due=due, oldest=oldest)
        return replace(facts, channels_down=down)
    except Exception as exc:  # a health check reports what it cannot read; it never crashes
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return RuntimeFacts(
            api_url,
            True,
            log,
            oldest_due_unsent=oldest,
            due_unsent=due,
            unreadable=reason,
            channels_down=down,
        )


async def _observe(
    api_url: str, *, now: datetime, log: str | None, due: int, oldest: datetime | None
) -> RuntimeFacts:
    with api(api_url):
        async with get_client() as client:
            scheduled: list[ScheduledDeployment] = []
            ids = []
            for d in await client.read_deployments(limit=200, sort=DeploymentSort.NAME_ASC):
                intervals = [
                    s.schedule.interval.total_seconds()
                    for s in d.schedules
                    if s.active and isinstance(s.schedule, IntervalSchedule)
                ]
                if not intervals or d.paused:
                    continue
                ids.append(d.id)
                ahead = await client.count_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        deployment_id=FlowRunFilterDeploymentId(any_=[d.id]),
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                        ),
                        expected_start_time=FlowRunFilterExpectedStartTime(after_=now),
                    )
                )
                registered = d.updated or d.created or now
                scheduled.append(
                    ScheduledDeployment(f"{d.name}", min(intervals), registered, int(ahead))
                )
            created = None
            if ids:
                runs = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        deployment_id=FlowRunFilterDeploymentId(any_=ids)
                    ),
                    sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                    limit=200,
                )
                stamps = [r.created for r in runs if r.auto_scheduled and r.created]
                created = max(stamps) if stamps else None
            last_dispatch = None
            try:
                dispatch = await client.read_deployment_by_name(DISPATCH)
            except ObjectNotFound:
                dispatch = None
            if dispatch is not None:
                done = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        deployment_id=FlowRunFilterDeploymentId(any_=[dispatch.id]),
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.COMPLETED])
                        ),
                    ),
                    sort=FlowRunSort.END_TIME_DESC,
                    limit=1,
                )
                last_dispatch = done[0].end_time if done else None
    return RuntimeFacts(
        api_url,
        True,
        log,
        scheduled=scheduled,
        last_runs_created_at=created,
        last_dispatch_at=last_dispatch,
        oldest_due_unsent=oldest,
        due_unsent=due,
    )
