"""The notification outbox: rows written in the same transaction as the change that causes them.

A row's life (one message, one recipient, one channel, one idempotency `key`):

    pending --claim--> claimed (lease) --begin_send--> sending --> sent
     ^ ^ ^                |    |                         |  |\\--> failed --(backoff)--> claimed ...
     | | \\-- release ----/    |                         |  | \\-> dead (after max_attempts)
     | \\--- lease expired ---/                         |  \\--> pending (throttled: retry_after)
     |                                                  \\-- lease expired, reply lost --> unknown
     \\----- settle: never arrived (mail folder) --- unknown | expired sending --> settle: sent

* `claimed` means "a dispatcher holds it and has not started to transmit": if its lease expires the
  dispatcher died before sending, so the row goes back to `pending` (nothing can have been sent).
  `release` gives a claimed row back unattempted (its channel's breaker is open): `attempts` is
  restored, so a paused channel burns no attempts towards `max_attempts`.
* `sending` is committed per message, immediately before its bytes leave, so a dispatcher that
  dies leaves at most the messages then on the wire (one per connection) in `sending`. If its
  lease expires, the dispatcher died between the send and the receipt; if the reply to SMTP DATA
  was lost, `mark_unknown`. Either way the receiver may or may not have the message, so the row
  becomes `unknown` and is NOT resent on its own: resending could deliver twice. A coordinator sees
  it in `wct outbox --failed` and retries it (`wct outbox retry ID`) after checking; the key
  travels in the `X-WCT-Key` header so a duplicate, if it happens, is recognisable.
* `settle`: where the transport can be asked whether a message arrived (the mail folder: its file
  is named from the key), `unknown` rows and `sending` rows whose lease expired are settled before
  anyone is asked: delivered -> `sent`, never delivered -> `pending` (safe to send). The transport
  checks (notifications/); this module decides.
* `mark_throttled`: the receiver said "not now, retry after N s" (HTTP 429): nothing was
  delivered, so the row goes back to `pending`, not before then, and the attempt is not counted.
* A channel's circuit breaker (`ChannelHealth`): `BREAKER_THRESHOLD` consecutive refused
  connections open it; while open, claimed rows for it are released unattempted until
  `next_probe_at`, when one message is sent as a probe (`take_probe`, so one dispatcher probes);
  a probe refused again doubles the wait (capped at `PROBE_CAP`), a channel reached closes it.
* Only this module changes `status`; every function takes `now` and commits nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from models.tables import Channel, ChannelHealth, OutboxMessage, Person
from models.uow import read_rows


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
    person: Person | None,
    channel: Channel,
    context: dict[str, Any],
    now: Any,
    body_id: str | None = None,
) -> OutboxMessage | None:
    """Queue one message for one person (or, with no person, one post to `body_id`'s Teams
    channel) on one channel; None if this key was queued before (in this transaction, or one
    committed). Many at once: `enqueue_all`."""
    if session.exec(select(OutboxMessage.id).where(OutboxMessage.key == key)).first() is not None:
        return None
    message = OutboxMessage(
        **outbox_row(
            key=key,
            kind=kind,
            person=person,
            channel=channel,
            context=context,
            now=now,
            body_id=body_id,
        )
    )
    session.add(message)
    return message


def outbox_row(
    *,
    key: str,
    kind: str,
    person: Person | None,
    channel: Channel,
    context: dict[str, Any],
    now: Any,
    body_id: str | None = None,
) -> dict[str, Any]:
    """The row of one message for one person (or, with no person, one post to `body_id`'s Teams
    channel) on one channel, as `enqueue` and `enqueue_all` write it (the table's defaults for
    the rest: pending, no attempt yet)."""
    assert (person is None) != (body_id is None), "a message goes to a person or a body's channel"
    assert person is None or person.id is not None
    return {
        "key": key,
        "kind": kind,
        "person_id": person.id if person is not None else None,
        "body_id": body_id,
        "channel": channel.value,
        "context": json.dumps(context, sort_keys=True, default=str),
        "next_attempt_at": now,
        "created_at": now,
    }


def enqueue_all(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Queue many messages (`outbox_row`) as `enqueue` queues one, each key once: those whose
    key was queued before (in this transaction, or one committed) are skipped, found in one
    query; the rest are written in one statement, now, in the caller's transaction (they commit
    or roll back with it; the session does not track them). How many were queued."""
    if not rows:
        return 0
    keys = [row["key"] for row in rows]
    before = frozenset(read_rows(session, _QUEUED, {"keys": keys}).scalars())
    new = [row for row in rows if row["key"] not in before]
    if new:
        session.connection().execute(_ADD_MESSAGES, new)
    return len(new)


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
    person_id: int | None  # None: a post to `body_id`'s Teams channel
    context: str
    attempts: int
    body_id: str | None = None


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
                row.id,
                row.key,
                row.kind,
                row.channel,
                row.person_id,
                row.context,
                row.attempts,
                row.body_id,
            )
        )
    session.flush()
    return claimed


