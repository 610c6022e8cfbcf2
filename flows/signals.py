"""Prefect events that mirror the audit trail, for the UI's event feed and for automations.

The database is the record; events are signals. Every audited change becomes one event, whatever
made it (a flow, the CLI, the sweep): the relay emits the audit events after a cursor and moves
the cursor in the same transaction. A crash between the two re-emits a few events; none is lost.
"""

from __future__ import annotations

import json
from typing import TypeVar

import sqlalchemy as sa
from prefect.events import emit_event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from flows.runtime import engine as wct_engine
from models.clock import Clock
from models.permissions import Principal
from models.service import Command, execute
from models.tables import SignalCursor

T = TypeVar("T")

CURSOR = "prefect-events"
BATCH = 500


def resource_id(subject: str) -> str:
    """The Prefect resource an audit subject is (`meeting:12` -> `wct.meeting.12`): what an
    automation or the UI's event feed filters on."""
    return "wct." + subject.replace(":", ".")


def relay(engine: Engine) -> int:
    """Emit `wct.<action>` for each audit event not yet signalled; returns how many."""
    with engine.begin() as connection:  # after every command: Core statements, built once
        at = connection.execute(_CURSOR_AT).scalar()
        events = connection.execute(_UNSIGNALLED, {"after": at or 0}).all()
        for seq, action, subject, actor, after in events:
            emit_event(
                event=f"wct.{action}",
                resource={
                    "prefect.resource.id": resource_id(subject),
                    "prefect.resource.name": subject,
                },
                payload={"seq": seq, "actor": actor, "after": json.loads(after)},
            )
        if events:
            moved = {"b_seq": events[-1].seq}
            connection.execute(_CURSOR_START if at is None else _CURSOR_MOVE, moved)
    return len(events)


_CURSORS: sa.Table = SQLModel.metadata.tables[SignalCursor.__tablename__]
_EVENTS: sa.Table = SQLModel.metadata.tables["audit_event"]
_CURSOR_AT = sa.select(_CURSORS.c.seq).where(_CURSORS.c.name == CURSOR).with_for_update()
_UNSIGNALLED = (
    sa.select(_EVENTS.c.seq, _EVENTS.c.action, _EVENTS.c.subject, _EVENTS.c.actor, _EVENTS.c.after)
    .where(_EVENTS.c.seq > sa.bindparam("after"))
    .order_by(_EVENTS.c.seq)
    .limit(BATCH)
)
_CURSOR_MOVE = _CURSORS.update().where(_CURSORS.c.name == CURSOR).values(seq=sa.bindparam("b_seq"))
_CURSOR_START = _CURSORS.insert().values(name=CURSOR, seq=sa.bindparam("b_seq"))


def act(clock: Clock, who: str | Principal, command: Command[T]) -> T:
    """What a flow does to change state: `execute` the command as `who`, then relay the events
    of what it changed (and any earlier ones not yet relayed)."""
    done = execute(wct_engine(), clock, who, command)
    relay(wct_engine())
    return done.result
