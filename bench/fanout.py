"""Fan-out benchmark: 1,000 personalised reminders through the whole outbox path to loopback SMTP.

Measures, in one run and against the same aiosmtpd server (in its own process, so it does not
share our GIL):
  baseline  plain smtplib, one connection, sending the same 1,000 reminders, built beforehand and
            untimed (the raw transport rate for these messages); for reference it also times
            1,000 one-line messages, which the loopback server takes faster (fewer lines);
  wct       1,000 outbox rows drained by the dispatcher: claim, validate, render the jinja2
            templates, build MIME, commit `sending`, apprise notify() on the `wctsmtp://` channel
            (pooled connections), commit `sent` -- on a SQLite database file.
Prints, as its last line, `fanout ratio R` with R = wct msgs/s / smtplib msgs/s.

    python bench/fanout.py [--messages 1000] [--workers 4]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="Best of N for both sides.")
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
            tiny, raws, rates, arrived = [], [], [], []
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
            engine.dispose()
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
        print(f"fanout ratio {ours / raw:.2f}")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
