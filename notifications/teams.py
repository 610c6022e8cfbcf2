"""Teams through a Power Automate Workflows webhook, within the service's limits.

apprise's own `workflows://` returns only a bool, so it cannot see a 429 or its Retry-After. This
module registers `wctteams://` with apprise (`@notify`, as channels.py does for SMTP): it posts the
Adaptive Card apprise's workflows plugin would post (a heading TextBlock with the subject, a wrapped
TextBlock with the markdown body, `msteams.width = full`; without apprise's hosted icon), reads the
HTTP status and headers, and keeps to Teams' rules:

* At most 4 requests a second per webhook, by Teams' clock: a token bucket per webhook URL,
  shared by every thread of the process (4 tokens a second, burst 1), which also never lets a
  request go until 1 s after the answer to the request 4 before it. Teams counts requests when
  they arrive, and the network or a busy machine can bunch requests sent 0.25 s apart; anchored
  on answers, the limit holds whatever the jitter (a request arrives before it is answered).
* A 429 (or 503) with Retry-After (seconds or an HTTP date) holds the webhook until then: no thread
  sends to it before. A wait of at most RETRY_WAIT seconds is sat out here and the card re-posted
  (a 429 means it was not taken); a longer one returns `Outcome(retry_after=...)`, as does a turn in
  the bucket further away than QUEUE_WAIT, so the dispatcher tries again then, not sooner.
* TLS is always verified (requests' default trust store, or REQUESTS_CA_BUNDLE for a private CA);
  200 and 202 are success, anything else a failure that names the status. A refused or timed-out
  connection is `unreachable` (nothing delivered; a certificate that fails verification is not:
  the server was reached, and refused by us); a connection lost after the request was sent, or
  no answer in time, is `ambiguous` (the flow may have posted it: never resent automatically).
* A new connection per request, as apprise does: no stale kept-alive connection can turn a send
  that never left into an ambiguous one.
* The card's title is the subject markdown-escaped (the body is escaped when it is rendered); the
  body keeps render.py's 1,000-character cut (the limit apprise's plugin applies, kept so a card
  reads the same), and the whole payload is checked against Teams' 28 KB cap.
* The outbox key, when the caller gives it, travels in an `X-WCT-Key` header (else a digest of the
  card's text), so a duplicate is recognisable at the receiving end.

The webhook URL's `sig=` is a secret: it is never logged, and errors name only the host and a
short digest of the URL (`Teams webhook at HOST [#1a2b3c]`).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

import apprise
import requests
from apprise.decorators import notify as apprise_notify
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from notifications.channels import Outcome
from notifications.render import escape_markdown

log = logging.getLogger(__name__)

TEAMS_SCHEMA = "wctteams"
RATE_LIMIT = 4.0  # Teams throttles a webhook above 4 requests a second
RATE = RATE_LIMIT  # tokens a second; the window below keeps it by the receiver's clock
POLL = 0.02  # how often a sender waiting on `limit` requests still in flight looks again
RETRY_WAIT = 5.0  # a Retry-After up to this long is waited out in the transport
QUEUE_WAIT = 30.0  # a turn in the bucket further away than this: try again later
MAX_POSTS = 3  # posts of one card in one send (each further one follows a short Retry-After)
PAYLOAD_LIMIT = 28 * 1024  # Teams' cap on one message
RETRY_AFTER_CAP = 86_400.0  # a Retry-After beyond a day is taken as a day
TIMEOUT = (10.0, 30.0)  # connect, read (seconds)
SUCCESS = frozenset({200, 202})
THROTTLED = frozenset({429, 503})
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"  # as apprise's workflows plugin


# --- Time and the token bucket --------------------------------------------------------------


@dataclass
class Slot:
    """One request's place in its webhook's window: `free_at` is None while it is in flight,
    then the time it stops counting (its answer + the window)."""

    free_at: float | None = None


class TokenBucket:
    """Requests to one webhook: tokens at `rate` a second, `burst` at once, none while held
    (Retry-After); and never more than `limit` requests whose answer came less than `window`
    seconds ago (or has not come yet). The second rule makes the limit hold by the receiver's
    clock: a request is stamped on arrival before it is answered, so the request sent `window`
    after the answer to the one `limit` before it arrives at least `window` after that one did,
    however the network or a busy machine bunches them. Not locked: the Throttle that owns it is."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        limit: int = 4,
        window: float = 1.0,
        now: float = 0.0,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.limit = limit
        self.window = window
        self.tokens = burst
        self.stamp = now
        self.held_until = -math.inf
        self.slots: list[Slot] = []

    def take(self, now: float) -> tuple[float, Slot | None]:
        """(0.0, a slot) with a token taken, else (the seconds until one may be, None)."""
        if now < self.held_until:
            return self.held_until - now, None
        self.slots = [s for s in self.slots if s.free_at is None or s.free_at > now]
        if len(self.slots) >= self.limit:
            known = [s.free_at for s in self.slots if s.free_at is not None]
            return (min(known) - now if known else POLL), None
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0 - 1e-9:
            self.tokens = max(0.0, self.tokens - 1.0)
            slot = Slot()
            self.slots.append(slot)
            return 0.0, slot
        return (1.0 - self.tokens) / self.rate, None

    def answered(self, slot: Slot, now: float) -> None:
        slot.free_at = now + self.window

    def hold(self, until: float) -> None:
        """Nothing before `until` (a later hold wins; an earlier one never shortens it)."""
        self.held_until = max(self.held_until, until)

    def held_for(self, now: float) -> float:
        return max(0.0, self.held_until - now)


