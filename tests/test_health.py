"""The runtime health rule (models/health.py): pure, judged at a given `now`."""

from __future__ import annotations

from datetime import timedelta

from models.health import Level, RuntimeFacts, ScheduledDeployment, assess

from .cycles_support import london

NOW = london(2026, 11, 25, 12)


def dispatch(runs_ahead: int, registered_minutes_ago: int) -> ScheduledDeployment:
    return ScheduledDeployment(
        "dispatch", 60.0, NOW - timedelta(minutes=registered_minutes_ago), runs_ahead
    )


def test_a_stopped_system_with_nothing_due_is_not_a_fault() -> None:
    health = assess(RuntimeFacts(None, False), NOW)
    assert health.level is Level.OK and health.scheduler_ok is None


def test_a_server_that_wct_up_runs_but_does_not_answer_is_an_error() -> None:
    health = assess(RuntimeFacts("http://127.0.0.1:4200/api", False), NOW, expected_up=True)
    assert health.level is Level.ERROR
    assert "does not answer" in health.findings[0].message


def test_a_scheduler_creating_no_runs_is_an_error_once_the_grace_has_passed() -> None:
    facts = RuntimeFacts("http://x/api", True, "/var/log/server.log", [dispatch(0, 10)])
    health = assess(facts, NOW)
    assert health.level is Level.ERROR and health.scheduler_ok is False
    assert "not creating runs" in health.findings[0].message
    assert "/var/log/server.log" in health.findings[0].message
    fresh = assess(RuntimeFacts("http://x/api", True, None, [dispatch(0, 1)]), NOW)
    assert fresh.level is Level.OK, "just registered: the scheduler has not looped yet"


def test_a_working_scheduler_is_ok() -> None:
    health = assess(RuntimeFacts("http://x/api", True, None, [dispatch(58, 30)]), NOW)
    assert health.level is Level.OK and health.scheduler_ok is True


def test_due_messages_left_waiting_are_reported() -> None:
    waiting = RuntimeFacts(
        "http://x/api", True, oldest_due_unsent=NOW - timedelta(minutes=42), due_unsent=7
    )
    health = assess(waiting, NOW)
    assert health.level is Level.ERROR
    assert "7 due message(s) not sent; the oldest has waited 42 min" in health.findings[0].message
    stopped = assess(
        RuntimeFacts(None, False, oldest_due_unsent=NOW - timedelta(hours=3), due_unsent=1), NOW
    )
    assert stopped.level is Level.WARNING
    assert health.as_dict(NOW)["outbox"]["oldest_due_unsent_age_seconds"] == 42 * 60


def test_a_channel_whose_breaker_is_open_is_reported() -> None:
    from models.health import ChannelDown

    down = ChannelDown(
        "SMTP mail.example.org:587",
        london(2026, 11, 25, 11, 2),
        12,
        NOW + timedelta(seconds=40),
        "ConnectionRefusedError",
    )
    health = assess(RuntimeFacts(None, False, channels_down=[down]), NOW)
    assert health.level is Level.ERROR
    [finding] = health.findings
    assert finding.message.startswith(
        "SMTP mail.example.org:587 unreachable since 11:02 (12 attempts refused)"
    )
    assert health.as_dict(NOW)["channels_down"][0]["refused"] == 12
