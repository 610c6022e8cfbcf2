"""The forward look as Prefect artifacts: one table per body (`board-forward-look`), replaced on
every sweep, of everything due in the next weeks (models/upcoming.py decides what is due)."""

from __future__ import annotations

import re
from datetime import datetime

from prefect.artifacts import acreate_table_artifact
from sqlmodel import Session

from flows.runtime import engine
from models.commands import current_constitution
from models.upcoming import DEFAULT_DAYS, Upcoming, upcoming


def artifact_key(body_id: str) -> str:
    """`board-forward-look`: a stable key per body (Prefect keys: lowercase letters, digits and
    dashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", body_id.lower()).strip("-")
    return f"{slug}-forward-look"


def table_row(row: Upcoming) -> dict[str, str]:
    return {"Date": row.day, "What": f"{row.due.value}: {row.what}", "Waits on": row.waits_on}


async def publish_forward_look(now: datetime, days: int = DEFAULT_DAYS) -> dict[str, int]:
    """One table artifact per body of what falls due in the next `days` days (an empty table
    when nothing does, so an old look never lingers); returns the rows per artifact key."""
    with Session(engine()) as session:
        rows = upcoming(session, now=now, days=days)
        bodies = {b.id: b.name for b in current_constitution(session).bodies}
    published: dict[str, int] = {}
    for body_id, name in bodies.items():
        mine = [table_row(r) for r in rows if r.body == body_id]
        key = artifact_key(body_id)
        await acreate_table_artifact(
            mine or [{"Date": "-", "What": "nothing due", "Waits on": "-"}],
            key=key,
            description=f"{name}: due in the {days} days from {now:%a %-d %b %Y}",
        )
        published[key] = len(mine)
    return published