class Throttle:
    """One token bucket per webhook URL, shared by every thread; `clock` (monotonic seconds) and
    `sleep` are seams, so tests need no real waiting."""

    def __init__(
        self,
        *,
        rate: float = RATE,
        burst: float = 1.0,
        limit: int = int(RATE_LIMIT),
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.limit = limit
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, webhook: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(webhook)
        if bucket is None:
            bucket = self._buckets[webhook] = TokenBucket(
                self.rate, burst=self.burst, limit=self.limit, window=self.window, now=now
            )
        return bucket

    def turn(
        self, webhook: str, *, patience: float = QUEUE_WAIT, hold_patience: float = RETRY_WAIT
    ) -> Slot | float:
        """Sleep until a request to `webhook` may go: its Slot (tell `answered` when it has
        been). Without taking one, the seconds still to wait when the webhook is held
        (Retry-After) for longer than `hold_patience`, or the turn is further away than
        `patience` from the call."""
        deadline = self.clock() + patience
        while True:
            with self._lock:
                now = self.clock()
                bucket = self._bucket(webhook, now)
                held = bucket.held_for(now)
                if held > hold_patience:
                    return held
                wait, slot = bucket.take(now)
            if slot is not None:
                return slot
            if now + wait > deadline:
                return wait
            self.sleep(wait)

    def answered(self, webhook: str, slot: Slot) -> None:
        """The request of `slot` has its answer (or failed): it counts for one more window."""
        with self._lock:
            self._bucket(webhook, self.clock()).answered(slot, self.clock())

    def hold(self, webhook: str, seconds: float) -> None:
        """The webhook asked for `seconds` of quiet, from now."""
        with self._lock:
            now = self.clock()
            self._bucket(webhook, now).hold(now + seconds)


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) as seconds from `now` (Unix time);
    None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CAP)


# --- The card -------------------------------------------------------------------------------


