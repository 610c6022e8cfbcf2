"""Prefect events that mirror the audit trail, for the UI's event feed and for automations.

The database is the record; events are signals. Every audited change becomes one event, whatever
made it (a flow, the CLI, the sweep): the relay emits the audit events after a cursor and moves
the cursor in the same transaction. A crash between the two re-emits a few events; none is lost.
"""

from __future__ import annotations

import json

from prefect.events import emit_event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.tables import AuditEvent, SignalCursor

CURSOR = "prefect-events"
BATCH = 500


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
            kind, _, ident = event.subject.partition(":")
            emit_event(
                event=f"wct.{event.action}",
                resource={
                    "prefect.resource.id": f"wct.{kind}.{ident}",
                    "prefect.resource.name": event.subject,
                },
                payload={"seq": event.seq, "actor": event.actor, "after": json.loads(event.after)},
            )
        if events:
            cursor.seq = events[-1].seq
            session.add(cursor)
            session.commit()
    return len(events)
