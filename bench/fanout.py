"""Fan-out benchmark: 1,000 personalised reminders through the whole outbox path to loopback SMTP.

Measures, in one run and against the same aiosmtpd server (in its own process, so it does not
share our GIL):
  baseline  plain smtplib, one connection, sending the same 1,000 reminders, built beforehand and
            untimed (the raw transport rate for these messages); for reference it also times
            1,000 one-line messages, which the loopback server takes faster (fewer lines);
  wct       1,000 outbox rows drained by the dispatcher: claim, validate, render the jinja2
            templates, build MIME, commit `sending`, apprise notify() on the `wctsmtp://` channel
            (pooled connections), commit `sent` -- on a SQLite database file.
  mail folder  the same 1,000 rows drained with no SMTP host: `.eml` files, fsynced per chunk.
Prints `mailfolder ratio R` (mail folder msgs/s / wct SMTP msgs/s) and, as its last line,
`fanout ratio R` with R = wct msgs/s / smtplib msgs/s.

Then the Teams arm (`teams_fanout`): N risk-escalated Teams messages to M webhooks (member i on
webhook i mod M) drained through the real dispatcher and `wctteams://` against a local HTTPS
endpoint (its own process, self-signed certificate trusted through REQUESTS_CA_BUNDLE) that
answers 429 + Retry-After to more than 4 requests a second per webhook, and to the first request
of each webhook (Retry-After: 1, a throttled flow). Prints
`teams fanout N messages M webhooks in T s, 429s R, duplicates D` and fails if any request
arrived before a 429 allowed it, any second held more than 4 requests to one webhook, or a
message arrived twice or not at all.

    python bench/fanout.py [--messages 1000] [--workers 4] [--webhooks 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import smtplib
import socket
import sys
import tempfile
import time
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlmodel import Session

from models.clock import LONDON, FixedClock
from models.commands import apply_constitution
from models.constitution import load_constitution
from models.db import make_engine, migrate
from models.outbox import enqueue
from models.tables import Channel, Organisation, Person
from models.uow import UnitOfWork
from notifications.channels import register_channels
from notifications.config import NotificationSettings, TlsMode
from notifications.contexts import validate_context
from notifications.dispatch import Recipient, drain
from notifications.dispatch import prepare as prepare_message
from notifications.samples import sample


def _serve(port: int, ready: Any, counter: Any) -> None:
    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802, ARG002
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    controller = Controller(Count(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def baseline(port: int, n: int) -> float:
    messages = []
    for i in range(n):
        msg = EmailMessage()
        msg["From"] = "wct@example.org"
        msg["To"] = f"member{i}@example.org"
        msg["Subject"] = f"Reminder {i}"
        msg.set_content(f"Dear member {i}, your report is due.")
        messages.append(msg)
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as connection:
        for msg in messages:
            connection.send_message(msg)
    return n / (time.perf_counter() - start)


def same_messages(n: int, settings: NotificationSettings, clock: FixedClock) -> list[str]:
    """The very reminders the dispatcher sends, built up front (untimed) for the raw baseline."""
    wires = []
    for i in range(n):
        recipient = Recipient(i, f"Member {i}", f"member{i}@example.org", None, True)
        prepared = prepare_message(
            key=f"bench:reminder:p-{i:05d}:email",
            kind="reminder",
            channel="email",
            context=validate_context("reminder", sample("reminder", recipient.name)),
            recipient=recipient,
            settings=settings,
            now=clock.now(),
        )
        assert prepared.email_wire is not None
        wires.append(prepared.email_wire)
    return wires


def baseline_same(port: int, wires: list[str]) -> float:
    """Plain smtplib, one connection, sending the same bytes wct sends: the raw transport rate."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as connection:
        for i, wire in enumerate(wires):
            connection.sendmail("wct@example.org", [f"member{i}@example.org"], wire.encode())
    return len(wires) / (time.perf_counter() - start)


def prepare(folder: Path, n: int) -> tuple[Any, FixedClock]:
    folder.mkdir(parents=True, exist_ok=True)
    clock = FixedClock(datetime(2026, 11, 23, 9, 0, tzinfo=LONDON))
    engine = make_engine(f"sqlite:///{folder / 'bench.db'}")
    migrate(engine)
    with UnitOfWork(engine, clock=clock, actor="bench") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        uow.commit()
    with Session(engine) as session:
        org = session.exec(__import__("sqlmodel").select(Organisation)).first()
        assert org is not None
        people = [
            Person(
                pseudonym=f"p-{i:05d}",
                name=f"Member {i}",
                email=f"member{i}@example.org",
                organisation_id=org.id,
                updated_at=clock.now(),
            )
            for i in range(n)
        ]
        session.add_all(people)
        session.flush()
        for person in people:
            enqueue(
                session,
                key=f"bench:reminder:{person.pseudonym}:email",
                kind="reminder",
                person=person,
                channel=Channel.EMAIL,
                context=sample("reminder", person.name),
                now=clock.now(),
            )
        session.commit()
    return engine, clock


