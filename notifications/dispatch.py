"""Drain the outbox once: claim due rows, render, deliver through apprise, record the receipt.

Plain functions, so the Prefect flow (flows/dispatch.py), the `wct dispatch` command and the tests
share one path. How "nothing lost, nothing sent twice" holds, step by step:

1. `claim` (one transaction, FOR UPDATE SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite) moves
   due rows to `claimed` with a lease; expired leases are recovered first (models/outbox.py).
2. Render and build the message. A template error, a bad context or a header injection sends
   nothing: the row is marked failed (or dead) with the reason, still from `claimed`.
3. `begin_send` is committed: the row is `sending`. Only then do the bytes leave. (Per chunk of
   `send_chunk` messages, to keep a fan-out fast; a crash can leave that many `unknown`.)
4. apprise's result is checked (False and None are failures); `mark_sent` or `mark_failed` (backoff
   with jitter, dead after the constitution's `delivery.max_attempts`) is committed.

A crash between 3 and 4 leaves `sending` with a lease that runs out; the next drain turns it into
`unknown`, which is never resent automatically. So does a connection lost during SMTP DATA (the
server may have taken the message): `unknown` at once, not `failed`. That is where the guarantee
ends: an SMTP server that accepted a message whose 250 we never heard. We do not guess; a
coordinator decides, and the `X-WCT-Key` header and key-derived Message-ID make a duplicate
recognisable if they resend. The mail folder channel closes even that gap, since a key maps to one
file name created atomically.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import outbox
from models.calendar_invite import Attendee, Event, Method, invite
from models.clock import Clock
from models.commands import current_constitution
from models.constitution import DeliveryPolicy
from models.errors import WctError
from models.meetings.papers import meeting_at, meeting_papers
from models.tables import Channel, Person
from notifications.channels import Channels, Outcome
from notifications.config import NotificationSettings, get_notification_settings
from notifications.contexts import (
    INVITE_KINDS,
    ContextInvalid,
    MeetingCancelled,
    MeetingNotice,
    MessageContext,
    validate_context,
)
from notifications.email_message import AddressInvalid, Attachment, build_email
from notifications.links import LinkFailed, LinkMinter, MessageLinks
from notifications.papers import ATTACHMENT_LIMIT, papers_filename, papers_html
from notifications.render import HeaderInjection, TemplateFailed, render

#: Test hook: with WCT_DISPATCH_CRASH=after-send the process SIGKILLs itself right after a send
#: returned and before its receipt is committed -- the one window the design must survive.
CRASH_ENV = "WCT_DISPATCH_CRASH"

#: The kinds of email that carry the meeting's papers (HTML) as an attachment: the agenda, and
#: the minutes (no minutes message is sent yet; when one is, its context must name the meeting
#: by `body` and `starts_at`, as the agenda's does).
PAPERS_KINDS = frozenset({"agenda", "minutes"})

log = logging.getLogger(__name__)


Entry = tuple[outbox.Claimed, outbox.Status, str | None]
InFlight = list[tuple[outbox.Claimed, "Future[Outcome]"]]


@dataclass(frozen=True)
class Recipient:
    id: int
    name: str
    email: str
    teams_webhook: str | None
    active: bool
    pseudonym: str = ""


@dataclass(frozen=True)
class Prepared:
    """A message ready to transmit on its channel."""

    subject: str
    email_wire: str | None = None
    teams_markdown: str | None = None
    teams_webhook: str | None = None


@dataclass
class DrainResult:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    requeued: int = 0
    unknown: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "failed": self.failed,
            "dead": self.dead,
            "skipped": self.skipped,
            "requeued": self.requeued,
            "unknown": self.unknown,
            "errors": self.errors,
        }


class Undeliverable(WctError):
    """The message can never be delivered as queued (no address, unknown kind): dead at once."""


def calendar_event(
    context: MeetingNotice | MeetingCancelled,
    *,
    recipient: Recipient,
    settings: NotificationSettings,
    links: MessageLinks | None = None,
) -> Event:
    """The meeting as the recipient's calendar shows it; its description says what to do, with
    the recipient's own link when the message asks for something (a calendar has no button)."""
    description = context.action
    if links is not None and links.action is not None:
        description = f"{description}\n\n{links.action.label}: {links.action.url}"
    return Event(
        uid=context.ical_uid,
        sequence=context.ical_sequence,
        starts_at=context.starts_at,
        ends_at=context.ends_at,
        summary=f"{context.body} meeting",
        location=context.location,
        description=description,
        organizer_email=settings.mail_from,
        organizer_name=settings.mail_from_name,
        cancelled=isinstance(context, MeetingCancelled),
        attendees=(Attendee(recipient.name, recipient.email),),
    )