def card(subject: str, markdown: str, *, limit: int = PAYLOAD_LIMIT) -> dict[str, Any]:
    """The Workflows payload: an Adaptive Card with the subject (markdown-escaped, so `*`, `_`,
    `[`, `#`, `<` ... show as they are) as its heading and the rendered markdown as its body; the
    body is cut (with `…`) if the payload would pass `limit` bytes."""
    title = str(escape_markdown(subject))

    def build(text: str) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = []
        if title:
            blocks.append(
                {
                    "type": "TextBlock",
                    "text": title,
                    "style": "heading",
                    "weight": "Bolder",
                    "size": "Large",
                    "wrap": True,
                    "id": "title",
                }
            )
        blocks.append(
            {"type": "TextBlock", "text": text, "style": "default", "wrap": True, "id": "body"}
        )
        content = {
            "$schema": CARD_SCHEMA,
            "type": "AdaptiveCard",
            "version": CARD_VERSION,
            "body": blocks,
            "msteams": {"width": "full"},
        }
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": content,
                }
            ],
        }

    payload = build(markdown)
    excess = len(encode(payload)) - limit
    text = markdown
    while excess > 0 and text:
        text = text[: max(0, len(text) - max(excess, len(text) // 10))]
        payload = build(text.rstrip("\\") + "…")
        excess = len(encode(payload)) - limit
    return payload


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def card_digest(subject: str, markdown: str) -> str:
    """Stands in for the outbox key when the caller has none: the same card, the same digest."""
    digest = hashlib.sha256(f"{subject}\n{markdown}".encode()).hexdigest()[:24]
    return f"digest:{digest}"


def where(webhook: str) -> str:
    """The webhook as errors and logs may name it: host and a short digest, never path or sig."""
    host = urlsplit(webhook).hostname or "?"
    return f"Teams webhook at {host} [#{hashlib.sha256(webhook.encode()).hexdigest()[:6]}]"


_URLISH = re.compile(r"(https?://\S+|/\S*\?\S*|\bsig=\S*)", re.IGNORECASE)


def scrub(text: str, webhook: str) -> str:
    """`text` without the webhook's path, query or signature (exception texts quote the URL)."""
    signature = _signature(webhook)
    if signature:
        text = text.replace(signature, "***")
    return _URLISH.sub("<webhook>", text)


def _signature(webhook: str) -> str:
    for part in urlsplit(webhook).query.split("&"):
        name, _, value = part.partition("=")
        if name.lower() == "sig" and value:
            return value
    return ""


# --- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: Mapping[str, str]
    excerpt: str = ""


Http = Callable[[str, bytes, Mapping[str, str]], Reply]


class RequestsHttp:
    """POST with requests: TLS verified (REQUESTS_CA_BUNDLE honoured), no redirects followed,
    a new connection each time. Raises requests' exceptions."""

    def __init__(self, timeout: tuple[float, float] = TIMEOUT) -> None:
        self.timeout = timeout
        self._session = requests.Session()
        self._session.mount("https://", HTTPAdapter(pool_maxsize=32, max_retries=0))

    def __call__(self, url: str, data: bytes, headers: Mapping[str, str]) -> Reply:
        response = self._session.post(
            url,
            data=data,
            headers={**headers, "Connection": "close"},
            timeout=self.timeout,
            verify=True,
            allow_redirects=False,
        )
        try:
            excerpt = "" if response.status_code in SUCCESS else response.text[:200]
            return Reply(
                response.status_code, response.reason or "", dict(response.headers), excerpt
            )
        finally:
            response.close()


def _connect_failed(exc: requests.RequestException) -> bool:
    """The request never left: the connection was refused, not resolved, or timed out."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: BaseException | None = exc
    for _ in range(10):  # urllib3 nests the cause in `reason`, requests in args[0]
        if seen is None:
            break
        if isinstance(seen, NewConnectionError | NameResolutionError | ConnectTimeoutError):
            return True
        reason = getattr(seen, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else None
        if nxt is None and seen.args and isinstance(seen.args[0], BaseException):
            nxt = seen.args[0]
        seen = nxt or seen.__cause__ or seen.__context__
    return False


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests exception, in words (its own text quotes the URL)."""
    inner: BaseException = exc
    for _ in range(8):
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
        elif inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
        else:
            break
    return f"{type(inner).__name__}: {inner}"


# --- The transport --------------------------------------------------------------------------


class TeamsTransport:
    """Posts cards to Workflows webhooks within their limits; one per process is enough (its
    buckets must be shared by every sender to a webhook)."""

    def __init__(
        self,
        *,
        throttle: Throttle | None = None,
        http: Http | None = None,
        wall: Callable[[], float] = time.time,
        retry_wait: float = RETRY_WAIT,
        queue_wait: float = QUEUE_WAIT,
    ) -> None:
        self.throttle = throttle or Throttle()
        self.http = http or RequestsHttp()
        self.wall = wall
        self.retry_wait = retry_wait
        self.queue_wait = queue_wait

    def deliver(self, webhook: str, payload: Mapping[str, Any], *, key: str) -> Outcome:
        """Post `payload` to `webhook` (HTTPS only), waiting out its rate and short Retry-Afters."""
        parts = urlsplit(webhook)
        if parts.scheme.lower() != "https" or not parts.hostname:
            return Outcome(False, "the Teams webhook URL is not an https:// URL")
        name = where(webhook)
        data = encode(payload)
        if len(data) > PAYLOAD_LIMIT:
            return Outcome(False, f"the card is {len(data)} bytes, over Teams' {PAYLOAD_LIMIT}")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "wct",
            "X-WCT-Key": key,
        }
        delay: float | None = None
        for _ in range(MAX_POSTS):
            slot = self.throttle.turn(
                webhook, patience=self.queue_wait, hold_patience=self.retry_wait
            )
            if not isinstance(slot, Slot):
                return Outcome(
                    False,
                    f"{name} is held for {slot:.1f} s more (its rate limit or a Retry-After); "
                    "nothing was posted",
                    retry_after=slot,
                )
            try:
                reply = self.http(webhook, data, headers)
            except requests.RequestException as exc:
                return self._exception(name, webhook, exc)
            finally:
                self.throttle.answered(webhook, slot)
            if reply.status in SUCCESS:
                return Outcome(True)
            status = f"HTTP {reply.status} {reply.reason}".strip()
            if reply.status not in THROTTLED:
                detail = " ".join(scrub(reply.excerpt, webhook).split())
                return Outcome(
                    False, f"{name} refused the card: {status}{': ' if detail else ''}{detail}"
                )
            delay = retry_after_seconds(_header(reply.headers, "Retry-After"), now=self.wall())
            if delay is None:
                self.throttle.hold(webhook, 1.0)
                return Outcome(False, f"{name} answered {status} without Retry-After")
            self.throttle.hold(webhook, delay)
            level = logging.INFO if delay <= self.retry_wait else logging.WARNING
            log.log(level, "%s answered %s, Retry-After %.1f s", name, status, delay)
            if delay > self.retry_wait:
                return Outcome(
                    False,
                    f"{name} answered {status}: asked for {delay:.0f} s before the next request; "
                    "nothing was posted",
                    retry_after=delay,
                )
        return Outcome(
            False,
            f"{name} answered 429/503 to {MAX_POSTS} posts in a row; nothing was posted",
            retry_after=delay,
        )

    @staticmethod
    def _exception(name: str, webhook: str, exc: requests.RequestException) -> Outcome:
        cause = scrub(_cause(exc), webhook)
        if isinstance(exc, requests.exceptions.SSLError):  # reached, refused by us: no outage
            return Outcome(False, f"{name}: TLS failed ({cause})")
        if _connect_failed(exc):
            return Outcome(False, f"{name} unreachable: {cause}", unreachable=True)
        if isinstance(exc, requests.exceptions.ReadTimeout | requests.exceptions.ConnectionError):
            return Outcome(
                False,
                f"{name}: no answer after the card was sent ({cause}); the flow may have posted it",
                ambiguous=True,
            )
        return Outcome(False, f"{name} failed: {cause}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for header, value in headers.items():
        if header.lower() == wanted:
            return value
    return None


@lru_cache(maxsize=1)
def transport() -> TeamsTransport:
    """The process's transport (built on first use): its buckets are shared by every thread."""
    return TeamsTransport()


# --- The apprise channel --------------------------------------------------------------------

_last = threading.local()  # the Outcome of the last send on this thread (apprise gives a bool)


def teams_url(webhook: str) -> str:
    """The apprise URL of a webhook: `wctteams://HOST?webhook=<the whole URL, encoded>`."""
    host = urlsplit(webhook).hostname or "teams"
    return (
        f"{TEAMS_SCHEMA}://{host}?webhook={quote(webhook, safe='')}&format=text&overflow=upstream"
    )


def envelope(subject: str, markdown: str, *, key: str | None) -> str:
    """What apprise carries to the channel: the finished card and its key, as JSON."""
    return json.dumps(
        {"key": key or card_digest(subject, markdown), "card": card(subject, markdown)},
        ensure_ascii=False,
    )


def _teams_channel(
    body: str, _title: str, *_args: Any, meta: dict[str, Any], **_kwargs: Any
) -> bool:
    """apprise channel `wctteams://`: `body` is an envelope (the card and its key)."""
    webhook = str(meta.get("qsd", {}).get("webhook", ""))
    try:
        sealed = json.loads(body)
        payload, key = sealed["card"], str(sealed["key"])
    except (json.JSONDecodeError, KeyError, TypeError):
        outcome = Outcome(False, "the Teams channel was given something other than a card")
    else:
        outcome = transport().deliver(webhook, payload, key=key)
    _last.outcome = outcome
    return outcome.ok


@lru_cache(maxsize=1)
def register_channel() -> None:
    """Register `wctteams://` with apprise once per process (on first use, not at import)."""
    apprise_notify(on=TEAMS_SCHEMA, name="wct Teams")(_teams_channel)  # type: ignore[no-untyped-call]


class Teams:
    """The Teams side of `Channels`: one apprise object per webhook; safe to share by threads."""

    def __init__(self) -> None:
        register_channel()
        self._channels: dict[str, apprise.Apprise] = {}
        self._lock = threading.Lock()

    def send(self, webhook: str, subject: str, markdown: str, *, key: str | None = None) -> Outcome:
        with self._lock:
            channel = self._channels.get(webhook)
            if channel is None:
                if urlsplit(webhook).scheme.lower() != "https":
                    return Outcome(False, "the Teams webhook URL is not an https:// URL")
                channel = apprise.Apprise()
                if not channel.add(teams_url(webhook)):
                    return Outcome(False, "apprise refused the Teams channel for this webhook")
                self._channels[webhook] = channel
        _last.outcome = None
        result = channel.notify(
            body=envelope(subject, markdown, key=key),
            title=subject,
            body_format=apprise.NotifyFormat.TEXT,
        )
        outcome: Outcome | None = getattr(_last, "outcome", None)
        if result is True and outcome is not None and outcome.ok:
            return outcome
        if outcome is not None and not outcome.ok:
            return outcome
        return Outcome(False, f"{where(webhook)}: apprise did not deliver the card")
