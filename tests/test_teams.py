"""Teams within its limits: the token bucket, Retry-After, the card, errors without secrets.

Unit tests run on a fake clock (no real sleeping); the integration tests post to a real local
HTTPS endpoint (tests/notifications_fixtures.py) and judge by its receive times and counts only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy.engine import Engine
from urllib3.exceptions import ProtocolError

from models.clock import FixedClock
from models.outbox import Status
from models.tables import Channel
from notifications.channels import Channels
from notifications.config import NotificationSettings
from notifications.dispatch import drain
from notifications.samples import sample
from notifications.teams import (
    MAX_POSTS,
    PAYLOAD_LIMIT,
    POLL,
    RATE,
    RATE_LIMIT,
    Reply,
    Slot,
    TeamsTransport,
    Throttle,
    TokenBucket,
    card,
    encode,
    retry_after_seconds,
    scrub,
    teams_url,
)
from tests.notifications_fixtures import Webhook, add_person, busiest_second, free_port, queue, row

HOOK = (
    "https://prod-01.westeurope.logic.azure.com:443/workflows/a1b2c3d4/triggers/manual/paths/"
    "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s3cr3tSig"
)
OTHER = HOOK.replace("a1b2c3d4", "e5f6a7b8")


class FakeTime:
    """A monotonic clock and a wall clock that move only when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.epoch = 1_800_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedHttp:
    """Answers from a script `(status, headers)`, then 202; records (fake time, url, key, card)."""

    def __init__(self, fake: FakeTime, *answers: tuple[int, dict[str, str]]) -> None:
        self.fake = fake
        self.answers = list(answers)
        self.calls: list[tuple[float, str, str, dict[str, Any]]] = []

    def __call__(self, url: str, data: bytes, headers: Mapping[str, str]) -> Reply:
        self.calls.append((self.fake.now, url, headers["X-WCT-Key"], json.loads(data)))
        status, extra = self.answers.pop(0) if self.answers else (202, {})
        return Reply(status, {429: "Too Many Requests", 500: "Server Error"}.get(status, ""), extra)


def transport(fake: FakeTime, http: ScriptedHttp) -> TeamsTransport:
    return TeamsTransport(
        throttle=Throttle(clock=fake.clock, sleep=fake.sleep), http=http, wall=fake.wall
    )


def payload(title: str = "Reminder") -> dict[str, Any]:
    return card(title, "A body")


def windows_ok(times: list[float], limit: float = RATE_LIMIT) -> bool:
    return busiest_second(times) <= limit


# --- Unit: bucket, throttle, Retry-After ---------------------------------------------------


def refused(taken: tuple[float, Slot | None]) -> float:
    """The wait of a `take` that gave no slot."""
    wait, slot = taken
    assert slot is None
    return wait


def test_a_bucket_gives_one_token_then_one_per_interval() -> None:
    bucket = TokenBucket(4.0, limit=100, now=0.0)
    assert bucket.take(0.0)[0] == 0.0
    assert refused(bucket.take(0.0)) == pytest.approx(0.25)
    assert refused(bucket.take(0.1)) == pytest.approx(0.15)
    assert bucket.take(0.25)[0] == 0.0
    bucket.hold(10.0)
    assert refused(bucket.take(5.0)) == pytest.approx(5.0)  # held: no token, whatever accrued
    assert bucket.take(10.0)[0] == 0.0


def test_the_fifth_request_waits_a_window_after_the_first_is_answered() -> None:
    bucket = TokenBucket(4.0, limit=4, window=1.0, now=0.0)
    slots = [bucket.take(t)[1] for t in (0.0, 0.25, 0.5, 0.75)]
    assert all(slot is not None for slot in slots)
    assert refused(bucket.take(1.0)) == POLL  # all four still in flight: look again shortly
    first = slots[0]
    assert first is not None
    bucket.answered(first, 1.2)  # a slow answer: the first arrived at most then
    assert refused(bucket.take(1.3)) == pytest.approx(0.9)
    assert bucket.take(2.2)[1] is not None