def prepare(
    *,
    key: str,
    kind: str,
    channel: str,
    context: MessageContext,
    recipient: Recipient,
    settings: NotificationSettings,
    now: datetime,
    links: MessageLinks | None = None,
    attachments: Sequence[Attachment] = (),
) -> Prepared:
    """Render and build one message, with the recipient's `links` (and, by email, the
    `attachments`); raises TemplateFailed, HeaderInjection, AddressInvalid..."""
    rendered = render(kind, context, channel=channel, links=links)
    if channel == Channel.TEAMS.value:
        if not recipient.teams_webhook:
            raise Undeliverable("the recipient chose Teams but has no Teams webhook")
        return Prepared(
            rendered.subject, teams_markdown=rendered.teams, teams_webhook=recipient.teams_webhook
        )
    if channel != Channel.EMAIL.value:
        raise Undeliverable(f"unknown channel '{channel}'")
    ics, method = None, Method.REQUEST
    if kind in INVITE_KINDS and isinstance(context, MeetingNotice | MeetingCancelled):
        event = calendar_event(context, recipient=recipient, settings=settings, links=links)
        ics = invite(event, stamp=now)
        method = Method.CANCEL if event.cancelled else Method.REQUEST
    wire = build_email(
        rendered,
        key=key,
        to_name=recipient.name,
        to_email=recipient.email,
        from_name=settings.mail_from_name,
        from_email=settings.mail_from,
        now=now,
        invite=ics,
        method=method,
        attachments=attachments,
    )
    return Prepared(rendered.subject, email_wire=wire)


def papers_attachment(session: Session, *, body: str, starts_at: datetime) -> Attachment | None:
    """The papers of the meeting of `body` at `starts_at` as an HTML attachment; None when there
    is no such meeting, they cannot be made, or they are larger than ATTACHMENT_LIMIT (the
    message goes without them: the papers are also an artifact and `wct meeting papers`)."""
    try:
        meeting = meeting_at(session, body=body, starts_at=starts_at)
        if meeting is None or meeting.id is None:
            return None
        papers = meeting_papers(session, meeting.id)
        html = papers_html(papers)
    except WctError as exc:
        log.warning("papers of %s at %s not attached: %s", body, starts_at.isoformat(), exc)
        return None
    if len(html.encode("utf-8")) > ATTACHMENT_LIMIT:
        log.warning(
            "papers of %s at %s not attached: larger than %d bytes",
            body,
            starts_at,
            ATTACHMENT_LIMIT,
        )
        return None
    return Attachment(papers_filename(papers, "html"), 'text/html; charset="utf-8"', html)


def transmit(channels: Channels, prepared: Prepared) -> Outcome:
    if prepared.email_wire is not None:
        return channels.send_email(prepared.email_wire, prepared.subject)
    assert prepared.teams_markdown is not None and prepared.teams_webhook is not None
    return channels.send_teams(prepared.teams_webhook, prepared.subject, prepared.teams_markdown)


def delivery_policy(engine: Engine) -> DeliveryPolicy:
    """The constitution's retry policy; the schema default before a constitution is loaded."""
    with Session(engine) as session:
        try:
            return current_constitution(session).delivery
        except WctError:
            return DeliveryPolicy()


