"""End to end: outbox rows delivered to a real SMTP server, a real HTTPS webhook, a mail folder."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import icalendar
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from models.clock import LONDON, FixedClock
from models.outbox import Status
from models.tables import Channel
from notifications.channels import eml_name
from notifications.config import NotificationSettings, TlsMode
from notifications.dispatch import Dispatcher, drain, drain_once
from notifications.samples import sample
from tests.notifications_fixtures import (
    Collector,
    SmtpServer,
    Webhook,
    add_person,
    free_port,
    queue,
    row,
    self_signed,
)


def _parts(message: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in message.walk():
        found.setdefault(part.get_content_type(), part)
    return found


def test_meeting_notice_arrives_with_text_html_and_invite(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    person = add_person(loaded, name="Sam O'Neil", email="sam@example.org", clock=clock)
    message_id = queue(
        loaded,
        person_id=person,
        kind="meeting_notice",
        context=sample("meeting_notice", "Sam O'Neil"),
        key="meeting:board:2027-01-12:notice:p-1:email",
        clock=clock,
    )

    result = drain_once(loaded, clock=clock, settings=smtp_server.settings(tmp_path))

    assert (result.sent, result.failed, result.errors) == (1, 0, [])
    [got] = smtp_server.received
    assert got.recipients == ["sam@example.org"]
    assert got.sender == "wct@example.org"
    msg = got.message
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == (
        "Wirral Children's Trust Board meeting, Tuesday 12 January 2027 at 10:00"
    )
    assert msg["X-WCT-Key"] == "meeting:board:2027-01-12:notice:p-1:email"
    parts = _parts(msg)
    text = parts["text/plain"].get_content()
    html = parts["text/html"].get_content()
    assert "Dear Sam O'Neil," in text
    assert "What to do: Please attend." in text
    assert "clause 20.4.1 of the Memorandum" in text
    assert "Send apologies:\nhttp://127.0.0.1:4300/l/" in text  # the default WCT_WEB_URL
    assert ">Send apologies</a>" in html
    assert "Dear Sam O&#39;Neil," in html
    assert "Tuesday 22 December 2026 at 17:00" in html  # items due, shown as given
    calendar_part = parts["text/calendar"]
    assert calendar_part.get_param("method") == "REQUEST"
    cal = icalendar.Calendar.from_ical(calendar_part.get_content())
    assert str(cal["METHOD"]) == "REQUEST"
    [event] = [c for c in cal.walk() if c.name == "VEVENT"]
    assert str(event["UID"]) == "meeting-board-2027-01-12@wct"
    assert int(str(event["SEQUENCE"])) == 0
    assert event.decoded("DTSTART") == datetime(2027, 1, 12, 10, 0, tzinfo=LONDON)
    assert event.decoded("DTEND") == datetime(2027, 1, 12, 12, 0, tzinfo=LONDON)
    assert str(event["DTSTART"].params["TZID"]) == "Europe/London"
    assert [c.name for c in cal.walk() if c.name == "VTIMEZONE"] == ["VTIMEZONE"]
    assert "sam@example.org" in str(event["ATTENDEE"])
    assert parts["application/ics"].get_filename() == "invite.ics"
    stored = row(loaded, message_id)
    assert stored.status == Status.SENT
    assert stored.sent_at == clock.now()
    assert stored.attempts == 1


def test_cancellation_keeps_the_uid_and_raises_the_sequence(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    person = add_person(loaded, clock=clock)
    queue(
        loaded,
        person_id=person,
        kind="meeting_cancelled",
        context=sample("meeting_cancelled"),
        key="meeting:board:2027-01-12:cancelled:p-1:email",
        clock=clock,
    )
    drain_once(loaded, clock=clock, settings=smtp_server.settings(tmp_path))
    [got] = smtp_server.received
    calendar_part = _parts(got.message)["text/calendar"]
    assert calendar_part.get_param("method") == "CANCEL"
    cal = icalendar.Calendar.from_ical(calendar_part.get_content())
    [event] = [c for c in cal.walk() if c.name == "VEVENT"]
    assert str(cal["METHOD"]) == "CANCEL"
    assert str(event["UID"]) == "meeting-board-2027-01-12@wct"
    assert int(str(event["SEQUENCE"])) == 1
    assert str(event["STATUS"]) == "CANCELLED"


def test_smtp_down_then_up_every_message_arrives_exactly_once(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = smtp_server.settings(tmp_path)
    smtp_server.stop()
    people = [
        add_person(loaded, name=f"Member {n}", email=f"m{n}@example.org", clock=clock)
        for n in range(5)
    ]
    ids = [
        queue(
            loaded,
            person_id=p,
            kind="reminder",
            context=sample("reminder", f"Member {n}"),
            key=f"report:exec:2026-Q4:reminder:{p}:email",
            clock=clock,
        )
        for n, p in enumerate(people)
    ]

    down = drain_once(loaded, clock=clock, settings=settings, jitter=lambda: 0.0)
    assert (down.sent, down.failed) == (0, 5)
    first = row(loaded, ids[0])
    assert first.status == Status.FAILED
    assert first.last_error is not None and f"127.0.0.1:{smtp_server.port}" in first.last_error
    # not due yet: the backoff (policy first_retry_seconds, jitter 0 -> half of it) holds them
    assert drain_once(loaded, clock=clock, settings=settings).claimed == 0

    smtp_server.start()
    clock.advance(timedelta(hours=1))
    up = drain(loaded, clock=clock, settings=settings)
    again = drain(loaded, clock=clock, settings=settings)

    assert (up.sent, up.failed, again.claimed) == (5, 0, 0)
    keys = sorted(r.message["X-WCT-Key"] for r in smtp_server.received)
    assert keys == sorted(f"report:exec:2026-Q4:reminder:{p}:email" for p in people)
    assert all(row(loaded, i).status == Status.SENT for i in ids)
    assert all(row(loaded, i).attempts == 2 for i in ids)


def test_teams_message_reaches_an_https_webhook_as_an_adaptive_card(
    loaded: Engine, clock: FixedClock, webhook: Webhook, tmp_path: Path
) -> None:
    person = add_person(loaded, channels="teams", webhook=webhook.url(), clock=clock)
    message_id = queue(
        loaded,
        person_id=person,
        kind="risk_escalated",
        context={**sample("risk_escalated"), "title": "Vacancies *up* [click](http://x)"},
        key="risk:7:escalated:p-1:teams",
        clock=clock,
        channel=Channel.TEAMS,
    )
    settings = NotificationSettings(home=tmp_path)

    result = drain_once(loaded, clock=clock, settings=settings)

    assert (result.sent, result.errors) == (1, [])
    [post] = webhook.posts
    assert webhook.paths[0].startswith("/workflows/a1b2c3d4/triggers/manual/paths/invoke?")
    assert "sig=s3cr3tSig" in webhook.paths[0]
    assert post["type"] == "message"
    [attachment] = post["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    texts = [block.get("text", "") for block in card["body"]]
    joined = "\n".join(texts)
    assert "Risk escalated to Wirral Children's Trust Board" in joined
    assert r"Vacancies \*up\* \[click\](http://x)" in joined  # shown, not a link
    assert "MoU clause 16.1" in joined
    assert row(loaded, message_id).status == Status.SENT


def test_webhook_refusing_is_a_failure_not_a_success(
    loaded: Engine, clock: FixedClock, webhook: Webhook, tmp_path: Path
) -> None:
    webhook.status[0] = 500
    person = add_person(loaded, channels="teams", webhook=webhook.url(), clock=clock)
    message_id = queue(
        loaded,
        person_id=person,
        kind="reminder",
        context=sample("reminder"),
        key="reminder:1:p-1:teams",
        clock=clock,
        channel=Channel.TEAMS,
    )
    result = drain_once(loaded, clock=clock, settings=NotificationSettings(home=tmp_path))
    assert (result.sent, result.failed) == (0, 1)
    stored = row(loaded, message_id)
    assert stored.status == Status.FAILED
    assert stored.last_error is not None and "s3cr3tSig" not in stored.last_error


def test_without_smtp_mail_goes_to_the_mail_folder_once(
    loaded: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    person = add_person(loaded, clock=clock)
    queue(
        loaded,
        person_id=person,
        kind="agenda",
        context=sample("agenda"),
        key="meeting:board:2027-01-12:agenda:p-1:email",
        clock=clock,
    )
    settings = NotificationSettings(home=tmp_path / "home")
    result = drain_once(loaded, clock=clock, settings=settings)
    assert result.sent == 1
    [eml] = list((tmp_path / "home" / "mail").glob("*.eml"))
    text = eml.read_text()
    assert "X-WCT-Key: meeting:board:2027-01-12:agenda:p-1:email" in text
    assert "Subject: Agenda: Wirral Children's Trust Board" in text
    assert list((tmp_path / "home" / "mail").glob(".tmp-*")) == []


def test_template_error_sends_nothing_and_records_the_reason(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    person = add_person(loaded, clock=clock)
    bad = {k: v for k, v in sample("reminder").items() if k != "what"}
    message_id = queue(
        loaded, person_id=person, kind="reminder", context=bad, key="r:1", clock=clock
    )
    result = drain_once(loaded, clock=clock, settings=smtp_server.settings(tmp_path))
    assert smtp_server.received == []
    assert result.dead == 1  # a context that does not fit its kind can never be sent
    stored = row(loaded, message_id)
    assert stored.status == Status.DEAD
    assert stored.last_error is not None and "what: Field required" in stored.last_error


def test_header_injection_in_a_title_is_refused_and_nothing_is_sent(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    person = add_person(loaded, clock=clock)
    context = {**sample("risk_escalated"), "title": "Risk\r\nBcc: everyone@example.org"}
    message_id = queue(
        loaded, person_id=person, kind="risk_escalated", context=context, key="r:2", clock=clock
    )
    result = drain_once(loaded, clock=clock, settings=smtp_server.settings(tmp_path))
    assert smtp_server.received == []
    assert result.failed == 1
    stored = row(loaded, message_id)
    assert stored.status == Status.FAILED
    assert stored.last_error is not None
    assert "line break" in stored.last_error and "subject" in stored.last_error


def test_dead_after_the_constitution_limit(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = smtp_server.settings(tmp_path)
    smtp_server.stop()
    person = add_person(loaded, clock=clock)
    message_id = queue(
        loaded,
        person_id=person,
        kind="reminder",
        context=sample("reminder"),
        key="r:3",
        clock=clock,
    )
    statuses = []
    for _ in range(8):  # the Wirral constitution's delivery.max_attempts default
        drain_once(loaded, clock=clock, settings=settings)
        statuses.append(row(loaded, message_id).status)
        clock.advance(timedelta(days=1))
    assert statuses == [Status.FAILED] * 7 + [Status.DEAD]
    assert row(loaded, message_id).attempts == 8
    assert drain_once(loaded, clock=clock, settings=settings).claimed == 0


def test_context_is_stored_as_json(loaded: Engine, clock: FixedClock) -> None:
    person = add_person(loaded, clock=clock)
    message_id = queue(
        loaded, person_id=person, kind="agenda", context=sample("agenda"), key="a:1", clock=clock
    )
    assert json.loads(row(loaded, message_id).context)["items"][0]["position"] == 1


@pytest.mark.parametrize("tls", ["starttls"])
def test_settings_render_the_tls_mode_into_the_channel_url(tls: str, tmp_path: Path) -> None:
    from notifications.channels import email_url

    url = email_url(
        NotificationSettings(
            home=tmp_path,
            smtp_host="mail.example.org",
            smtp_tls=TlsMode(tls),
            smtp_user="u",
            smtp_password=SecretStr("p@ss word"),
        )
    )
    assert url.startswith("wctsmtp://u:p%40ss%20word@mail.example.org:587?mode=starttls")


PASSWORD = "Sup3r-S3cret!pw"


@dataclass
class TlsSmtp:
    collector: Collector
    cert: Path
    port: int
    logins: list[str]


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[TlsSmtp]:
    """aiosmtpd requiring STARTTLS and AUTH, with a self-signed certificate we make trusted."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    logins: list[str] = []

    def authenticator(*args: Any) -> AuthResult:
        data = args[-1]
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        logins.append(data.login.decode())
        return AuthResult(success=data.password == PASSWORD.encode(), handled=False)

    server = TlsSmtp(Collector(), cert, free_port(), logins)
    controller = Controller(
        server.collector,
        hostname="127.0.0.1",
        port=server.port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    yield server
    controller.stop()


@pytest.mark.parametrize("password", [PASSWORD, "wrong-" + PASSWORD])
def test_starttls_with_auth_verifies_the_certificate_and_never_shows_the_password(
    loaded: Engine,
    clock: FixedClock,
    tmp_path: Path,
    tls_smtp: TlsSmtp,
    caplog: pytest.LogCaptureFixture,
    password: str,
) -> None:
    person = add_person(loaded, clock=clock)
    message_id = queue(
        loaded,
        person_id=person,
        kind="reminder",
        context=sample("reminder"),
        key="t:1",
        clock=clock,
    )
    settings = NotificationSettings(
        home=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=tls_smtp.port,
        smtp_tls=TlsMode.STARTTLS,
        smtp_ca_file=tls_smtp.cert,  # verified against this CA, not skipped
        smtp_user="wct-relay",
        smtp_password=SecretStr(password),
        mail_from="wct@example.org",
    )
    caplog.set_level(logging.DEBUG)

    result = drain_once(loaded, clock=clock, settings=settings)

    assert set(tls_smtp.logins) == {"wct-relay"}  # smtplib tries PLAIN, then LOGIN
    stored = row(loaded, message_id)
    if password == PASSWORD:
        assert (result.sent, len(tls_smtp.collector.received)) == (1, 1)
        assert stored.status == Status.SENT
    else:
        assert (result.failed, tls_smtp.collector.received) == (1, [])
        assert stored.last_error is not None and "535" in stored.last_error
    shown = caplog.text + repr(settings) + str(result.errors) + str(stored.last_error)
    assert "S3cret" not in shown


def test_an_untrusted_certificate_is_refused(
    loaded: Engine, clock: FixedClock, tmp_path: Path, tls_smtp: TlsSmtp
) -> None:
    person = add_person(loaded, clock=clock)
    message_id = queue(
        loaded,
        person_id=person,
        kind="reminder",
        context=sample("reminder"),
        key="t:2",
        clock=clock,
    )
    settings = NotificationSettings(
        home=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=tls_smtp.port,
        smtp_tls=TlsMode.STARTTLS,
        smtp_user="wct-relay",
        smtp_password=SecretStr(PASSWORD),
        mail_from="wct@example.org",
    )
    result = drain_once(loaded, clock=clock, settings=settings)
    assert (result.failed, tls_smtp.collector.received, tls_smtp.logins) == (1, [], [])
    assert "CERTIFICATE_VERIFY_FAILED" in str(row(loaded, message_id).last_error)


def test_the_mail_folder_never_holds_two_files_for_one_key(tmp_path: Path) -> None:
    from notifications.channels import write_eml

    assert write_eml(tmp_path, "k:1", "Subject: first\r\n\r\nx\r\n")
    assert not write_eml(tmp_path, "k:1", "Subject: second\r\n\r\nx\r\n")  # a resend after a crash
    assert [p.name for p in tmp_path.iterdir()] == [eml_name("k:1")]
    assert "first" in (tmp_path / eml_name("k:1")).read_text()


class HangUpAfterData(Collector):
    """Takes the message, then drops the connection before its 250 reaches the client."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await super().handle_DATA(server, session, envelope)
        server.transport.close()
        return "250 too late"


def test_a_lost_reply_to_data_is_unknown_and_not_resent(
    loaded: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    collector = HangUpAfterData()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        person = add_person(loaded, clock=clock)
        message_id = queue(
            loaded,
            person_id=person,
            kind="reminder",
            context=sample("reminder"),
            key="h:1",
            clock=clock,
        )
        settings = NotificationSettings(
            home=tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_tls=TlsMode.NONE,
            mail_from="wct@example.org",
        )
        first = drain(loaded, clock=clock, settings=settings)
        clock.advance(timedelta(days=1))
        later = drain(loaded, clock=clock, settings=settings)
    finally:
        controller.stop()
    assert (first.sent, first.failed, first.unknown, later.claimed) == (0, 0, 1, 0), first.errors
    assert len(collector.received) == 1  # it did arrive; we just never heard so
    stored = row(loaded, message_id)
    assert stored.status == Status.UNKNOWN
    assert stored.last_error is not None and "may have accepted it" in stored.last_error


def test_one_dispatcher_delivers_day_after_day_at_a_still_clock(
    loaded: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    """As `wct simulate` delivers: one dispatcher for the run, its clock set to each day's
    moment. Everything due by then arrives once, batch after batch (a short batch ends the
    drain); what is queued later waits for its day; a day with nothing due sends nothing."""
    alex = add_person(loaded, clock=clock)
    keys = [f"still:reminder:{n}:email" for n in range(5)]

    ids: list[int] = []

    def enqueue(some: list[str]) -> None:
        for key in some:
            context = sample("reminder")
            made = queue(
                loaded, person_id=alex, kind="reminder", context=context, key=key, clock=clock
            )
            ids.append(made)

    moment = FixedClock(clock.now())
    settings = NotificationSettings(home=tmp_path / "home", batch_size=2)
    dispatcher = Dispatcher(loaded, clock=moment, settings=settings, jitter=lambda: 0.0)
    try:
        enqueue(keys[:3])
        first = dispatcher.drain(still_clock=True)
        clock.advance(timedelta(days=1))
        enqueue(keys[3:])
        before = dispatcher.drain(still_clock=True)  # still the first day's moment
        moment.set(clock.now())
        second = dispatcher.drain(still_clock=True)
        third = dispatcher.drain(still_clock=True)
    finally:
        dispatcher.close()

    assert [r.sent for r in (first, before, second, third)] == [3, 0, 2, 0]
    folder = tmp_path / "home" / "mail"
    assert sorted(p.name for p in folder.glob("*.eml")) == sorted(eml_name(k) for k in keys)
    assert [row(loaded, i).status for i in ids] == [Status.SENT] * 5
