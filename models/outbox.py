"""The notification outbox: rows written in the same transaction as the change that causes them."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from models.tables import Channel, OutboxMessage, Person


def message_key(*parts: str | int) -> str:
    """An idempotency key such as `meeting:board:2027-01-12:agenda:p-1a2b:email`."""
    return ":".join(str(p) for p in parts)


def enqueue(
    session: Session,
    *,
    key: str,
    kind: str,
    person: Person,
    channel: Channel,
    context: dict[str, Any],
    now: Any,
) -> OutboxMessage | None:
    """Queue one message for one person on one channel; None if this key was queued before."""
    if session.exec(select(OutboxMessage.id).where(OutboxMessage.key == key)).first() is not None:
        return None
    assert person.id is not None
    message = OutboxMessage(
        key=key,
        kind=kind,
        person_id=person.id,
        channel=channel.value,
        context=json.dumps(context, sort_keys=True, default=str),
        next_attempt_at=now,
        created_at=now,
    )
    session.add(message)
    return message


def channels_of(person: Person) -> list[Channel]:
    """The channels a person chose at import (email when none was given)."""
    return [Channel(c) for c in person.channels.split(",") if c] or [Channel.EMAIL]