def test_the_throttle_spaces_one_webhook_and_leaves_another_alone() -> None:
    fake = FakeTime()
    throttle = Throttle(clock=fake.clock, sleep=fake.sleep)
    granted: dict[str, list[float]] = {HOOK: [], OTHER: []}
    for i in range(12):
        hook = HOOK if i % 3 else OTHER
        slot = throttle.turn(hook)
        assert isinstance(slot, Slot)
        granted[hook].append(fake.now)
        throttle.answered(hook, slot)
    for times in granted.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 1 / RATE - 1e-9
        assert windows_ok(times)
    assert RATE <= RATE_LIMIT


def test_a_turn_too_far_off_is_not_waited_for() -> None:
    fake = FakeTime()
    throttle = Throttle(clock=fake.clock, sleep=fake.sleep)
    throttle.hold(HOOK, 4.0)
    assert isinstance(throttle.turn(HOOK), Slot)  # a 4 s hold is sat out ...
    assert fake.sleeps == [pytest.approx(4.0)]
    throttle.hold(HOOK, 20.0)
    assert throttle.turn(HOOK) == pytest.approx(20.0)  # ... a 20 s one is handed back
    assert throttle.turn(HOOK, patience=1.0, hold_patience=60.0) == pytest.approx(20.0)
    assert fake.sleeps == [pytest.approx(4.0)]


def test_the_throttle_is_shared_safely_by_threads() -> None:
    """8 threads x 25 turns on one webhook: every token is taken at least an interval after the
    one before, by the throttle's own clock readings (the reading under its lock that won)."""
    rate = 2000.0
    seen = threading.local()

    def clock() -> float:
        seen.last = time.monotonic()
        return float(seen.last)

    throttle = Throttle(rate=rate, limit=1_000, clock=clock)
    granted: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(25):
            slot = throttle.turn(HOOK)
            assert isinstance(slot, Slot)
            with lock:
                granted.append(seen.last)
            throttle.answered(HOOK, slot)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted.sort()
    assert len(granted) == 200
    assert all(b - a >= (1 / rate) * (1 - 1e-6) for a, b in zip(granted, granted[1:], strict=False))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        (format_datetime(datetime.fromtimestamp(1_800_000_010, UTC), usegmt=True), 10.0),
        (format_datetime(datetime.fromtimestamp(1_799_999_000, UTC), usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", 0.0),  # no zone: read as UTC, long past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_an_http_date(header: str | None, expected: float | None) -> None:
    found = retry_after_seconds(header, now=1_800_000_000.0)
    assert found == (None if expected is None else pytest.approx(expected))


# --- Unit: the transport on a fake clock -----------------------------------------------------


def test_a_short_retry_after_is_waited_out_and_nothing_goes_before_it() -> None:
    fake = FakeTime()
    http = ScriptedHttp(fake, (429, {"Retry-After": "2"}))
    outcome = transport(fake, http).deliver(HOOK, payload(), key="k1")
    assert outcome.ok
    (first, *_), (second, *_) = http.calls
    assert second >= first + 2.0
    assert [c[2] for c in http.calls] == ["k1", "k1"]


def test_an_http_date_retry_after_on_503_is_honoured() -> None:
    fake = FakeTime()
    when = format_datetime(datetime.fromtimestamp(fake.wall() + 3, UTC), usegmt=True)
    http = ScriptedHttp(fake, (503, {"retry-after": when}))
    assert transport(fake, http).deliver(HOOK, payload(), key="k1").ok
    assert http.calls[1][0] >= http.calls[0][0] + 3.0 - 1e-6


def test_a_long_retry_after_is_handed_to_the_dispatcher_and_holds_every_sender() -> None:
    fake = FakeTime()
    http = ScriptedHttp(fake, (429, {"Retry-After": "30"}))
    teams = transport(fake, http)

    first = teams.deliver(HOOK, payload(), key="k1")
    second = teams.deliver(HOOK, payload(), key="k2")  # another message, the same webhook

    assert (first.ok, first.retry_after) == (False, 30.0)
    assert first.error is not None and "HTTP 429" in first.error and "sig" not in first.error
    assert not second.ok and second.retry_after == pytest.approx(30.0)
    assert len(http.calls) == 1  # nothing sent while it is held
    assert teams.deliver(OTHER, payload(), key="k3").ok  # other webhooks are not held
    fake.advance(30.0)
    assert teams.deliver(HOOK, payload(), key="k2").ok
    assert [c[2] for c in http.calls] == ["k1", "k3", "k2"]


def test_429_without_retry_after_is_a_plain_failure() -> None:
    fake = FakeTime()
    http = ScriptedHttp(fake, (429, {}))
    outcome = transport(fake, http).deliver(HOOK, payload(), key="k1")
    assert not outcome.ok and outcome.retry_after is None
    assert outcome.error is not None and "without Retry-After" in outcome.error


def test_sequential_sends_keep_to_four_a_second_by_the_receivers_clock() -> None:
    fake = FakeTime()
    http = ScriptedHttp(fake)
    teams = transport(fake, http)
    for i in range(20):
        assert teams.deliver(HOOK if i % 2 else OTHER, payload(), key=f"k{i}").ok
    for hook in (HOOK, OTHER):
        assert windows_ok([t for t, url, *_ in http.calls if url == hook])


def test_a_500_is_a_failure_that_names_the_status_and_not_the_url() -> None:
    fake = FakeTime()
    teams = transport(fake, ScriptedHttp(fake))
    teams.http = lambda _url, _data, _headers: Reply(
        500, "Internal Server Error", {}, f"upstream said no to {HOOK}"
    )
    outcome = teams.deliver(HOOK, payload(), key="k1")
    assert not outcome.ok and not outcome.unreachable and not outcome.ambiguous
    assert outcome.error is not None and "HTTP 500 Internal Server Error" in outcome.error
    for secret in ("sig=", "s3cr3tSig", "/workflows/", "a1b2c3d4"):
        assert secret not in outcome.error
    assert "prod-01.westeurope.logic.azure.com" in outcome.error


def test_only_https_webhooks_are_posted_to() -> None:
    fake = FakeTime()
    http = ScriptedHttp(fake)
    outcome = transport(fake, http).deliver(HOOK.replace("https:", "http:"), payload(), key="k")
    assert not outcome.ok and http.calls == []


def test_a_refused_connection_is_unreachable_and_names_no_secret() -> None:
    hook = f"https://127.0.0.1:{free_port()}/workflows/a1b2c3d4/triggers/manual/paths/invoke?sig=s3cr3tSig"
    outcome = TeamsTransport().deliver(hook, payload(), key="k1")
    assert not outcome.ok and outcome.unreachable and not outcome.ambiguous
    assert outcome.error is not None and "sig" not in outcome.error.lower()
    assert "s3cr3tSig" not in outcome.error and "/workflows/" not in outcome.error


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectionError(
            ProtocolError("Connection aborted.", RemoteDisconnected("closed"))
        ),
    ],
)
def test_no_answer_after_sending_is_ambiguous(error: requests.RequestException) -> None:
    def http(_url: str, _data: bytes, _headers: Mapping[str, str]) -> Reply:
        raise error

    outcome = TeamsTransport(http=http).deliver(HOOK, payload(), key="k1")
    assert (outcome.ok, outcome.ambiguous, outcome.unreachable) == (False, True, False)