_TABLE: sa.Table = SQLModel.metadata.tables["outboxmessage"]  # OutboxMessage, for Core statements
# Built once (their cache keys too): every step that sends runs them. (A dialect's INSERT ... ON
# CONFLICT DO NOTHING would spare the query, but SQLAlchemy compiles such a statement each time.)
_ADD_MESSAGES = _TABLE.insert()
_QUEUED = sa.select(_TABLE.c.key).where(_TABLE.c.key.in_(sa.bindparam("keys", expanding=True)))


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


def advance_many(
    session: Session,
    *,
    sent: Sequence[tuple[int, int]],
    sending: Sequence[tuple[int, int]],
    now: datetime,
    lease: timedelta,
) -> set[int]:
    """`mark_sent` for the (id, attempt) pairs in `sent` and `begin_send` for those in `sending`,
    in one statement (a dispatcher's turn: receipts of the sends that finished, and the next
    ones); the ids of `sending` now ours to send."""
    if not sent and not sending:
        return set()
    params = [
        {"b_id": i, "b_attempt": a, "b_from": Status.SENDING.value, "b_to": Status.SENT.value}
        | {"b_lease": None, "b_sent_at": now}
        for i, a in sent
    ] + [
        {"b_id": i, "b_attempt": a, "b_from": Status.CLAIMED.value, "b_to": Status.SENDING.value}
        | {"b_lease": now + lease, "b_sent_at": None}
        for i, a in sending
    ]
    result = session.connection().execute(
        _TABLE.update()
        .where(
            _TABLE.c.id == sa.bindparam("b_id"),
            _TABLE.c.attempts == sa.bindparam("b_attempt"),
            _TABLE.c.status == sa.bindparam("b_from"),
        )
        .values(
            status=sa.bindparam("b_to"),
            lease_until=sa.bindparam("b_lease"),
            sent_at=sa.bindparam("b_sent_at"),
        ),
        params,
    )
    wanted = dict(sending)
    if result.rowcount == len(params) or not wanted:
        return set(wanted)
    rows = session.connection().execute(
        sa.select(_TABLE.c.id, _TABLE.c.attempts).where(
            _TABLE.c.id.in_(list(wanted)), _TABLE.c.status == Status.SENDING.value
        )
    )
    return {int(i) for i, a in rows if wanted.get(int(i)) == a}


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


def release(
    session: Session, message_id: int, *, attempt: int, not_before: datetime, note: str
) -> bool:
    """Give a claimed row back unattempted (its channel is paused): `pending` not before
    `not_before`, with `attempts` as it was before the claim, so the pause burns no attempt.

    Safe as a claim token: only this holder had `attempt`, and it lets go here; the next claim
    takes `attempt` again, while any older holder's token stays below it."""
    return _move(
        session,
        message_id,
        attempt,
        Status.CLAIMED,
        status=Status.PENDING.value,
        attempts=attempt - 1,
        lease_until=None,
        next_attempt_at=not_before,
        last_error=note[:ERROR_LIMIT],
    )


def mark_throttled(
    session: Session, message_id: int, *, attempt: int, now: datetime, wait: timedelta, error: str
) -> bool:
    """The receiver refused for now and said when to come back (HTTP 429 with Retry-After):
    nothing was delivered, so `pending` not before `now + wait`, and the attempt is not counted."""
    return _move(
        session,
        message_id,
        attempt,
        Status.SENDING,
        status=Status.PENDING.value,
        attempts=attempt - 1,
        lease_until=None,
        next_attempt_at=now + max(wait, timedelta(0)),
        last_error=error[:ERROR_LIMIT],
    )


@dataclass(frozen=True)
class Unsettled:
    """A row whose fate its transport may be able to check (`unknown`, or `sending` and expired)."""

    id: int
    key: str
    channel: str


def _unsettled_where(now: datetime) -> Any:
    return sa.or_(
        _TABLE.c.status == Status.UNKNOWN.value,
        sa.and_(_TABLE.c.status == Status.SENDING.value, _TABLE.c.lease_until < now),
    )


def unsettled(
    session: Session, *, now: datetime, channel: Channel, limit: int = 10_000
) -> list[Unsettled]:
    """The rows on `channel` left `unknown`, or `sending` by a dispatcher whose lease ran out."""
    rows = session.connection().execute(
        sa.select(_TABLE.c.id, _TABLE.c.key, _TABLE.c.channel)
        .where(_TABLE.c.channel == channel.value, _unsettled_where(now))
        .order_by(_TABLE.c.id)
        .limit(limit)
    )
    return [Unsettled(int(i), str(k), str(c)) for i, k, c in rows]


@dataclass(frozen=True)
class Settled:
    sent: int
    requeued: int


