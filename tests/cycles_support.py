"""Helpers for the cycle tests: a partnership with people in it, runs, state snapshots, and the
artifacts the flows publish."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.client.orchestration import PrefectClient, get_client
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.clock import LONDON, FixedClock
from models.tables import OutboxMessage, Person, Step

from .cases_support import import_members_file, run, state
from .conftest import DATA

__all__ = ["london", "populate", "recipients", "run", "state", "step_status"]


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def populate(engine: Engine, clock: FixedClock) -> None:
    import_members_file(engine, clock, DATA / "cycles-members.csv")


def recipients(engine: Engine, kind: str, key_prefix: str = "") -> list[str]:
    """Sorted emails of those a message of `kind` (keys starting `key_prefix`) was queued for."""
    with Session(engine) as session:
        rows = session.exec(
            select(Person.email)
            .join(OutboxMessage, col(OutboxMessage.person_id) == col(Person.id))
            .where(OutboxMessage.kind == kind, col(OutboxMessage.key).startswith(key_prefix))
        ).all()
    return sorted(rows)


def step_status(engine: Engine, key: str) -> str:
    with Session(engine) as session:
        return session.exec(select(Step.status).where(Step.key == key)).one()


def fire(engine: Engine, clock: FixedClock, key: str) -> str:
    """Move the clock to the step's due time (if it is not there yet) and fire its timer."""
    from models.steps.engine import run_step

    with Session(engine) as session:
        step = session.exec(select(Step).where(Step.key == key)).one()
    if clock.now() < step.due_at:
        clock.set(step.due_at)
    return run_step(engine, clock, key).result


async def latest_artifact(client: PrefectClient, key: str) -> dict[str, Any]:
    """The latest artifact with `key`, as the API gives it (the client's filter drops flow-level
    artifacts: it always joins task runs, so ask the API directly)."""
    response = await client._client.post(
        "/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
    )
    found = response.json()
    assert found, f"no artifact {key}"
    return dict(found[0])


async def artifact(key: str) -> str:
    """The text of the latest artifact with `key`."""
    async with get_client() as client:
        return str((await latest_artifact(client, key))["data"])
