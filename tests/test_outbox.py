"""The outbox's states, leases, retry schedule and concurrent claims (models/outbox.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import outbox
from models.clock import FixedClock
from models.outbox import Status, backoff, retry_schedule
from models.tables import Channel, Person
from notifications.samples import sample
from tests.notifications_fixtures import add_person, queue, row

LEASE = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("attempts", "jitter", "seconds"),
    [
        (1, 0.0, 15),  # half of 30 s
        (1, 0.5, 22.5),
        (2, 0.0, 30),
        (3, 0.0, 60),
        (4, 0.999, 239.88),
        (30, 0.0, 3 * 3600),  # capped at 6 h, half kept
    ],
)
def test_backoff_is_exponential_capped_and_jittered(
    attempts: int, jitter: float, seconds: float
) -> None:
    wait = backoff(attempts, first_retry_seconds=30, jitter=jitter)
    assert wait.total_seconds() == pytest.approx(seconds)


def test_backoff_never_shrinks_and_stays_within_the_cap() -> None:
    for jitter in (0.0, 0.3, 0.99):
        waits = retry_schedule(50, first_retry_seconds=30, jitter=jitter)
        assert waits == sorted(waits)
        assert max(waits) <= outbox.MAX_BACKOFF


@pytest.mark.parametrize(("attempts", "jitter"), [(0, 0.0), (1, 1.0), (1, -0.1)])
def test_backoff_refuses_nonsense(attempts: int, jitter: float) -> None:
    with pytest.raises(ValueError):
        backoff(attempts, first_retry_seconds=30, jitter=jitter)


def _queued(engine: Engine, clock: FixedClock, n: int) -> list[int]:
    person = add_person(engine, clock=clock)
    return [
        queue(
            engine,
            person_id=person,
            kind="reminder",
            context=sample("reminder"),
            key=f"k:{i}",
            clock=clock,
        )
        for i in range(n)
    ]


def test_enqueue_twice_with_one_key_queues_once(loaded: Engine, clock: FixedClock) -> None:
    [message_id] = _queued(loaded, clock, 1)
    with Session(loaded) as session:
        person = session.get(Person, row(loaded, message_id).person_id)
        assert person is not None
        again = outbox.enqueue(
            session,
            key="k:0",
            kind="reminder",
            person=person,
            channel=Channel.EMAIL,
            context={},
            now=clock.now(),
        )
    assert again is None


def test_claim_takes_due_rows_once_and_leases_them(loaded: Engine, clock: FixedClock) -> None:
    ids = _queued(loaded, clock, 3)
    with Session(loaded) as session:
        first = outbox.claim(session, now=clock.now(), limit=2, lease=LEASE)
        session.commit()
    with Session(loaded) as session:
        second = outbox.claim(session, now=clock.now(), limit=10, lease=LEASE)
        session.commit()
    assert [c.id for c in first] == ids[:2]
    assert [c.id for c in second] == ids[2:]
    assert all(c.attempts == 1 for c in first + second)
    stored = row(loaded, ids[0])
    assert (stored.status, stored.lease_until) == (Status.CLAIMED, clock.now() + LEASE)


def test_rows_not_yet_due_are_not_claimed(loaded: Engine, clock: FixedClock) -> None:
    _queued(loaded, clock, 1)
    with Session(loaded) as session:
        assert (
            outbox.claim(session, now=clock.now() - timedelta(seconds=1), limit=5, lease=LEASE)
            == []
        )


def test_expired_leases_requeue_claimed_and_mark_sending_unknown(
    loaded: Engine, clock: FixedClock
) -> None:
    claimed_only, in_flight, sent = _queued(loaded, clock, 3)
    with Session(loaded) as session:
        outbox.claim(session, now=clock.now(), limit=3, lease=LEASE)
        assert outbox.begin_send(session, in_flight, attempt=1, now=clock.now(), lease=LEASE)
        assert outbox.begin_send(session, sent, attempt=1, now=clock.now(), lease=LEASE)
        assert outbox.mark_sent(session, sent, attempt=1, now=clock.now())
        session.commit()
    with Session(loaded) as session:  # still leased: nothing recovered
        assert outbox.recover_expired(session, now=clock.now()) == outbox.Recovered(0, 0)
    clock.advance(LEASE + timedelta(seconds=1))
    with Session(loaded) as session:
        recovered = outbox.recover_expired(session, now=clock.now())
        session.commit()
    assert recovered == outbox.Recovered(requeued=1, unknown=1)
    assert row(loaded, claimed_only).status == Status.PENDING
    assert row(loaded, in_flight).status == Status.UNKNOWN
    assert row(loaded, sent).status == Status.SENT


def test_a_lost_lease_cannot_be_marked_sent_by_its_old_holder(
    loaded: Engine, clock: FixedClock
) -> None:
    [message_id] = _queued(loaded, clock, 1)
    with Session(loaded) as session:
        outbox.claim(session, now=clock.now(), limit=1, lease=LEASE)
        session.commit()
    clock.advance(LEASE * 2)
    with Session(loaded) as session:
        outbox.recover_expired(session, now=clock.now())
        session.commit()
    with Session(loaded) as session:  # the old holder wakes up
        assert not outbox.begin_send(session, message_id, attempt=1, now=clock.now(), lease=LEASE)
        assert not outbox.mark_sent(session, message_id, attempt=1, now=clock.now())
        session.commit()
    assert row(loaded, message_id).status == Status.PENDING


def test_failures_back_off_then_die_at_the_limit(loaded: Engine, clock: FixedClock) -> None:
    [message_id] = _queued(loaded, clock, 1)
    seen = []
    for attempt in range(1, 4):
        with Session(loaded) as session:
            [c] = outbox.claim(session, now=clock.now(), limit=1, lease=LEASE)
            outbox.begin_send(session, c.id, attempt=c.attempts, now=clock.now(), lease=LEASE)
            status = outbox.mark_failed(
                session,
                c.id,
                attempt=c.attempts,
                now=clock.now(),
                error="421 try later",
                max_attempts=3,
                first_retry_seconds=30,
                jitter=0.0,
            )
            session.commit()
        seen.append((c.attempts, status))
        stored = row(loaded, message_id)
        if status is Status.FAILED:
            expected = backoff(attempt, first_retry_seconds=30, jitter=0.0)
            assert stored.next_attempt_at == clock.now() + expected
            clock.set(stored.next_attempt_at)
    assert seen == [(1, Status.FAILED), (2, Status.FAILED), (3, Status.DEAD)]
    assert row(loaded, message_id).last_error == "421 try later"


def test_retry_all_failed_leaves_unknown_for_a_decision(loaded: Engine, clock: FixedClock) -> None:
    failed, unknown = _queued(loaded, clock, 2)
    with Session(loaded) as session:
        outbox.claim(session, now=clock.now(), limit=2, lease=LEASE)
        outbox.begin_send(session, failed, attempt=1, now=clock.now(), lease=LEASE)
        outbox.begin_send(session, unknown, attempt=1, now=clock.now(), lease=LEASE)
        outbox.mark_failed(
            session,
            failed,
            attempt=1,
            now=clock.now(),
            error="x",
            max_attempts=1,
            first_retry_seconds=30,
            jitter=0.0,
        )
        session.commit()
    clock.advance(LEASE * 2)
    with Session(loaded) as session:
        outbox.recover_expired(session, now=clock.now())
        assert outbox.counts(session) == {"dead": 1, "unknown": 1}
        assert [m.id for m in outbox.listing(session, trouble_only=True)] == [failed, unknown]
        assert outbox.retry(session, now=clock.now(), all_failed=True) == [failed]
        assert outbox.retry(session, now=clock.now(), ids=[unknown, 999]) == [unknown]
        session.commit()
    assert row(loaded, failed).status == row(loaded, unknown).status == Status.PENDING
    assert row(loaded, unknown).attempts == 1  # kept: the claim token only grows


def test_concurrent_claims_on_postgres_take_disjoint_rows(
    loaded: Engine, clock: FixedClock, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises claimers with BEGIN IMMEDIATE instead")
    ids = _queued(loaded, clock, 4)
    with Session(loaded) as one, Session(loaded) as two:
        first = outbox.claim(one, now=clock.now(), limit=2, lease=LEASE)  # locks held: no commit
        second = outbox.claim(two, now=clock.now(), limit=10, lease=LEASE)  # skips them
        one.commit()
        two.commit()
    assert sorted(c.id for c in first + second) == ids
    assert not {c.id for c in first} & {c.id for c in second}


def test_a_released_row_goes_back_unattempted_until_its_time(
    loaded: Engine, clock: FixedClock
) -> None:
    [message_id] = _queued(loaded, clock, 1)
    later = clock.now() + timedelta(seconds=40)
    with Session(loaded) as session:
        [c] = outbox.claim(session, now=clock.now(), limit=1, lease=LEASE)
        assert outbox.release(session, c.id, attempt=c.attempts, not_before=later, note="paused")
        assert not outbox.release(session, c.id, attempt=c.attempts, not_before=later, note="x")
        session.commit()
    stored = row(loaded, message_id)
    assert (stored.status, stored.attempts, stored.next_attempt_at) == (Status.PENDING, 0, later)
    with Session(loaded) as session:
        assert outbox.claim(session, now=later - timedelta(seconds=1), limit=1, lease=LEASE) == []
        [again] = outbox.claim(session, now=later, limit=1, lease=LEASE)
    assert again.attempts == 1


def test_a_throttled_send_waits_and_does_not_count(loaded: Engine, clock: FixedClock) -> None:
    [message_id] = _queued(loaded, clock, 1)
    with Session(loaded) as session:
        [c] = outbox.claim(session, now=clock.now(), limit=1, lease=LEASE)
        outbox.begin_send(session, c.id, attempt=1, now=clock.now(), lease=LEASE)
        assert outbox.mark_throttled(
            session, c.id, attempt=1, now=clock.now(), wait=timedelta(seconds=90), error="429"
        )
        session.commit()
    stored = row(loaded, message_id)
    assert (stored.status, stored.attempts) == (Status.PENDING, 0)
    assert stored.next_attempt_at == clock.now() + timedelta(seconds=90)


def test_the_transport_settles_rows_a_crash_left_in_doubt(
    loaded: Engine, clock: FixedClock
) -> None:
    arrived, never, live, expired = _queued(loaded, clock, 4)
    with Session(loaded) as session:
        outbox.claim(session, now=clock.now(), limit=4, lease=LEASE)
        for i in (arrived, never, live, expired):
            outbox.begin_send(session, i, attempt=1, now=clock.now(), lease=LEASE)
        outbox.mark_unknown(session, arrived, attempt=1, error="reply lost")
        outbox.mark_unknown(session, never, attempt=1, error="reply lost")
        session.commit()
    with Session(loaded) as session:  # `live` is still leased: a dispatcher is on it
        found = outbox.unsettled(session, now=clock.now(), channel=Channel.EMAIL)
        assert [u.id for u in found] == [arrived, never]
    clock.advance(LEASE + timedelta(seconds=1))
    with Session(loaded) as session:
        found = outbox.unsettled(session, now=clock.now(), channel=Channel.EMAIL)
        assert [u.id for u in found] == [arrived, never, live, expired]
        settled = outbox.settle(
            session, {arrived: True, never: False, expired: True}, now=clock.now()
        )
        session.commit()
    assert settled == outbox.Settled(sent=2, requeued=1)
    assert [row(loaded, i).status for i in (arrived, never, live, expired)] == [
        Status.SENT,
        Status.PENDING,
        Status.SENDING,
        Status.SENT,
    ]


def test_probe_intervals_double_up_to_the_cap() -> None:
    waits = [outbox.probe_interval(n).total_seconds() for n in range(8)]
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300]


def test_a_breaker_opens_at_the_threshold_and_one_probe_is_taken(
    loaded: Engine, clock: FixedClock
) -> None:
    key = "SMTP mail.example.org:25"
    with Session(loaded) as session:
        for n in range(1, outbox.BREAKER_THRESHOLD + 1):
            breaker = outbox.record_refused(session, key, now=clock.now(), error="refused")
            assert breaker.open is (n == outbox.BREAKER_THRESHOLD)
        session.commit()
    assert breaker.next_probe_at == clock.now() + outbox.PROBE_FIRST
    with Session(loaded) as session:
        assert outbox.take_probe(session, key, now=clock.now()) is None  # not yet due
    clock.advance(outbox.PROBE_FIRST)
    with Session(loaded) as session:
        assert outbox.take_probe(session, key, now=clock.now()) is not None
        assert outbox.take_probe(session, key, now=clock.now()) is None  # one probe per interval
        refused = outbox.record_refused(session, key, now=clock.now(), error="x", probe=True)
        session.commit()
    assert (refused.probes, refused.refused) == (1, outbox.BREAKER_THRESHOLD + 1)
    assert refused.next_probe_at == clock.now() + outbox.probe_interval(1)
    with Session(loaded) as session:
        outbox.record_reached(session, key)
        session.commit()
        assert outbox.breakers(session) == {}