# --- Teams arm: N messages to M webhooks on a local HTTPS endpoint that throttles ------------


def _teams_endpoint(port: int, cert: str, key: str, ready: Any, rate: int, cold: str) -> None:
    """A stand-in for Teams Workflows webhooks (its own process): per webhook path, a request
    that would make more than `rate` within one second gets 429 Retry-After: 1, and the first
    request to each path gets 429 Retry-After: `cold` (a throttled flow). GET /_log returns every
    request: arrival time, path, card title, status, and whether it came while a 429 held it."""
    import json
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lock = threading.Lock()
    hits: list[dict[str, Any]] = []
    not_before: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            now = time.time()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            title = body["attachments"][0]["content"]["body"][0]["text"]
            path = self.path.split("?", 1)[0]
            with lock:
                early = now < not_before.get(path, 0.0)
                mine = [h["at"] for h in hits if h["path"] == path]
                recent = sum(1 for at in mine if now - at < 1.0)
                retry = cold if not mine else ("1" if recent >= rate else None)
                status = 429 if retry is not None else 202
                if retry is not None:
                    not_before[path] = max(not_before.get(path, 0.0), now + float(retry))
                hits.append(
                    {"at": now, "path": path, "title": title, "status": status, "early": early}
                )
            self.send_response(status)
            if retry is not None:
                self.send_header("Retry-After", retry)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                data = json.dumps(hits).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # noqa: ARG002
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    ready.set()
    server.serve_forever()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (made with `cryptography`) and its key, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

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
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "teams-cert.pem", folder / "teams-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _prepare_teams(folder: Path, n: int, hooks: list[str]) -> tuple[Any, FixedClock]:
    """A database with `n` risk-escalated Teams messages, member i on webhook i mod M, each
    with its own title (how the endpoint tells messages apart)."""
    from sqlmodel import select

    folder.mkdir(parents=True, exist_ok=True)
    clock = FixedClock(datetime(2026, 11, 23, 9, 0, tzinfo=LONDON))
    engine = make_engine(f"sqlite:///{folder / 'teams.db'}")
    migrate(engine)
    with UnitOfWork(engine, clock=clock, actor="bench") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        uow.commit()
    with Session(engine) as session:
        org = session.exec(select(Organisation)).first()
        assert org is not None
        people = [
            Person(
                pseudonym=f"t-{i:05d}",
                name=f"Member {i}",
                email=f"member{i}@example.org",
                organisation_id=org.id,
                channels="teams",
                teams_webhook=hooks[i % len(hooks)],
                updated_at=clock.now(),
            )
            for i in range(n)
        ]
        session.add_all(people)
        session.flush()
        for i, person in enumerate(people):
            enqueue(
                session,
                key=f"bench:risk:{person.pseudonym}:teams",
                kind="risk_escalated",
                person=person,
                channel=Channel.TEAMS,
                context={**sample("risk_escalated", person.name), "title": f"Bench risk {i}"},
                now=clock.now(),
            )
        session.commit()
    return engine, clock


def teams_fanout(n: int, *, webhooks: int, workers: int, rate: int = 4, cold: str = "1") -> None:
    """N Teams messages to M webhooks drained through the real dispatcher against a local HTTPS
    endpoint that enforces `rate` requests/s per webhook with 429 + Retry-After; exits non-zero
    if a request arrived before a 429 allowed it, a second held more than `rate` requests to one
    webhook, a message was accepted twice, or one never arrived."""
    import json
    import os
    import ssl
    import urllib.request
    from datetime import timedelta

    from notifications.teams import RATE

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = _self_signed(Path(tmp))
        port = free_port()
        ready = multiprocessing.Event()
        endpoint = multiprocessing.Process(
            target=_teams_endpoint,
            args=(port, str(cert), str(key), ready, rate, cold),
            daemon=True,
        )
        endpoint.start()
        saved = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "NO_PROXY", "no_proxy")}
        try:
            if not ready.wait(30):
                sys.exit("the Teams endpoint did not start")
            os.environ["REQUESTS_CA_BUNDLE"] = str(cert)  # trusted, not skipped
            os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1"
            hooks = [
                f"https://127.0.0.1:{port}/workflows/bench{h:03d}/triggers/manual/paths/invoke"
                f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=benchSig{h}"
                for h in range(webhooks)
            ]
            engine, clock = _prepare_teams(Path(tmp) / "teams", n, hooks)
            settings = NotificationSettings(home=Path(tmp), workers=workers)
            start = time.perf_counter()
            sent = drain(engine, clock=clock, settings=settings).sent
            for _ in range(10):  # a message handed back (retry_after) is due again later
                if sent >= n:
                    break
                time.sleep(1.0)
                clock.advance(timedelta(hours=1))
                sent += drain(engine, clock=clock, settings=settings).sent
            elapsed = time.perf_counter() - start
            engine.dispose()
            context = ssl.create_default_context(cafile=str(cert))
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/_log", context=context) as log:
                hits: list[dict[str, Any]] = json.loads(log.read())
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            endpoint.terminate()
            endpoint.join(5)
    per_path: dict[str, list[float]] = {}
    for hit in hits:
        per_path.setdefault(hit["path"], []).append(hit["at"])
    busiest = 0
    for times in per_path.values():
        times.sort()
        for i, first in enumerate(times):
            busiest = max(busiest, sum(1 for t in times[i:] if t < first + 1.0))
    accepted: dict[str, int] = {}
    for hit in hits:
        if hit["status"] == 202:
            accepted[hit["title"]] = accepted.get(hit["title"], 0) + 1
    throttled = sum(1 for hit in hits if hit["status"] == 429)
    early = sum(1 for hit in hits if hit["early"])
    duplicates = sum(count - 1 for count in accepted.values())
    print(
        f"teams: wct outbox -> apprise wctteams:// ({workers} workers, aiming at {RATE:.2f} "
        f"req/s per webhook): {sent} sent, {len(accepted)} arrived, {len(hits)} requests, "
        f"busiest second {busiest} requests to one webhook, early {early}"
    )
    print(
        f"teams fanout {n} messages {webhooks} webhooks in {elapsed:.1f} s, "
        f"429s {throttled}, duplicates {duplicates}"
    )
    if early or busiest > rate or duplicates or sent != n or len(accepted) != n:
        sys.exit("teams: a request came before a 429 allowed it, too fast, twice, or not at all")