def settle(session: Session, delivered: Mapping[int, bool], *, now: datetime) -> Settled:
    """The transport's answer for unsettled rows (by id): True, it arrived -> `sent`; False, it
    never did -> `pending` now (sending it cannot deliver twice). Rows that moved on meanwhile
    (retried, or a live dispatcher's) are left alone."""
    sent = requeued = 0
    for message_id, arrived in delivered.items():
        values: dict[str, Any] = (
            {"status": Status.SENT.value, "sent_at": now, "last_error": None}
            if arrived
            else {
                "status": Status.PENDING.value,
                "next_attempt_at": now,
                "last_error": "settled: the transport shows it never arrived; sent again",
            }
        )
        result = session.connection().execute(
            _TABLE.update()
            .where(_TABLE.c.id == message_id, _unsettled_where(now))
            .values(lease_until=None, **values)
        )
        if result.rowcount == 1:
            sent, requeued = sent + int(arrived), requeued + int(not arrived)
    return Settled(sent, requeued)


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


# --- Circuit breakers, one per delivery channel ---------------------------------------------

#: Consecutive refused connections that open a channel's breaker.
BREAKER_THRESHOLD = 5
#: The wait before the first probe of an open channel; it doubles with each refused probe ...
PROBE_FIRST = timedelta(seconds=5)
#: ... up to this.
PROBE_CAP = timedelta(minutes=5)


def probe_interval(probes: int) -> timedelta:
    """The wait before the next probe after `probes` refused probes: exponential, capped."""
    wait: timedelta = PROBE_FIRST * 2 ** min(max(probes, 0), 20)
    return min(wait, PROBE_CAP)


@dataclass(frozen=True)
class Breaker:
    """One channel's breaker as stored (`ChannelHealth`); no row means closed and healthy."""

    channel: str
    failures: int = 0
    refused: int = 0
    since: datetime | None = None
    opened_at: datetime | None = None
    probes: int = 0
    next_probe_at: datetime | None = None
    last_error: str | None = None

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def probe_due(self, now: datetime) -> bool:
        return self.open and (self.next_probe_at is None or self.next_probe_at <= now)


def _breaker(row: ChannelHealth) -> Breaker:
    return Breaker(
        row.channel,
        row.failures,
        row.refused,
        row.since,
        row.opened_at,
        row.probes,
        row.next_probe_at,
        row.last_error,
    )


def breakers(session: Session) -> dict[str, Breaker]:
    """Every channel with a refused connection on record, open or not yet."""
    rows = session.exec(select(ChannelHealth).order_by(col(ChannelHealth.channel))).all()
    return {r.channel: _breaker(r) for r in rows}


def _locked_row(session: Session, channel: str, now: datetime) -> ChannelHealth:
    """The channel's row, created if missing (concurrent creators do not collide), locked."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(ChannelHealth)
        .values(channel=channel, failures=0, refused=0, probes=0, updated_at=now)
        .on_conflict_do_nothing()
    )
    query = select(ChannelHealth).where(ChannelHealth.channel == channel).with_for_update()
    row = session.exec(query.execution_options(populate_existing=True)).one()
    return row


def record_refused(
    session: Session, channel: str, *, now: datetime, error: str, probe: bool = False
) -> Breaker:
    """A connection to `channel` was refused (or timed out): count it; open the breaker at
    BREAKER_THRESHOLD in a row; a refused probe puts the next one twice as far off."""
    row = _locked_row(session, channel, now)
    row.failures += 1
    row.refused += 1
    row.since = row.since or now
    row.last_error = error[:ERROR_LIMIT]
    row.updated_at = now
    if row.opened_at is None and row.failures >= BREAKER_THRESHOLD:
        row.opened_at, row.probes = now, 0
        row.next_probe_at = now + probe_interval(0)
    elif row.opened_at is not None and probe:
        row.probes += 1
        row.next_probe_at = now + probe_interval(row.probes)
    session.add(row)
    session.flush()
    return _breaker(row)


def record_reached(session: Session, channel: str) -> None:
    """`channel` answered (whatever it said): its breaker closes and its record goes."""
    session.execute(sa.delete(ChannelHealth).where(col(ChannelHealth.channel) == channel))


def take_probe(session: Session, channel: str, *, now: datetime) -> Breaker | None:
    """Claim the probe of an open channel whose probe is due: the breaker, with its next probe
    moved a full interval on (so no other dispatcher probes meanwhile), or None if it is not due
    (another dispatcher took it) or the breaker is closed."""
    row = session.exec(
        select(ChannelHealth)
        .where(ChannelHealth.channel == channel)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if row is None or row.opened_at is None:
        return None
    if row.next_probe_at is not None and row.next_probe_at > now:
        return None
    row.next_probe_at = now + probe_interval(row.probes)
    row.updated_at = now
    session.add(row)
    session.flush()
    return _breaker(row)
