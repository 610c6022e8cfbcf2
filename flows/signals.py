"""Prefect events that mirror the audit trail, for the UI's event feed and for automations.

The database is the record; events are signals. Every audited change becomes one event, whatever
made it (a flow, the CLI, the sweep): the relay emits the audit events after a cursor and moves
the cursor in the same transaction. A crash between the two re-emits a few events; none is lost.
"""

from __future__ import annotations

import json
from typing import TypeVar

from prefect.events import emit_event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from flows.runtime import engine as wct_engine
from models.clock import Clock
from models.permissions import Principal
from models.service import Command, execute
from models.tables import AuditEvent, SignalCursor

T = TypeVar("T")

CURSOR = "prefect-events"
BATCH = 500


def resource_id(subject: str) -> str:
    """The Prefect resource an audit subject is (`meeting:12` -> `wct.meeting.12`): what an
    automation or the UI's event feed filters on."""
    return "wct." + subject.replace(":", ".")


def relay(engine: Engine) -> int:
    """Emit `wct.<action>` for each audit event not yet signalled; returns how many."""
    with Session(engine) as session:
        cursor = session.exec(
            select(SignalCursor).where(SignalCursor.name == CURSOR).with_for_update()
        ).first()
        if cursor is None:
            cursor = SignalCursor(name=CURSOR, seq=0)
        events = session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.seq) > cursor.seq)
            .order_by(col(AuditEvent.seq))
            .limit(BATCH)
        ).all()
        for event in events:
            emit_event(
                event=f"wct.{event.action}",
                resource={
                    "prefect.resource.id": resource_id(event.subject),
                    "prefect.resource.name": event.subject,
                },
                payload={"seq": event.seq, "actor": event.actor, "after": json.loads(event.after)},
            )
        if events:
            cursor.seq = events[-1].seq
            session.add(cursor)
            session.commit()
    return len(events)


def act(clock: Clock, who: str | Principal, command: Command[T]) -> T:
    """What a flow does to change state: `execute` the command as `who`, then relay the events
    of what it changed (and any earlier ones not yet relayed)."""
    done = execute(wct_engine(), clock, who, command)
    relay(wct_engine())
    return done.result
