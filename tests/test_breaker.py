"""Circuit breakers per channel and "retry after" (notifications/dispatch.py, models/outbox.py):
a real SMTP server on loopback, stopped and started; the clock is injected, never waited for."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from deployments.health import channels_down
from models import outbox
from models.clock import FixedClock
from models.health import Level, RuntimeFacts, assess
from models.outbox import Status
from notifications.channels import Channels, Outcome
from notifications.config import NotificationSettings
from notifications.dispatch import Dispatcher, drain, drain_once
from notifications.samples import sample
from tests.notifications_fixtures import SmtpServer, add_person, queue, row


def _queue(engine: Engine, clock: FixedClock, n: int) -> list[int]:
    people = [
        add_person(engine, name=f"Member {i}", email=f"m{i}@example.org", clock=clock)
        for i in range(n)
    ]
    return [
        queue(
            engine,
            person_id=p,
            kind="reminder",
            context=sample("reminder", f"Member {i}"),
            key=f"breaker:{p}:email",
            clock=clock,
        )
        for i, p in enumerate(people)
    ]


def test_the_breaker_opens_probes_once_per_interval_and_closes(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = smtp_server.settings(tmp_path).model_copy(update={"workers": 1})
    key = f"SMTP 127.0.0.1:{smtp_server.port}"
    smtp_server.stop()
    ids = _queue(loaded, clock, 8)

    down = drain_once(loaded, clock=clock, settings=settings, jitter=lambda: 0.0)

    # five refused connections open the breaker; the other three go back unattempted
    assert (down.failed, down.deferred, down.sent) == (outbox.BREAKER_THRESHOLD, 3, 0)
    attempts = [row(loaded, i).attempts for i in ids]
    assert attempts == [1] * 5 + [0] * 3
    opened = clock.now()
    with Session(loaded) as session:
        breaker = outbox.breakers(session)[key]
    assert breaker.open and breaker.refused == 5
    assert breaker.next_probe_at == opened + outbox.PROBE_FIRST
    assert all(row(loaded, i).next_attempt_at == breaker.next_probe_at for i in ids[5:])

    # `wct status` says so
    health = assess(RuntimeFacts(None, False, channels_down=channels_down(loaded)), clock.now())
    assert health.level is Level.ERROR
    [finding] = [f for f in health.findings if f.what == "channel"]
    assert f"{key} unreachable since {opened:%H:%M} (5 attempts refused)" in finding.message

    # before the probe is due nothing is attempted
    clock.advance(outbox.PROBE_FIRST - timedelta(seconds=1))
    assert drain_once(loaded, clock=clock, settings=settings).claimed == 0

    # the probe: one message, refused again -> the next probe twice as far off
    clock.advance(timedelta(seconds=1))
    probe = drain_once(loaded, clock=clock, settings=settings, jitter=lambda: 0.0)
    assert (probe.claimed, probe.failed, probe.deferred) == (3, 1, 2)
    assert [row(loaded, i).attempts for i in ids[5:]] == [1, 0, 0]
    with Session(loaded) as session:
        breaker = outbox.breakers(session)[key]
    assert (breaker.refused, breaker.probes) == (6, 1)
    assert breaker.next_probe_at == clock.now() + outbox.probe_interval(1)

    # the server is back: the next probe gets through, the breaker closes, the rest follow
    smtp_server.start()
    clock.advance(outbox.probe_interval(1))
    up = drain_once(loaded, clock=clock, settings=settings)
    assert (up.failed, up.deferred) == (0, 0) and up.sent >= 2  # with refused ones now due
    with Session(loaded) as session:
        assert outbox.breakers(session) == {}
    clock.advance(timedelta(hours=1))  # any refused one's backoff
    rest = drain(loaded, clock=clock, settings=settings)
    assert up.sent + rest.sent == 8
    keys = sorted(r.message["X-WCT-Key"] for r in smtp_server.received)
    assert keys == sorted(f"breaker:{row(loaded, i).person_id}:email" for i in ids)
    assert all(row(loaded, i).status == Status.SENT for i in ids)


class Throttled(Channels):
    """The edge only: a receiver that answers 429 with Retry-After the first `times` times."""

    def __init__(self, settings: NotificationSettings, times: int) -> None:
        super().__init__(settings)
        self.times, self.calls = times, 0

    def send_email(self, wire: str, subject: str) -> Outcome:
        self.calls += 1
        if self.calls <= self.times:
            return Outcome(False, "429 Too Many Requests", retry_after=120)
        return super().send_email(wire, subject)


def test_retry_after_is_honoured_without_burning_attempts(
    loaded: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    [message_id] = _queue(loaded, clock, 1)
    settings = NotificationSettings(home=tmp_path / "home", workers=1)
    start = clock.now()
    for _ in range(20):  # more than max_attempts: none of them counts
        dispatcher = Dispatcher(loaded, clock=clock, settings=settings)
        dispatcher.channels = Throttled(settings, times=1)
        claimed, result = dispatcher.claim(10)
        done = dispatcher.deliver(claimed, result)
        dispatcher.close()
        assert (done.deferred, done.failed) == (1, 0)
        stored = row(loaded, message_id)
        assert (stored.status, stored.attempts) == (Status.PENDING, 0)
        assert stored.next_attempt_at == clock.now() + timedelta(seconds=120)
        clock.advance(timedelta(seconds=119))
        assert drain_once(loaded, clock=clock, settings=settings, limit=10).claimed == 0
        clock.advance(timedelta(seconds=1))
    assert clock.now() == start + timedelta(seconds=20 * 120)
    assert drain_once(loaded, clock=clock, settings=settings).sent == 1
    assert row(loaded, message_id).status == Status.SENT