class Dispatcher:
    """Delivers claimed rows; one per drain (or per process), sharing channels between threads."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock,
        settings: NotificationSettings | None = None,
        policy: DeliveryPolicy | None = None,
        jitter: Callable[[], float] = random.random,
        channels: Channels | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.settings = settings or get_notification_settings()
        self.policy = policy or delivery_policy(engine)
        self.jitter = jitter
        self.channels = channels or Channels(self.settings)
        self.lease = timedelta(seconds=self.settings.lease_seconds)
        self.minter = LinkMinter(
            self.settings.web_url, home=self.settings.home, configured=self.settings.link_key
        )
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.channels.close()

    def claim(
        self, limit: int, kinds: Sequence[str] = ()
    ) -> tuple[list[outbox.Claimed], DrainResult]:
        now = self.clock.now()
        with Session(self.engine) as session:
            recovered = outbox.recover_expired(session, now=now)
            claimed = outbox.claim(session, now=now, limit=limit, lease=self.lease, kinds=kinds)
            session.commit()
        result = DrainResult(
            claimed=len(claimed), requeued=recovered.requeued, unknown=recovered.unknown
        )
        return claimed, result

    def recipients(self, person_ids: Sequence[int]) -> dict[int, Recipient]:
        with Session(self.engine) as session:
            people = session.exec(select(Person).where(col(Person.id).in_(list(person_ids)))).all()
            return {
                p.id: Recipient(p.id, p.name, p.email, p.teams_webhook, p.active, p.pseudonym)
                for p in people
                if p.id is not None
            }

    def papers(self, claimed: Sequence[outbox.Claimed]) -> dict[int, Attachment]:
        """The papers attachment of each claimed email of a `PAPERS_KINDS` kind, by message id:
        made once per meeting however many members it goes to."""
        made: dict[tuple[str, str], Attachment | None] = {}
        found: dict[int, Attachment] = {}
        wanted = [m for m in claimed if m.kind in PAPERS_KINDS and m.channel == Channel.EMAIL.value]
        if not wanted:
            return found
        with Session(self.engine) as session:
            for message in wanted:
                try:
                    data = json.loads(message.context)
                    meeting = (str(data["body"]), str(data["starts_at"]))
                    starts_at = datetime.fromisoformat(meeting[1])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # the message itself will be refused with the reason
                if meeting not in made:
                    made[meeting] = papers_attachment(session, body=meeting[0], starts_at=starts_at)
                attachment = made[meeting]
                if attachment is not None:
                    found[message.id] = attachment
        return found

    def deliver(self, claimed: Sequence[outbox.Claimed], result: DrainResult) -> DrainResult:
        """Deliver claimed rows chunk by chunk; within a chunk, `settings.workers` sends at once.

        The database work stays on this thread (SQLite serialises writers, and its busy handler
        sleeps in milliseconds when threads contend); only the network waits run in parallel, each
        worker thread on its own pooled SMTP connection. While one chunk is on the wire the next
        is rendered; it is marked `sending` only after the previous chunk's receipts are written.
        """
        people = self.recipients(sorted({c.person_id for c in claimed}))
        papers = self.papers(claimed)
        size = self.settings.send_chunk
        entries: list[Entry] = []
        in_flight: InFlight | None = None
        for start in range(0, len(claimed), size):
            ready, refused = self._prepare_chunk(claimed[start : start + size], people, papers)
            if in_flight is not None:
                entries += self._finish(in_flight)
            in_flight, skipped = self._start(ready, refused)
            entries += skipped
        if in_flight is not None:
            entries += self._finish(in_flight)
        for message, status, error in entries:
            if status is outbox.Status.SENT:
                result.sent += 1
            elif status is outbox.Status.FAILED:
                result.failed += 1
            elif status is outbox.Status.DEAD:
                result.dead += 1
            elif status is outbox.Status.UNKNOWN:
                result.unknown += 1
            else:
                result.skipped += 1
            if error:
                result.errors.append(f"#{message.id} {message.kind}: {error}")
        return result

    def _send(self, prepared: Prepared) -> Outcome:
        outcome = transmit(self.channels, prepared)
        if os.environ.get(CRASH_ENV) == "after-send":
            os.kill(os.getpid(), signal.SIGKILL)
        return outcome

    def _submit(self, prepared: Prepared) -> Future[Outcome]:
        if self.settings.workers == 1:
            done: Future[Outcome] = Future()
            done.set_result(self._send(prepared))
            return done
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.settings.workers, thread_name_prefix="wct-send"
            )
        return self._pool.submit(self._send, prepared)

    def _prepare(
        self,
        message: outbox.Claimed,
        recipient: Recipient | None,
        attachment: Attachment | None = None,
    ) -> Prepared | tuple[outbox.Status, str]:
        """The message ready to send, or why it cannot be: (FAILED|DEAD, reason)."""
        if recipient is None or not recipient.active or not recipient.email:
            return outbox.Status.DEAD, "the recipient is no longer an active member"
        try:
            context = validate_context(message.kind, json.loads(message.context))
            now = self.clock.now()
            return prepare(
                key=message.key,
                kind=message.kind,
                channel=message.channel,
                context=context,
                recipient=recipient,
                settings=self.settings,
                now=now,
                links=self.minter.links(context, person=recipient.pseudonym, now=now),
                attachments=() if attachment is None else (attachment,),
            )
        except (ContextInvalid, Undeliverable, AddressInvalid, json.JSONDecodeError) as exc:
            return outbox.Status.DEAD, str(exc)
        except (TemplateFailed, HeaderInjection, LinkFailed) as exc:
            return outbox.Status.FAILED, str(exc)

    def _record_failure(
        self,
        session: Session,
        message: outbox.Claimed,
        status: outbox.Status,
        error: str,
        *,
        sending: bool,
    ) -> outbox.Status:
        if status is outbox.Status.DEAD:
            outbox.mark_dead(
                session, message.id, attempt=message.attempts, error=error, sending=sending
            )
            return outbox.Status.DEAD
        return outbox.mark_failed(
            session,
            message.id,
            attempt=message.attempts,
            now=self.clock.now(),
            error=error,
            max_attempts=self.policy.max_attempts,
            first_retry_seconds=self.policy.first_retry_seconds,
            jitter=min(self.jitter(), 0.999999),
            sending=sending,
        )

    def _prepare_chunk(
        self,
        chunk: Sequence[outbox.Claimed],
        people: dict[int, Recipient],
        papers: dict[int, Attachment],
    ) -> tuple[
        list[tuple[outbox.Claimed, Prepared]], list[tuple[outbox.Claimed, outbox.Status, str]]
    ]:
        """Render and build each message (no database work: it overlaps the previous sends)."""
        ready: list[tuple[outbox.Claimed, Prepared]] = []
        refused: list[tuple[outbox.Claimed, outbox.Status, str]] = []
        for message in chunk:
            prepared = self._prepare(message, people.get(message.person_id), papers.get(message.id))
            if isinstance(prepared, Prepared):
                ready.append((message, prepared))
            else:
                refused.append((message, *prepared))
        return ready, refused

    def _start(
        self,
        ready: list[tuple[outbox.Claimed, Prepared]],
        refused: list[tuple[outbox.Claimed, outbox.Status, str]],
    ) -> tuple[InFlight, list[Entry]]:
        """Record what cannot be sent; commit `sending` for the rest; only then send them.

        Two commits a chunk instead of two a message: the price is that a crash mid-chunk leaves
        up to `send_chunk` rows `unknown` (some perhaps never sent). Never a duplicate, either way.
        """
        entries: list[Entry] = []
        with Session(self.engine) as session:
            for message, status, error in refused:
                status = self._record_failure(session, message, status, error, sending=False)
                entries.append((message, status, error))
            ours = outbox.begin_send_many(
                session,
                [(m.id, m.attempts) for m, _ in ready],
                now=self.clock.now(),
                lease=self.lease,
            )
            session.commit()
        entries += [(m, outbox.Status.CLAIMED, None) for m, _ in ready if m.id not in ours]
        flight = [(m, self._submit(prepared)) for m, prepared in ready if m.id in ours]
        return flight, entries

    def _finish(self, flight: InFlight) -> list[Entry]:
        """Wait for a chunk's sends and commit their receipts (or failures) together."""
        outcomes = [(message, future.result()) for message, future in flight]
        entries: list[Entry] = []
        with Session(self.engine) as session:
            sent = [(m.id, m.attempts) for m, outcome in outcomes if outcome.ok]
            outbox.mark_sent_many(session, sent, now=self.clock.now())
            for message, outcome in outcomes:
                if outcome.ok:
                    entries.append((message, outbox.Status.SENT, None))
                elif outcome.ambiguous:
                    error = outcome.error or "delivery outcome unknown"
                    outbox.mark_unknown(session, message.id, attempt=message.attempts, error=error)
                    entries.append((message, outbox.Status.UNKNOWN, error))
                else:
                    error = outcome.error or "delivery failed"
                    status = self._record_failure(
                        session, message, outbox.Status.FAILED, error, sending=True
                    )
                    entries.append((message, status, error))
            session.commit()
        return entries


