"""Crash benchmark: SIGKILL `wct dispatch` at random points while it drains the outbox to SMTP.

An aiosmtpd server in its own process, on 127.0.0.1, writes the X-WCT-Key of every message it
accepts to a file. M messages are queued in a SQLite file; then, N times, `wct dispatch` is started
as a subprocess and killed with SIGKILL once the server has taken a random number more of them
(plus a random few milliseconds, so the kill lands anywhere: mid-render, mid-commit, mid-DATA).
Finally the outbox is drained to completion in this process, as a dispatcher would after the
leases ran out, and the server's log is compared with the outbox:

  lost        queued, never received, and neither waiting to be sent nor shown to a coordinator
  duplicates  keys received more than once
  stranded    rows left `unknown` (a coordinator must decide; SMTP cannot be asked)

Each next dispatcher starts as if the killed one's leases had run out (its claimed rows back to
`pending`, its `sending` rows `unknown`), as the served dispatcher would find them later. A crash
leaves at most the messages then in flight, one per connection, `unknown`: so `stranded` is at
most kills x workers. Prints, as its LAST line, `crash lost L duplicates D stranded S`.

    python bench/crash.py [--kills 10] [--messages 1000] [--workers 1] [--seed 12]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.clock import FixedClock, SystemClock
from models.commands import apply_constitution
from models.constitution import load_constitution
from models.db import make_engine, migrate
from models.outbox import Status, enqueue
from models.tables import Channel, Organisation, OutboxMessage, Person
from models.uow import UnitOfWork
from notifications.config import NotificationSettings, TlsMode
from notifications.dispatch import drain
from notifications.samples import sample

ROOT = Path(__file__).resolve().parent.parent
LEASE = 300  # the default WCT_LEASE_SECONDS
ROUND_LIMIT = 120.0  # seconds one dispatcher may take to reach its kill point


def _serve(port: int, log_path: str, ready: Any, counter: Any) -> None:
    from aiosmtpd.controller import Controller

    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115  (open for the process's life)

    class Count:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802, ARG002
            key = ""
            for line in bytes(envelope.content).split(b"\r\n"):
                if not line:
                    break
                if line.lower().startswith(b"x-wct-key:"):
                    key = line.split(b":", 1)[1].strip().decode()
                    break
            log.write(key + "\n")
            log.flush()
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


def prepare(url: str, n: int) -> list[str]:
    """A migrated database with the Wirral constitution, n members and one reminder each, due."""
    engine = make_engine(url)
    migrate(engine)
    clock = SystemClock()
    with UnitOfWork(engine, clock=clock, actor="bench") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        uow.commit()
    keys = []
    with Session(engine) as session:
        org = session.exec(select(Organisation)).first()
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
            key = f"crash:reminder:{person.pseudonym}:email"
            enqueue(
                session,
                key=key,
                kind="reminder",
                person=person,
                channel=Channel.EMAIL,
                context=sample("reminder", person.name),
                now=clock.now(),
            )
            keys.append(key)
        session.commit()
    engine.dispose()
    return keys


def kill_rounds(
    args: argparse.Namespace, env: dict[str, str], counter: Any, rng: random.Random
) -> int:
    """Start `wct dispatch` and SIGKILL it at a random point, `args.kills` times; the kills made."""
    kills = 0
    step = max(2, args.messages // (args.kills + 1))
    for _ in range(args.kills):
        target = counter.value + rng.randint(1, step)
        process = subprocess.Popen(
            [sys.executable, "-c", "from deployments.cli import main; main()", "dispatch"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + ROUND_LIMIT
        while process.poll() is None and counter.value < target and time.monotonic() < deadline:
            time.sleep(0.0005)
        if process.poll() is None:
            time.sleep(rng.random() * 0.005)  # anywhere in what it is doing now
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(30)
        expire_leases(env["WCT_DATABASE_URL"])
    return kills


def expire_leases(url: str) -> None:
    """Let the killed dispatcher's leases run out now instead of in LEASE seconds: the next
    dispatcher recovers its rows (`recover_expired`) as it would have then."""
    engine = make_engine(url)
    with Session(engine) as session:
        session.execute(
            sa.update(OutboxMessage)
            .where(col(OutboxMessage.lease_until).is_not(None))
            .values(lease_until=SystemClock().now() - timedelta(seconds=1))
        )
        session.commit()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="connections of the killed dispatcher (each may leave one message unknown)",
    )
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="wct-crash-") as tmp:
        home = Path(tmp)
        received_log = home / "received.txt"
        port = free_port()
        ready = multiprocessing.Event()
        counter = multiprocessing.Value("i", 0)
        server = multiprocessing.Process(
            target=_serve, args=(port, str(received_log), ready, counter), daemon=True
        )
        server.start()
        try:
            if not ready.wait(30):
                sys.exit("the SMTP server did not start")
            url = f"sqlite:///{home / 'crash.db'}"
            keys = prepare(url, args.messages)
            lease = LEASE
            env = {
                **os.environ,
                "WCT_HOME": str(home),
                "WCT_DATABASE_URL": url,
                "WCT_SMTP_HOST": "127.0.0.1",
                "WCT_SMTP_PORT": str(port),
                "WCT_SMTP_TLS": "none",
                "WCT_MAIL_FROM": "wct@example.org",
                "WCT_WORKERS": str(args.workers),
                "WCT_LEASE_SECONDS": str(lease),
                "PREFECT_LOGGING_LEVEL": "ERROR",
            }
            kills = kill_rounds(args, env, counter, rng)

            # Recovery: a dispatcher after the leases ran out, draining until nothing is due.
            engine = make_engine(url)
            later = FixedClock(SystemClock().now() + timedelta(seconds=lease + 60))
            settings = NotificationSettings(
                home=home,
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_tls=TlsMode.NONE,
                mail_from="wct@example.org",
                workers=args.workers,
            )
            final = drain(engine, clock=later, settings=settings)
            with Session(engine) as session:
                status = {r.key: r.status for r in session.exec(select(OutboxMessage)).all()}
            engine.dispose()
        finally:
            server.terminate()
            server.join(5)
        got = Counter(k for k in received_log.read_text().splitlines() if k)

    waiting = {Status.PENDING.value, Status.FAILED.value, Status.CLAIMED.value}
    stranded = [k for k in keys if status.get(k) == Status.UNKNOWN.value]
    lost = [
        k for k in keys if got[k] == 0 and status.get(k) not in waiting | {Status.UNKNOWN.value}
    ]
    duplicates = [k for k in keys if got[k] > 1]
    never = [k for k in stranded if got[k] == 0]
    states = Counter(status.values())
    print(
        f"{kills} kills over {args.messages} messages ({args.workers} worker(s)); final drain: "
        f"{final.sent} sent, {final.requeued} requeued, {final.unknown} left unknown"
    )
    print(f"outbox: {dict(sorted(states.items()))}; received {sum(got.values())} messages")
    print(f"stranded {len(stranded)}, of which never received {len(never)}")
    print(f"crash lost {len(lost)} duplicates {len(duplicates)} stranded {len(stranded)}")


if __name__ == "__main__":
    main()