def test_429s_in_a_row_give_up_after_a_few_posts() -> None:
    fake = FakeTime()
    http = ScriptedHttp(fake, *[(429, {"Retry-After": "1"})] * 5)
    outcome = transport(fake, http).deliver(HOOK, payload(), key="k1")
    assert not outcome.ok and outcome.retry_after == 1.0
    assert len(http.calls) == MAX_POSTS


def test_an_untrusted_certificate_is_refused(
    webhook: Webhook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    channels = Channels(NotificationSettings(home=tmp_path))
    try:
        outcome = channels.send_teams(webhook.url(), "Reminder", "body", key="k:tls")
    finally:
        channels.close()
    assert not outcome.ok and not outcome.unreachable  # reached, and refused by us: no outage
    assert outcome.error is not None and "TLS" in outcome.error
    assert "sig=" not in outcome.error and "s3cr3tSig" not in outcome.error
    assert webhook.hits == []


def test_scrub_removes_urls_paths_and_signatures() -> None:
    text = f"HTTPSConnectionPool(host='x', port=443): Max retries exceeded with url: {HOOK[40:]}"
    cleaned = scrub(text + " " + HOOK + " sig=abc", HOOK)
    assert "s3cr3tSig" not in cleaned and "sig=" not in cleaned and "/workflows/" not in cleaned


# --- Unit: the card -------------------------------------------------------------------------


def test_the_card_title_is_markdown_escaped_and_the_body_kept() -> None:
    made = card("Agenda: *Board* [1](http://x) #2 <b>_x_</b> ~y~ |z|", r"already \*escaped\*")
    title, body = made["attachments"][0]["content"]["body"]
    assert title["text"] == (r"Agenda: \*Board\* \[1\](http://x) \#2 \<b\>\_x\_\</b\> \~y\~ \|z\|")
    assert (title["style"], body["text"], body["wrap"]) == ("heading", r"already \*escaped\*", True)
    assert made["type"] == "message"


def test_the_card_fits_teams_cap() -> None:
    made = card("Big", "é" * 40_000)
    assert len(encode(made)) <= PAYLOAD_LIMIT
    assert made["attachments"][0]["content"]["body"][1]["text"].endswith("…")


def test_the_apprise_url_carries_the_webhook_whole() -> None:
    url = teams_url(HOOK)
    assert url.startswith("wctteams://prod-01.westeurope.logic.azure.com?webhook=https%3A%2F%2F")
    assert "sig%3Ds3cr3tSig" in url


# --- Integration: a real HTTPS endpoint, real time, judged by counts and its own clock --------


def test_a_429_is_honoured_and_sends_no_duplicate(webhook: Webhook, tmp_path: Path) -> None:
    webhook.script = [(429, "1")]
    channels = Channels(NotificationSettings(home=tmp_path))
    try:
        outcome = channels.send_teams(webhook.url(), "Reminder", "Please *act*", key="k:1:teams")
    finally:
        channels.close()
    assert outcome.ok, outcome.error
    assert [(h.key, h.status) for h in webhook.hits] == [("k:1:teams", 429), ("k:1:teams", 202)]
    assert webhook.early == []  # nothing arrived before the time the 429 asked for
    assert webhook.accepted() == {"k:1:teams": 1}


def _teams_messages(
    engine: Engine, clock: FixedClock, hooks: list[str], per_hook: int, tag: str = ""
) -> list[int]:
    ids = []
    for h, hook in enumerate(hooks):
        for i in range(per_hook):
            person = add_person(
                engine,
                name=f"Member {h}-{i}",
                email=f"m{h}-{i}{tag}@example.org",
                channels="teams",
                webhook=hook,
                clock=clock,
            )
            ids.append(
                queue(
                    engine,
                    person_id=person,
                    kind="risk_escalated",
                    context={**sample("risk_escalated"), "title": f"Risk {h}-{i}"},
                    key=f"risk:{h}-{i}:escalated:teams",
                    clock=clock,
                    channel=Channel.TEAMS,
                )
            )
    return ids


def test_through_the_dispatcher_the_rate_limit_and_retry_after_hold(
    loaded: Engine, clock: FixedClock, webhook: Webhook, tmp_path: Path
) -> None:
    """10 messages to each of two webhooks, 4 worker threads, an endpoint that throttles at 4 a
    second and answers the first request with 429 Retry-After 1: all arrive once, no second of
    the endpoint's clock holds more than 4 requests to one webhook, none came early."""
    webhook.rate_limit = 4
    webhook.script = [(429, "1")]
    hooks = [webhook.url("aaaa1111"), webhook.url("bbbb2222")]
    ids = _teams_messages(loaded, clock, hooks, 10)

    result = drain(loaded, clock=clock, settings=NotificationSettings(home=tmp_path, workers=4))

    assert (result.sent, result.errors) == (20, [])
    assert all(row(loaded, i).status == Status.SENT for i in ids)
    accepted = webhook.accepted()
    assert len(accepted) == 20 and set(accepted.values()) == {1}  # no duplicates
    times = webhook.times("/workflows/")
    assert len(times) == 2
    assert all(busiest_second(t) <= 4 for t in times.values())
    assert webhook.early == []
    assert sum(h.status == 429 for h in webhook.hits) >= 1


def test_a_title_with_markdown_arrives_escaped(
    loaded: Engine, clock: FixedClock, webhook: Webhook, tmp_path: Path
) -> None:
    person = add_person(loaded, channels="teams", webhook=webhook.url(), clock=clock)
    queue(
        loaded,
        person_id=person,
        kind="risk_escalated",
        context={**sample("risk_escalated"), "title": "Vacancies *up* [x](http://y) #1 <b>_z_"},
        key="risk:8:escalated:p-1:teams",
        clock=clock,
        channel=Channel.TEAMS,
    )
    result = drain(loaded, clock=clock, settings=NotificationSettings(home=tmp_path))
    assert result.sent == 1
    [post] = webhook.posts
    title = post["attachments"][0]["content"]["body"][0]
    assert title["id"] == "title"
    assert title["text"].endswith(r"Vacancies \*up\* \[x\](http://y) \#1 \<b\>\_z\_")


def test_a_500_fails_with_a_clear_reason_and_no_signature(
    loaded: Engine, clock: FixedClock, webhook: Webhook, tmp_path: Path
) -> None:
    webhook.status[0] = 500
    person = add_person(loaded, channels="teams", webhook=webhook.url(), clock=clock)
    message_id = queue(
        loaded,
        person_id=person,
        kind="reminder",
        context=sample("reminder"),
        key="reminder:2:p-1:teams",
        clock=clock,
        channel=Channel.TEAMS,
    )
    result = drain(loaded, clock=clock, settings=NotificationSettings(home=tmp_path))
    assert (result.sent, result.failed) == (0, 1)
    error = row(loaded, message_id).last_error
    assert error is not None and "HTTP 500" in error
    assert "sig=" not in error and "s3cr3tSig" not in error and "/workflows/" not in error


# --- a body's Teams channel (constitution data: the environment variable that holds it) -------


def _board_with_channel(engine: Engine, clock: FixedClock, env: str) -> int:
    """Wirral with the Board's Teams channel named, its members imported, and its meeting of 9
    March 2027 called for items: the id of that meeting."""
    from datetime import date

    from models import meetings
    from models.commands import apply_constitution
    from models.constitution import load_constitution
    from models.steps.engine import run_step
    from models.uow import UnitOfWork

    from .cycles_support import populate, run

    wirral = load_constitution()
    bodies = [
        b.model_copy(update={"teams_channel": env}) if b.id == "board" else b for b in wirral.bodies
    ]
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        apply_constitution(
            uow, constitution=wirral.model_copy(update={"bodies": bodies}), source="x"
        )
        uow.commit()
    populate(engine, clock)
    planned = run(
        engine, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=date(2027, 3, 9))
    )
    [call] = [s for s in planned.steps if s.kind == "meeting.call_for_items"]
    clock.set(call.due_at)
    assert run_step(engine, clock, call.key).result == "acted"
    return planned.meeting_id


