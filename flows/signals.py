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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from flows.runtime import engine as wct_engine
from models.audit import EVENTS
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
        if at is None:  # the database's first relay: the cursor is made once, by whoever is first
            connection.execute(_CURSOR_START[connection.dialect.name])
            at = connection.execute(_CURSOR_AT).scalar()  # waits for a relay that made it
        events = connection.execute(_UNSIGNALLED, {"after": at}).all()
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
            connection.execute(_CURSOR_MOVE, {"b_seq": events[-1].seq})
    return len(events)


_CURSORS: sa.Table = SQLModel.metadata.tables[SignalCursor.__tablename__]
_CURSOR_AT = sa.select(_CURSORS.c.seq).where(_CURSORS.c.name == CURSOR).with_for_update()
_UNSIGNALLED = (
    sa.select(EVENTS.c.seq, EVENTS.c.action, EVENTS.c.subject, EVENTS.c.actor, EVENTS.c.after)
    .where(EVENTS.c.seq > sa.bindparam("after"))
    .order_by(EVENTS.c.seq)
    .limit(BATCH)
)
_CURSOR_MOVE = _CURSORS.update().where(_CURSORS.c.name == CURSOR).values(seq=sa.bindparam("b_seq"))
#: Two first relays at once (PostgreSQL: `FOR UPDATE` locks no row that is not there yet): the
#: second one's insert waits for the first to commit, does nothing, and its select then waits for
#: the cursor the first moved, so no event is emitted twice and neither fails.
_CURSOR_START = {
    dialect: insert(_CURSORS).values(name=CURSOR, seq=0).on_conflict_do_nothing()
    for dialect, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def act(clock: Clock, who: str | Principal, command: Command[T]) -> T:
    """What a flow does to change state: `execute` the command as `who`, then relay the events
    of what it changed (and any earlier ones not yet relayed)."""
    done = execute(wct_engine(), clock, who, command)
    relay(wct_engine())
    return done.result