def drain_once(
    engine: Engine,
    *,
    clock: Clock,
    settings: NotificationSettings | None = None,
    limit: int | None = None,
    jitter: Callable[[], float] = random.random,
) -> DrainResult:
    """Claim one batch and deliver it; the whole of one dispatcher pass."""
    dispatcher = Dispatcher(engine, clock=clock, settings=settings, jitter=jitter)
    try:
        claimed, result = dispatcher.claim(limit or dispatcher.settings.batch_size)
        return dispatcher.deliver(claimed, result)
    finally:
        dispatcher.close()


def drain(
    engine: Engine,
    *,
    clock: Clock,
    settings: NotificationSettings | None = None,
    max_batches: int = 1000,
    jitter: Callable[[], float] = random.random,
) -> DrainResult:
    """Drain batches until none is due (or `max_batches`); one channel set for all batches."""
    dispatcher = Dispatcher(engine, clock=clock, settings=settings, jitter=jitter)
    total = DrainResult()
    try:
        for _ in range(max_batches):
            claimed, result = dispatcher.claim(dispatcher.settings.batch_size)
            total.requeued += result.requeued
            total.unknown += result.unknown
            if not claimed:
                break
            total.claimed += result.claimed
            done = dispatcher.deliver(claimed, DrainResult())
            total.unknown += done.unknown
            total.sent += done.sent
            total.failed += done.failed
            total.dead += done.dead
            total.skipped += done.skipped
            total.errors += done.errors
    finally:
        dispatcher.close()
    return total