def test_a_message_to_a_body_is_posted_once_to_its_teams_channel(
    loaded: Engine,
    clock: FixedClock,
    webhook: Webhook,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _board_with_channel(loaded, clock, "WCT_TEAMS_BOARD")
    monkeypatch.setenv("WCT_TEAMS_BOARD", webhook.url("board0001"))
    result = drain(loaded, clock=clock, settings=NotificationSettings(home=tmp_path))
    assert (result.failed, result.dead, result.errors) == (0, 0, [])
    key = "meeting:board:2027-03-09:call-for-items:body-board:teams"
    assert webhook.accepted() == {key: 1}  # one post to the channel, whatever the members
    emails = list((tmp_path / "mail").glob("*.eml"))
    assert len(emails) == 7  # and each of the Board's seven members had their own email
    again = drain(loaded, clock=clock, settings=NotificationSettings(home=tmp_path))
    assert again.sent == 0 and webhook.accepted() == {key: 1}


def test_a_body_channel_whose_setting_is_missing_is_dead_with_the_reason(
    loaded: Engine, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _board_with_channel(loaded, clock, "WCT_TEAMS_BOARD")
    monkeypatch.delenv("WCT_TEAMS_BOARD", raising=False)
    result = drain(loaded, clock=clock, settings=NotificationSettings(home=tmp_path))
    assert result.dead == 1
    assert any(
        "WCT_TEAMS_BOARD (the Teams channel of" in e and "is not set" in e for e in result.errors
    )
