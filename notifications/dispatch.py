"""Drain the outbox once: claim due rows, render, deliver through apprise, record the receipt.

Plain functions, so the Prefect flow (flows/dispatch.py), the `wct dispatch` command and the tests
share one path. How "nothing lost, nothing sent twice" holds, step by step:

1. `claim` (one transaction, FOR UPDATE SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite) moves
   due rows to `claimed` with a lease; expired leases are recovered first (models/outbox.py).
2. Render and build the message. A template error, a bad context or a header injection sends
   nothing: the row is marked failed (or dead) with the reason, still from `claimed`.
3. `begin_send` is committed per message: the row is `sending`. Only then do its bytes leave, on
   one of `workers` connections. The receipts of the sends that finished and the `sending` of the
   next ones share one commit, so at any moment at most `workers` rows are `sending`.
4. apprise's result is checked (False and None are failures); `mark_sent` or `mark_failed` (backoff
   with jitter, dead after the constitution's `delivery.max_attempts`) is committed. A receiver
   that says "retry after N s" (`Outcome.retry_after`) gets the message again then, and the attempt
   does not count (`mark_throttled`).

A crash between 3 and 4 leaves `sending` with a lease that runs out; the next drain turns it into
`unknown`, which is never resent automatically. So does a connection lost during SMTP DATA (the
server may have taken the message): `unknown` at once, not `failed`. That is where the guarantee
ends: an SMTP server that accepted a message whose 250 we never heard. We do not guess; a
coordinator decides, and the `X-WCT-Key` header and key-derived Message-ID make a duplicate
recognisable if they resend. The mail folder closes even that gap: a key maps to one file name
created atomically, and each drain first settles what a crash left (`outbox.settle`: the file is
there -> `sent`, it is not -> `pending`). Its files are written a chunk at a time and fsynced
together before their receipts commit.

Circuit breakers (one per SMTP server, one per Teams webhook host; state in `ChannelHealth`, rules
in models/outbox.py): after `BREAKER_THRESHOLD` refused connections in a row (`Outcome.unreachable`)
a channel is paused. Its claimed messages go back unattempted until the next probe; then one
message is sent as the probe, the others held until it answers: reached closes the breaker, refused
puts the next probe twice as far off (capped). `wct status` shows an open breaker.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import outbox
from models.calendar_invite import Attendee, Event, Method, invite
from models.clock import Clock
from models.commands import current_constitution, partnership_of
from models.constitution import DeliveryPolicy
from models.errors import WctError
from models.meetings.papers import meeting_at, meeting_papers
from models.tables import Channel, Person
from models.webhooks import workflows_url_problem
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
#: returned and before its receipt is committed -- the one window the design must survive;
#: `after-send:N` does so after the N-th send of the process (other connections may be mid-send).
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
    key: str | None = None  # the outbox key: Teams carries it in an X-WCT-Key header


@dataclass
class DrainResult:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    requeued: int = 0
    unknown: int = 0
    deferred: int = 0  # back to pending unattempted: channel paused, or "retry after"
    settled: int = 0  # left in doubt by a crash, settled by asking the transport
    errors: list[str] = field(default_factory=list)

    def add(self, other: DrainResult) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.failed += other.failed
        self.dead += other.dead
        self.skipped += other.skipped
        self.requeued += other.requeued
        self.unknown += other.unknown
        self.deferred += other.deferred
        self.settled += other.settled
        self.errors += other.errors

    def as_dict(self) -> dict[str, object]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "failed": self.failed,
            "dead": self.dead,
            "skipped": self.skipped,
            "requeued": self.requeued,
            "unknown": self.unknown,
            "deferred": self.deferred,
            "settled": self.settled,
            "errors": self.errors,
        }


@dataclass
class _Send:
    """A message on its way: what to send, and the breaker of the channel it goes through."""

    message: outbox.Claimed
    prepared: Prepared
    breaker: str | None
    probe: bool = False


class Undeliverable(WctError):
    """The message can never be delivered as queued (no address, unknown kind): dead at once."""


def calendar_event(
    context: MeetingNotice | MeetingCancelled,
    *,
    recipient: Recipient,
    settings: NotificationSettings,
    links: MessageLinks | None = None,
    organizer: MailFrom | None = None,
) -> Event:
    """The meeting as the recipient's calendar shows it, organised by whom the message is from
    (none: the settings' sender); its description says what to do, with the recipient's own
    link when the message asks for something (a calendar has no button)."""
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
        organizer_email=organizer.email if organizer else settings.mail_from,
        organizer_name=organizer.name if organizer else settings.mail_from_name,
        cancelled=isinstance(context, MeetingCancelled),
        attendees=(Attendee(recipient.name, recipient.email),),
    )


@dataclass(frozen=True)
class MailFrom:
    """Whom a message is from: the partnership's sender when its constitution names one, else
    the settings'. The settings' mailbox always sends it (the SMTP envelope)."""

    name: str
    email: str

    @classmethod
    def of(cls, engine: Engine, settings: NotificationSettings) -> MailFrom:
        """The constitution's `partnership.sender_name` / `sender_email`, each falling back to
        the settings' (`mail_from_name`, `mail_from`), also before a constitution is loaded."""
        with Session(engine) as session:
            try:
                p = current_constitution(session).partnership
                name, email = p.sender_name, p.sender_email
            except WctError:
                name = email = None
        return cls(name or settings.mail_from_name, email or settings.mail_from)


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
    mail_from: MailFrom | None = None,
) -> Prepared:
    """Render and build one message, with the recipient's `links` (and, by email, the
    `attachments`), from `mail_from` (none: the settings' sender); raises TemplateFailed,
    HeaderInjection, AddressInvalid..."""
    rendered = render(kind, context, channel=channel, links=links)
    if channel == Channel.TEAMS.value:
        if not recipient.teams_webhook:
            raise Undeliverable("the recipient chose Teams but has no Teams webhook")
        return Prepared(
            rendered.subject,
            teams_markdown=rendered.teams,
            teams_webhook=recipient.teams_webhook,
            key=key,
        )
    if channel != Channel.EMAIL.value:
        raise Undeliverable(f"unknown channel '{channel}'")
    ics, method = None, Method.REQUEST
    if kind in INVITE_KINDS and isinstance(context, MeetingNotice | MeetingCancelled):
        event = calendar_event(
            context, recipient=recipient, settings=settings, links=links, organizer=mail_from
        )
        ics = invite(event, stamp=now)
        method = Method.CANCEL if event.cancelled else Method.REQUEST
    wire = build_email(
        rendered,
        key=key,
        to_name=recipient.name,
        to_email=recipient.email,
        from_name=mail_from.name if mail_from else settings.mail_from_name,
        from_email=mail_from.email if mail_from else settings.mail_from,
        sent_by=(settings.mail_from_name, settings.mail_from),
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
    return channels.send_teams(
        prepared.teams_webhook, prepared.subject, prepared.teams_markdown, key=prepared.key
    )


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
        self.mail_from = MailFrom.of(engine, self.settings)
        self.jitter = jitter
        self.channels = channels or Channels(self.settings)
        self.lease = timedelta(seconds=self.settings.lease_seconds)
        self.minter = LinkMinter(
            self.settings.web_url, home=self.settings.home, configured=self.settings.link_key
        )
        self._pool: ThreadPoolExecutor | None = None
        self._breakers: dict[str, outbox.Breaker] = {}  # as read at the last claim, kept current
        self._probing: set[str] = set()  # the channels whose probe this dispatcher has in flight

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.channels.close()

    def drain(self, *, max_batches: int = 1000, still_clock: bool = False) -> DrainResult:
        """Claim and deliver batches until none is due (or `max_batches`), in the partnership's
        time. `still_clock`: the clock does not move while it drains (a simulated moment), so a
        batch shorter than `batch_size` took everything due and no claim follows it to find
        nothing (what a fresh claim could find is only what a moving clock makes due)."""
        total = DrainResult()
        size = self.settings.batch_size
        with partnership_of(self.engine):
            for _ in range(max_batches):
                claimed, result = self.claim(size)
                total.requeued += result.requeued
                total.unknown += result.unknown
                total.settled += result.settled
                if not claimed:
                    break
                total.claimed += result.claimed
                total.add(self.deliver(claimed, DrainResult()))
                if still_clock and len(claimed) < size:
                    break
        return total

    def claim(
        self, limit: int, kinds: Sequence[str] = ()
    ) -> tuple[list[outbox.Claimed], DrainResult]:
        now = self.clock.now()
        settled = self.settle(now)
        with Session(self.engine) as session:
            recovered = outbox.recover_expired(session, now=now)
            claimed = outbox.claim(session, now=now, limit=limit, lease=self.lease, kinds=kinds)
            self._breakers = outbox.breakers(session)
            session.commit()
        result = DrainResult(
            claimed=len(claimed),
            requeued=recovered.requeued,
            unknown=recovered.unknown,
            settled=settled.sent + settled.requeued,
        )
        return claimed, result

    def settle(self, now: datetime) -> outbox.Settled:
        """Settle what a crash left in doubt, where the transport can tell (the mail folder):
        `unknown` rows and expired `sending` rows become `sent` or `pending`."""
        if self.channels.mail_folder is None:
            return outbox.Settled(0, 0)
        with Session(self.engine) as session:
            rows = outbox.unsettled(session, now=now, channel=Channel.EMAIL)
            found = self.channels.delivered([r.key for r in rows]) if rows else None
            if not rows or found is None:
                return outbox.Settled(0, 0)
            settled = outbox.settle(session, {r.id: found[r.key] for r in rows}, now=now)
            session.commit()
        if settled.sent or settled.requeued:
            log.info(
                "settled from the mail folder: %d arrived, %d sent again",
                settled.sent,
                settled.requeued,
            )
        return settled

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
        """Deliver claimed rows, `settings.workers` at a time, each on its own pooled connection.

        The database work stays on this thread (SQLite serialises writers, and its busy handler
        sleeps in milliseconds when threads contend); only the network waits run in parallel.
        Each turn of the loop renders ahead, then commits in ONE transaction the receipts of the
        sends that finished and `sending` for as many next messages as connections are free, and
        only then hands those to the workers: a crash leaves at most `workers` rows `sending`.
        Mail-folder messages go a chunk (`send_chunk`) at a time, fsynced together before their
        receipts commit (the folder settles any crash by itself).
        """
        people = self.recipients(sorted({c.person_id for c in claimed if c.person_id is not None}))
        posts = self.body_channels({c.body_id for c in claimed if c.body_id is not None})
        papers = self.papers(claimed)
        workers = max(1, self.settings.workers)
        size = max(1, self.settings.send_chunk)
        by_file = self.channels.mail_folder is not None
        todo = deque(claimed)
        ready: deque[_Send] = deque()
        folder: list[_Send] = []
        refused: list[tuple[outbox.Claimed, outbox.Status, str]] = []
        flight: dict[Future[Outcome], _Send] = {}
        held: dict[str, list[_Send]] = {}
        entries: list[Entry] = []
        self._probing = set()
        while todo or ready or folder or refused or flight or held:
            while todo and len(ready) < 2 * workers and len(folder) < size:
                message = todo.popleft()
                if message.body_id is not None:
                    made = self._prepare_post(message, posts[message.body_id])
                else:
                    person = people.get(message.person_id) if message.person_id else None
                    made = self._prepare(message, person, papers.get(message.id))
                if not isinstance(made, Prepared):
                    refused.append((message, *made))
                elif by_file and made.email_wire is not None:
                    folder.append(_Send(message, made, None))
                else:
                    ready.append(_Send(message, made, self.breaker_of(made)))
            if folder and (len(folder) >= size or not todo):
                entries += self._deliver_folder(folder)
                folder = []
            done = [f for f in flight if f.done()]
            if done or refused or (ready and len(flight) < workers):
                entries += self._turn(done, flight, ready, held, refused, workers)
            elif flight:
                wait(list(flight), return_when=FIRST_COMPLETED)
        for message, status, error in entries:
            if status is outbox.Status.SENT:
                result.sent += 1
            elif status is outbox.Status.FAILED:
                result.failed += 1
            elif status is outbox.Status.DEAD:
                result.dead += 1
            elif status is outbox.Status.UNKNOWN:
                result.unknown += 1
            elif status is outbox.Status.PENDING:
                result.deferred += 1
            else:
                result.skipped += 1
            if error:
                result.errors.append(f"#{message.id} {message.kind}: {error}")
        return result

    def breaker_of(self, prepared: Prepared) -> str | None:
        """The circuit breaker a message goes through: its SMTP server, or its webhook's host."""
        if prepared.email_wire is not None:
            return self.channels.email_breaker()
        host = urlsplit(prepared.teams_webhook or "").hostname
        return f"Teams {host}" if host else None

    def _send(self, prepared: Prepared) -> Outcome:
        outcome = transmit(self.channels, prepared)
        crash = os.environ.get(CRASH_ENV, "")
        if crash == "after-send" or crash.startswith("after-send:"):
            with _SENDS_LOCK:
                _SENDS[0] += 1
                count = _SENDS[0]
            if count >= int(crash.partition(":")[2] or 1):
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

    def body_channels(self, body_ids: set[str]) -> dict[str, Recipient | str]:
        """Each body's Teams channel as a recipient (its webhook from the environment variable
        its constitution names, checked for the shape apprise's Workflows channel takes; the
        operator sets it, so unlike a members file it may name a host on a private network),
        or why it cannot be."""
        if not body_ids:
            return {}
        with Session(self.engine) as session:
            c = current_constitution(session)
        found: dict[str, Recipient | str] = {}
        for body_id in body_ids:
            try:
                body = c.body(body_id)
            except KeyError:
                found[body_id] = f"no body '{body_id}' in the constitution any more"
                continue
            name = body.teams_channel
            url = os.environ.get(name, "").strip() if name else ""
            problem = workflows_url_problem(url) if url else None
            if not name:
                found[body_id] = f"{body.name} has no Teams channel in the constitution any more"
            elif not url:
                found[body_id] = f"{name} (the Teams channel of {body.name}) is not set"
            elif problem:
                found[body_id] = f"{name} (the Teams channel of {body.name}): {problem}"
            else:
                found[body_id] = Recipient(0, body.name, "", url, True)
        return found

    def _prepare_post(
        self, message: outbox.Claimed, channel: Recipient | str
    ) -> Prepared | tuple[outbox.Status, str]:
        """A post to a body's Teams channel, ready to send, or why it cannot be (dead: the
        setting is missing or wrong; fixing it and `wct outbox retry` sends it)."""
        if isinstance(channel, str):
            return outbox.Status.DEAD, channel
        try:
            context = validate_context(message.kind, json.loads(message.context))
            return prepare(
                key=message.key,
                kind=message.kind,
                channel=message.channel,
                context=context,
                recipient=channel,
                settings=self.settings,
                now=self.clock.now(),
            )
        except (ContextInvalid, Undeliverable, json.JSONDecodeError) as exc:
            return outbox.Status.DEAD, str(exc)
        except (TemplateFailed, HeaderInjection) as exc:
            return outbox.Status.FAILED, str(exc)

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
                mail_from=self.mail_from,
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

    def _turn(
        self,
        done: list[Future[Outcome]],
        flight: dict[Future[Outcome], _Send],
        ready: deque[_Send],
        held: dict[str, list[_Send]],
        refused: list[tuple[outbox.Claimed, outbox.Status, str]],
        workers: int,
    ) -> list[Entry]:
        """One commit: the finished sends' receipts, what cannot be sent, and `sending` for the
        next messages (one per free connection); then those are handed to the workers."""
        now = self.clock.now()
        entries: list[Entry] = []
        outcomes = [(flight.pop(f), f.result()) for f in done]
        starting: list[_Send] = []
        with Session(self.engine) as session:
            for send, outcome in outcomes:
                if not outcome.ok:
                    entries += self._record_outcome(session, send, outcome, now, ready, held)
            for message, status, error in refused:
                status = self._record_failure(session, message, status, error, sending=False)
                entries.append((message, status, error))
            refused.clear()
            while ready and len(starting) < workers - len(flight):
                send = ready.popleft()
                admitted = self._admit(session, send, now)
                if admitted is None:
                    starting.append(send)
                elif admitted == "hold":
                    held.setdefault(send.breaker or "", []).append(send)
                else:
                    entries.append(self._release(session, send, admitted))
            for send, outcome in outcomes:
                if outcome.ok:  # a success closes its breaker, and may free held messages
                    entries += self._record_outcome(session, send, outcome, now, ready, held)
            mine = outbox.advance_many(
                session,
                sent=[(s.message.id, s.message.attempts) for s, o in outcomes if o.ok],
                sending=[(s.message.id, s.message.attempts) for s in starting],
                now=now,
                lease=self.lease,
            )
            session.commit()
        for send in starting:
            if send.message.id in mine:
                flight[self._submit(send.prepared)] = send
            else:  # the lease ran out and another dispatcher holds it now
                entries.append((send.message, outbox.Status.CLAIMED, None))
        return entries

    def _admit(self, session: Session, send: _Send, now: datetime) -> str | None:
        """None: send it now. "hold": wait for the probe in flight on its channel. Otherwise the
        reason it goes back unattempted (its channel is paused until the next probe)."""
        key = send.breaker
        breaker = self._breakers.get(key) if key else None
        if key is None or breaker is None or not breaker.open:
            return None
        if key in self._probing:
            return "hold"
        if breaker.probe_due(now):
            taken = outbox.take_probe(session, key, now=now)
            if taken is not None:
                self._breakers[key] = taken
                self._probing.add(key)
                send.probe = True
                return None
            current = outbox.breakers(session).get(key)  # another dispatcher is probing
            if current is None:
                self._breakers.pop(key, None)
                return None
            self._breakers[key] = breaker = current
        return (
            f"{key} unreachable since {_hhmm(breaker.since)} ({breaker.refused} attempts "
            f"refused): paused, not attempted; next try at {_hhmm(breaker.next_probe_at)}"
        )

    def _release(self, session: Session, send: _Send, why: str) -> Entry:
        breaker = self._breakers.get(send.breaker or "")
        not_before = (breaker.next_probe_at if breaker else None) or self.clock.now()
        outbox.release(
            session,
            send.message.id,
            attempt=send.message.attempts,
            not_before=not_before,
            note=why,
        )
        return (send.message, outbox.Status.PENDING, None)

    def _record_outcome(
        self,
        session: Session,
        send: _Send,
        outcome: Outcome,
        now: datetime,
        ready: deque[_Send],
        held: dict[str, list[_Send]],
    ) -> list[Entry]:
        """The receipt of one send (the `sent` ones are already written) and what it says about
        its channel: refused -> counted towards the breaker; answered -> the breaker closes."""
        message, key = send.message, send.breaker
        entries: list[Entry] = []
        if key is not None and outcome.unreachable:
            self._breakers[key] = breaker = outbox.record_refused(
                session, key, now=now, error=outcome.error or "unreachable", probe=send.probe
            )
            if send.probe:
                self._probing.discard(key)
            if breaker.open and key not in self._probing:
                why = f"{key} is paused after {breaker.refused} refused attempts"
                entries += [self._release(session, h, why) for h in held.pop(key, [])]
        elif key is not None and (key in self._breakers or send.probe):
            outbox.record_reached(session, key)
            self._breakers.pop(key, None)
            self._probing.discard(key)
            ready.extendleft(reversed(held.pop(key, [])))
        if outcome.ok:
            entries.append((message, outbox.Status.SENT, None))
        elif outcome.ambiguous:
            error = outcome.error or "delivery outcome unknown"
            outbox.mark_unknown(session, message.id, attempt=message.attempts, error=error)
            entries.append((message, outbox.Status.UNKNOWN, error))
        elif outcome.retry_after is not None:
            error = outcome.error or "the receiver asked to retry later"
            outbox.mark_throttled(
                session,
                message.id,
                attempt=message.attempts,
                now=now,
                wait=timedelta(seconds=outcome.retry_after),
                error=f"{error} (retry after {outcome.retry_after:g} s; not counted as an attempt)",
            )
            entries.append((message, outbox.Status.PENDING, None))
        else:
            error = outcome.error or "delivery failed"
            status = self._record_failure(
                session, message, outbox.Status.FAILED, error, sending=True
            )
            entries.append((message, status, error))
        return entries

    def _deliver_folder(self, batch: list[_Send]) -> list[Entry]:
        """A chunk for the mail folder: `sending` for all, write the files (in parallel), fsync
        them and the folder once, then commit the receipts. A crash anywhere in between is settled
        from the folder by the next drain, so one commit each side of the chunk is enough."""
        entries: list[Entry] = []
        with Session(self.engine) as session:
            ours = outbox.begin_send_many(
                session,
                [(s.message.id, s.message.attempts) for s in batch],
                now=self.clock.now(),
                lease=self.lease,
            )
            session.commit()
        entries += [
            (s.message, outbox.Status.CLAIMED, None) for s in batch if s.message.id not in ours
        ]
        sends = [(s, self._submit(s.prepared)) for s in batch if s.message.id in ours]
        outcomes = [(s, f.result()) for s, f in sends]
        try:
            self.channels.sync_mail()
        except OSError as exc:
            error = f"the mail folder could not be made durable: {exc.strerror or exc}"
            outcomes = [(s, Outcome(False, error) if o.ok else o) for s, o in outcomes]
        now = self.clock.now()
        with Session(self.engine) as session:
            sent = [(s.message.id, s.message.attempts) for s, o in outcomes if o.ok]
            outbox.mark_sent_many(session, sent, now=now)
            for send, outcome in outcomes:
                entries += self._record_outcome(session, send, outcome, now, deque(), {})
            session.commit()
        return entries


def _hhmm(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment else "?"


_SENDS = [0]  # sends made by this process, for the CRASH_ENV hook
_SENDS_LOCK = threading.Lock()


def drain_once(
    engine: Engine,
    *,
    clock: Clock,
    settings: NotificationSettings | None = None,
    limit: int | None = None,
    jitter: Callable[[], float] = random.random,
) -> DrainResult:
    """Claim one batch and deliver it; the whole of one dispatcher pass, in the partnership's
    time."""
    dispatcher = Dispatcher(engine, clock=clock, settings=settings, jitter=jitter)
    with partnership_of(engine):
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
    """Drain batches until none is due (or `max_batches`); one channel set for all batches, in
    the partnership's time."""
    dispatcher = Dispatcher(engine, clock=clock, settings=settings, jitter=jitter)
    try:
        return dispatcher.drain(max_batches=max_batches)
    finally:
        dispatcher.close()
