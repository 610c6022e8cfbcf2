"""What a council's IT checks: headers on every response, a request size limit, a rate limit on
token checks, and a signed session cookie with a CSRF token tied to it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def derive(key: bytes, purpose: str) -> bytes:
    """A key for one purpose (sessions, CSRF) from the link key: one secret to keep."""
    return hmac.new(key, f"wct-web.{purpose}".encode(), hashlib.sha256).digest()


def csrf_token(key: bytes, session_id: str) -> str:
    digest = hmac.new(derive(key, "csrf"), session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_ok(key: bytes, session_id: str, given: str) -> bool:
    return hmac.compare_digest(csrf_token(key, session_id).encode(), given.encode())


def new_id() -> str:
    return secrets.token_urlsafe(16)


class SecurityHeaders:
    """Adds the security headers to every response; `Cache-Control: no-store` unless a
    response says otherwise (pages carry personal data; only the stylesheet may be cached)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.extend(h for h in HEADERS if h[0] not in names)
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class TooLarge(Exception):
    pass


class SizeLimit:
    """413 for a request body over `limit` bytes: by its Content-Length at once, or as soon as a
    streamed body passes it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except TooLarge:
            if not started:
                await _too_large(send)


async def _too_large(send: Send) -> None:
    body = b"Request too large."
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *HEADERS,
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class TokenBuckets:
    """A token bucket per client address: `capacity` checks at once, refilled at `rate` a
    second. A full table forgets its oldest clients first."""

    capacity: float = 20.0
    rate: float = 0.5
    now: Callable[[], float] = time.monotonic
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, client: str) -> bool:
        """Whether `client` may make one more check now."""
        with self._lock:
            t = self.now()
            tokens, last = self._buckets.pop(client, (self.capacity, t))
            tokens = min(self.capacity, tokens + (t - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, t)
            while len(self._buckets) > self.max_clients:
                self._buckets.pop(next(iter(self._buckets)))
            return allowed
