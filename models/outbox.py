"""The notification outbox: rows written in the same transaction as the change that causes them.

A row's life (one message, one recipient, one channel, one idempotency `key`):

    pending --claim--> claimed (lease) --begin_send--> sending --> sent
       ^                  |                              |   \\--> failed --(backoff)--> claimed ...
       |                  |                              |    \\-> dead (after max_attempts)
       \\-- lease expired -/                              \\-- lease expired --> unknown

* `claimed` means "a dispatcher holds it and has not started to transmit": if its lease expires the
  dispatcher died before sending, so the row goes back to `pending` (nothing can have been sent).
* `sending` is committed immediately before the bytes leave. If its lease expires, the dispatcher
  died between the send and the receipt; if the reply to SMTP DATA was lost, `mark_unknown`. Either
  way the receiver may or may not have the message, so the row becomes `unknown` and is NOT resent
  on its own: resending could deliver twice. A coordinator sees it in `wct outbox --failed` and
  retries it (`wct outbox retry ID`) after checking; the key travels in the `X-WCT-Key` header so
  a duplicate, if it happens, is recognisable.
* Only this module changes `status`; every function takes `now` and commits nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from models.tables import Channel, OutboxMessage, Person


class Status(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    UNKNOWN = "unknown"


#: What a coordinator should look at: given up, or fate unknown, or waiting for a retry.
TROUBLE = (Status.FAILED, Status.DEAD, Status.UNKNOWN)
#: Rows a dispatcher may pick up when their time has come.
READY = (Status.PENDING, Status.FAILED)
#: Longest wait between two attempts, whatever the policy says.
MAX_BACKOFF = timedelta(hours=6)
ERROR_LIMIT = 2000


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


# --- Retry schedule (pure) ------------------------------------------------------------------


def backoff(attempts: int, *, first_retry_seconds: int, jitter: float) -> timedelta:
    """The wait after the `attempts`-th failed attempt: exponential, capped, with equal jitter.

    `first_retry_seconds * 2**(attempts-1)`, capped at MAX_BACKOFF, of which a random half is kept:
    `jitter` in [0, 1) picks where in [half, whole] the wait falls, so many rows failing together
    (a mail server down) do not all come back in the same second.
    """
    if attempts < 1:
        raise ValueError("attempts counts from 1")
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be in [0, 1)")
    exponent = min(attempts - 1, 30)  # 2**30 s is far past the cap already
    whole = min(timedelta(seconds=first_retry_seconds * 2**exponent), MAX_BACKOFF)
    return whole / 2 + (whole / 2) * jitter


def retry_schedule(
    max_attempts: int, *, first_retry_seconds: int, jitter: float = 0.0
) -> list[timedelta]:
    """The waits between attempts 1..max_attempts (for display and for tests)."""
    return [
        backoff(n, first_retry_seconds=first_retry_seconds, jitter=jitter)
        for n in range(1, max_attempts)
    ]


# --- Dispatcher transitions -----------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """What a dispatcher needs to deliver one claimed row (no ORM object leaves the session)."""

    id: int
    key: str
    kind: str
    channel: str
    person_id: int
    context: str
    attempts: int


def claim(
    session: Session, *, now: datetime, limit: int, lease: timedelta, kinds: Sequence[str] = ()
) -> list[Claimed]:
    """Take up to `limit` due rows for this dispatcher until `now + lease`.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent dispatchers take disjoint rows. SQLite:
    the engine begins every transaction with BEGIN IMMEDIATE, so one claimer at a time.
    The caller commits, then delivers.
    """
    query = (
        select(OutboxMessage)
        .where(
            col(OutboxMessage.status).in_([s.value for s in READY]),
            col(OutboxMessage.next_attempt_at) <= now,
        )
        .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if kinds:
        query = query.where(col(OutboxMessage.kind).in_(list(kinds)))
    rows = session.exec(query).all()
    claimed = []
    for row in rows:
        assert row.id is not None
        row.status, row.lease_until = Status.CLAIMED.value, now + lease
        row.attempts += 1
        session.add(row)
        claimed.append(
            Claimed(
                row.id, row.key, row.kind, row.channel, row.person_id, row.context, row.attempts
            )
        )
    session.flush()
    return claimed


_TABLE: sa.Table = SQLModel.metadata.tables["outboxmessage"]  # OutboxMessage, for Core statements


def _move(session: Session, message_id: int, attempt: int, frm: Status, **values: Any) -> bool:
    """Compare-and-set on (status, attempt): False when this holder no longer owns the row.

    `attempts` only ever grows, so it is the claim's token: a dispatcher whose lease ran out and
    whose row was claimed again (attempts + 1) can neither start sending it nor record a receipt.
    Core statements, not ORM ones: this runs twice per message in a fan-out.
    """
    result = session.connection().execute(
        _TABLE.update()
        .where(
            _TABLE.c.id == message_id,
            _TABLE.c.attempts == attempt,
            _TABLE.c.status == frm.value,
        )
        .values(**values)
    )
    return bool(result.rowcount == 1)


def begin_send(
    session: Session, message_id: int, *, attempt: int, now: datetime, lease: timedelta
) -> bool:
    """Record that the bytes are about to leave; commit this BEFORE transmitting."""
    return _move(
        session,
        message_id,
        attempt,
        Status.CLAIMED,
        status=Status.SENDING.value,
        lease_until=now + lease,
    )


def mark_sent(session: Session, message_id: int, *, attempt: int, now: datetime) -> bool:
    """The receipt: the channel accepted the message."""
    return _move(
        session,
        message_id,
        attempt,
        Status.SENDING,
        status=Status.SENT.value,
        sent_at=now,
        lease_until=None,
        last_error=None,
    )


def begin_send_many(
    session: Session, held: Sequence[tuple[int, int]], *, now: datetime, lease: timedelta
) -> set[int]:
    """`begin_send` for many (id, attempt) pairs in two statements; the ids now ours to send."""
    if not held:
        return set()
    session.connection().execute(
        _TABLE.update()
        .where(
            _TABLE.c.id == sa.bindparam("b_id"),
            _TABLE.c.attempts == sa.bindparam("b_attempt"),
            _TABLE.c.status == Status.CLAIMED.value,
        )
        .values(status=Status.SENDING.value, lease_until=now + lease),
        [{"b_id": i, "b_attempt": a} for i, a in held],
    )
    wanted = dict(held)
    rows = session.connection().execute(
        sa.select(_TABLE.c.id, _TABLE.c.attempts).where(
            _TABLE.c.id.in_(list(wanted)), _TABLE.c.status == Status.SENDING.value
        )
    )
    return {int(i) for i, a in rows if wanted.get(int(i)) == a}


def mark_sent_many(session: Session, held: Sequence[tuple[int, int]], *, now: datetime) -> None:
    """`mark_sent` for many (id, attempt) pairs in one statement."""
    if not held:
        return
    session.connection().execute(
        _TABLE.update()
        .where(
            _TABLE.c.id == sa.bindparam("b_id"),
            _TABLE.c.attempts == sa.bindparam("b_attempt"),
            _TABLE.c.status == Status.SENDING.value,
        )
        .values(status=Status.SENT.value, sent_at=now, lease_until=None, last_error=None),
        [{"b_id": i, "b_attempt": a} for i, a in held],
    )


def mark_failed(
    session: Session,
    message_id: int,
    *,
    attempt: int,
    now: datetime,
    error: str,
    max_attempts: int,
    first_retry_seconds: int,
    jitter: float,
    sending: bool = True,
) -> Status:
    """A failed attempt: `failed` with the next attempt after a backoff, or `dead` at the limit.

    `sending=False` when the failure came before transmission (a template error), from `claimed`.
    """
    frm = Status.SENDING if sending else Status.CLAIMED
    if attempt >= max_attempts:
        _move(
            session,
            message_id,
            attempt,
            frm,
            status=Status.DEAD.value,
            lease_until=None,
            last_error=error[:ERROR_LIMIT],
        )
        return Status.DEAD
    wait = backoff(attempt, first_retry_seconds=first_retry_seconds, jitter=jitter)
    _move(
        session,
        message_id,
        attempt,
        frm,
        status=Status.FAILED.value,
        lease_until=None,
        next_attempt_at=now + wait,
        last_error=error[:ERROR_LIMIT],
    )
    return Status.FAILED


def mark_unknown(session: Session, message_id: int, *, attempt: int, error: str) -> bool:
    """The send failed in a way that may still have delivered (the reply to DATA was lost):
    like an expired `sending` lease, it is left for a coordinator, never resent on its own."""
    return _move(
        session,
        message_id,
        attempt,
        Status.SENDING,
        status=Status.UNKNOWN.value,
        lease_until=None,
        last_error=error[:ERROR_LIMIT],
    )


def mark_dead(
    session: Session, message_id: int, *, attempt: int, error: str, sending: bool = False
) -> bool:
    """Give up at once: retrying cannot help (no address, unknown kind, bad context)."""
    return _move(
        session,
        message_id,
        attempt,
        Status.SENDING if sending else Status.CLAIMED,
        status=Status.DEAD.value,
        lease_until=None,
        last_error=error[:ERROR_LIMIT],
    )


@dataclass(frozen=True)
class Recovered:
    requeued: int
    unknown: int


def recover_expired(session: Session, *, now: datetime) -> Recovered:
    """Leases that ran out: `claimed` goes back to `pending`; `sending` becomes `unknown`."""
    expired = col(OutboxMessage.lease_until) < now
    requeued = session.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.status) == Status.CLAIMED.value, expired)
        .values(status=Status.PENDING.value, lease_until=None, next_attempt_at=now)
    )
    unknown = session.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.status) == Status.SENDING.value, expired)
        .values(
            status=Status.UNKNOWN.value,
            lease_until=None,
            last_error="the dispatcher stopped between sending and the receipt: the receiver may "
            "or may not have it; check, then `wct outbox retry ID` to send again",
        )
    )
    return Recovered(int(getattr(requeued, "rowcount", 0)), int(getattr(unknown, "rowcount", 0)))


def retry(
    session: Session, *, now: datetime, ids: Sequence[int] = (), all_failed: bool = False
) -> list[int]:
    """Put failed, dead or unknown rows back to `pending` now (the coordinator's decision).

    `all_failed` takes every `failed` and `dead` row; `unknown` rows are retried only by id,
    because resending them may deliver twice. `attempts` is kept (it is the claim token), so a
    retried dead message that fails again is dead again at once: one more try, not eight.
    """
    if not ids and not all_failed:
        return []
    query = select(OutboxMessage.id)
    if all_failed:
        query = query.where(col(OutboxMessage.status).in_([Status.FAILED.value, Status.DEAD.value]))
    else:
        query = query.where(
            col(OutboxMessage.id).in_(list(ids)),
            col(OutboxMessage.status).in_([s.value for s in TROUBLE]),
        )
    found = [i for i in session.exec(query).all() if i is not None]
    if found:
        session.execute(
            sa.update(OutboxMessage)
            .where(col(OutboxMessage.id).in_(found))
            .values(status=Status.PENDING.value, next_attempt_at=now, lease_until=None)
        )
    return sorted(found)


def listing(
    session: Session, *, trouble_only: bool = False, limit: int = 500
) -> list[OutboxMessage]:
    """Rows for the coordinator: waiting and in flight, or only those in trouble."""
    query = select(OutboxMessage)
    if trouble_only:
        query = query.where(col(OutboxMessage.status).in_([s.value for s in TROUBLE]))
    else:
        query = query.where(col(OutboxMessage.status) != Status.SENT.value)
    return list(session.exec(query.order_by(col(OutboxMessage.id)).limit(limit)).all())


def counts(session: Session) -> dict[str, int]:
    """How many rows are in each status."""
    rows = (
        session.connection()
        .execute(sa.select(_TABLE.c.status, sa.func.count()).group_by(_TABLE.c.status))
        .all()
    )
    return {str(status): int(n) for status, n in rows}


def due_backlog(session: Session, *, now: datetime) -> tuple[int, datetime | None]:
    """How many messages are due and not yet sent, and since when the oldest has been due."""
    due = (
        col(OutboxMessage.status).in_([s.value for s in READY]),
        col(OutboxMessage.next_attempt_at) <= now,
    )
    count, oldest = session.exec(
        select(sa.func.count(), sa.func.min(col(OutboxMessage.next_attempt_at))).where(*due)
    ).one()
    return int(count), oldest
