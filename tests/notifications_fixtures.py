"""Real endpoints for the notification tests: an SMTP server (aiosmtpd) and an HTTPS webhook.

Import the fixtures you use into the test module: `from tests.notifications_fixtures import ...`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.clock import FixedClock
from models.outbox import enqueue
from models.tables import Channel, Organisation, OutboxMessage, Person
from notifications.config import NotificationSettings, TlsMode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data, policy=default_policy)


@dataclass
class Collector:
    """aiosmtpd handler: keeps every message it accepted."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802, ARG002
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server on loopback that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.collector = Collector()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.collector, hostname="127.0.0.1", port=self.port, data_size_limit=10_000_000
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return self.collector.received

    def settings(self, home: Path) -> NotificationSettings:
        return NotificationSettings(
            home=home,
            smtp_host="127.0.0.1",
            smtp_port=self.port,
            smtp_tls=TlsMode.NONE,
            mail_from="wct@example.org",
            workers=2,
        )


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# --- HTTPS webhook with a self-signed certificate -------------------------------------------


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class Hit:
    """One request the webhook received: when (Unix time, on arrival), to which path (no query),
    with which X-WCT-Key, and what it answered."""

    at: float
    path: str
    key: str
    status: int
    retry_after: str | None = None


@dataclass
class Webhook:
    """A local stand-in for a Teams Workflows webhook: records each JSON body; answers 202.

    By default it answers `status[0]` to every request. It can also play Teams' throttling:
    `script` holds answers `(status, Retry-After or None)` given first, one per request, and
    `rate_limit` answers 429 (Retry-After `rate_retry_after`) to a request that would make more
    than that many to one path within a second. Every request is a `Hit`; one that arrives while
    a 429/503 it gave with Retry-After still holds its path goes in `early` as well."""

    port: int
    cert: Path
    posts: list[dict[str, Any]]
    paths: list[str]
    status: list[int]
    hits: list[Hit] = field(default_factory=list)
    early: list[Hit] = field(default_factory=list)
    script: list[tuple[int, str | None]] = field(default_factory=list)
    rate_limit: int | None = None
    rate_retry_after: str = "1"
    not_before: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, workflow: str = "a1b2c3d4", signature: str = "s3cr3tSig") -> str:
        return (
            f"https://127.0.0.1:{self.port}/workflows/{workflow}/triggers/manual/paths/invoke"
            f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={signature}"
        )

    def answer(self, path: str, key: str) -> tuple[int, str | None]:
        """Decide the answer to a request arriving now (thread-safe) and record it."""
        with self.lock:
            now = time.time()
            where = path.split("?", 1)[0]
            held = now < self.not_before.get(where, 0.0)
            recent = [h for h in self.hits if h.path == where and now - h.at < 1.0]
            if self.script:
                status, retry_after = self.script.pop(0)
            elif self.rate_limit is not None and len(recent) >= self.rate_limit:
                status, retry_after = 429, self.rate_retry_after
            else:
                status, retry_after = self.status[0], None
            if status in (429, 503) and retry_after is not None:
                self.not_before[where] = max(
                    self.not_before.get(where, 0.0), now + _retry_seconds(retry_after, now)
                )
            hit = Hit(now, where, key, status, retry_after)
            self.hits.append(hit)
            if held:
                self.early.append(hit)
            return status, retry_after

    def accepted(self) -> Counter[str]:
        """How many times each X-WCT-Key was accepted (200/202): a 2 is a duplicate."""
        with self.lock:
            return Counter(h.key for h in self.hits if h.status in (200, 202))

    def times(self, path_prefix: str = "") -> dict[str, list[float]]:
        """Arrival times per path (every request, whatever it was answered)."""
        found: dict[str, list[float]] = {}
        with self.lock:
            for hit in self.hits:
                if hit.path.startswith(path_prefix):
                    found.setdefault(hit.path, []).append(hit.at)
        return found


def _retry_seconds(value: str, now: float) -> float:
    try:
        return float(value)
    except ValueError:
        return parsedate_to_datetime(value).timestamp() - now


def busiest_second(times: list[float]) -> int:
    """The most requests within any one second (a window [t, t + 1)) among `times`."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + 1.0, lo=i) - i)
    return best


@pytest.fixture
def webhook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    """HTTPS on loopback with a self-signed certificate that our transport is made to TRUST, not
    to skip: it posts with `requests` and verify=True, and requests then reads the CA bundle
    from REQUESTS_CA_BUNDLE, so verification really happens against this certificate."""
    cert, key = self_signed(tmp_path)
    hook = Webhook(0, cert, [], [], [202])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            status, retry_after = hook.answer(self.path, self.headers.get("X-WCT-Key", ""))
            length = int(self.headers.get("Content-Length", "0"))
            with hook.lock:
                hook.posts.append(json.loads(self.rfile.read(length)))
                hook.paths.append(self.path)
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # noqa: ARG002  (quiet)
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    hook.port = server.server_address[1]
    yield hook
    server.shutdown()
    server.server_close()


# --- Data -----------------------------------------------------------------------------------


def add_person(
    engine: Engine,
    *,
    name: str = "Alex Example",
    email: str = "alex@example.org",
    channels: str = "email",
    webhook: str | None = None,
    clock: FixedClock,
) -> int:
    """A member of the first organisation of the loaded constitution; returns the id."""
    with Session(engine) as session:
        org = session.exec(select(Organisation)).first()
        assert org is not None
        person = Person(
            pseudonym="p-" + hashlib.sha256(email.encode()).hexdigest()[:8],
            name=name,
            email=email,
            organisation_id=org.id,
            channels=channels,
            teams_webhook=webhook,
            updated_at=clock.now(),
        )
        session.add(person)
        session.commit()
        assert person.id is not None
        return person.id


def queue(
    engine: Engine,
    *,
    person_id: int,
    kind: str,
    context: dict[str, Any],
    key: str,
    clock: FixedClock,
    channel: Channel = Channel.EMAIL,
) -> int:
    with Session(engine) as session:
        person = session.get(Person, person_id)
        assert person is not None
        message = enqueue(
            session,
            key=key,
            kind=kind,
            person=person,
            channel=channel,
            context=context,
            now=clock.now(),
        )
        assert message is not None
        session.commit()
        assert message.id is not None
        return message.id


def row(engine: Engine, message_id: int) -> OutboxMessage:
    with Session(engine) as session:
        found = session.get(OutboxMessage, message_id)
        assert found is not None
        session.expunge(found)
        return found