def mailfolder_rate(home: Path, n: int, workers: int) -> float:
    """The mail-folder arm, one round: the same reminders drained to `wctmail://` (no SMTP host),
    files written a chunk at a time and fsynced together before the receipts commit."""
    engine, clock = prepare(home, n)
    settings = NotificationSettings(home=home, workers=workers, batch_size=500)
    start = time.perf_counter()
    result = drain(engine, clock=clock, settings=settings)
    rate = result.sent / (time.perf_counter() - start)
    engine.dispose()
    files = len(list((home / "mail").glob("*.eml")))
    if result.sent != n or files != n:
        sys.exit(f"mail folder: expected {n}, got {result.sent} sent, {files} files")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="Best of N for both sides.")
    parser.add_argument(
        "--mail-folder-on",
        type=Path,
        default=None,
        help="Where the mail-folder arm writes (default: the temporary folder of the run).",
    )
    parser.add_argument("--webhooks", type=int, default=10, help="Teams arm: webhooks.")
    args = parser.parse_args()
    n = args.messages

    port = free_port()
    ready = multiprocessing.Event()
    counter = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=_serve, args=(port, ready, counter), daemon=True)
    server.start()
    if not ready.wait(30):
        sys.exit("the SMTP server did not start")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine, clock = prepare(Path(tmp), n)
            settings = NotificationSettings(
                home=Path(tmp),
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_tls=TlsMode.NONE,
                mail_from="wct@example.org",
                workers=args.workers,
                batch_size=500,
            )
            # A dispatcher is a long-lived worker: load apprise's plugin table once, untimed.
            register_channels()
            wires = same_messages(n, settings, clock)
            tiny, raws, rates, arrived, folders = [], [], [], [], []
            for round_no in range(args.rounds):  # interleaved, so both see the same machine
                tiny.append(baseline(port, n))
                raws.append(baseline_same(port, wires))
                if round_no:
                    engine.dispose()
                    engine, clock = prepare(Path(tmp) / f"r{round_no}", n)
                before = counter.value
                start = time.perf_counter()
                result = drain(engine, clock=clock, settings=settings)
                rates.append(result.sent / (time.perf_counter() - start))
                arrived.append(counter.value - before)
                if result.sent != n or arrived[-1] != n:
                    sys.exit(
                        f"expected {n} delivered, got {result.sent} sent, {arrived[-1]} arrived"
                    )
                on = args.mail_folder_on or Path(tmp)  # interleaved, like the baselines
                folders.append(mailfolder_rate(on / f"mailfolder{round_no}", n, args.workers))
            engine.dispose()
            folder = max(folders)
        raw, ours, small = max(raws), max(rates), max(tiny)
        size = sum(len(w) for w in wires) // len(wires)
        print(
            f"smtplib one connection, one-line messages: best {small:.0f} msgs/s "
            f"(ours / this = {ours / small:.2f})"
        )
        print(
            f"smtplib one connection, the same {n} reminders (~{size} bytes each, prebuilt): "
            f"best {raw:.0f} msgs/s"
        )
        print(
            f"wct outbox -> apprise wctsmtp:// ({args.workers} workers): {n} sent and arrived "
            f"x {args.rounds} rounds, best {ours:.0f} msgs/s"
        )
        print(
            f"wct outbox -> mail folder ({args.workers} workers, fsync per chunk): "
            f"best {folder:.0f} msgs/s"
        )
        print(f"mailfolder ratio {folder / ours:.2f}")
        print(f"fanout ratio {ours / raw:.2f}")
    finally:
        server.terminate()
        server.join(5)
    teams_fanout(n, webhooks=args.webhooks, workers=args.workers)


if __name__ == "__main__":
    main()
