"""A dispatcher killed (SIGKILL) between the send and the receipt never sends twice to one key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from models.clock import LONDON, FixedClock
from models.outbox import Status
from notifications.channels import eml_name
from notifications.config import NotificationSettings
from notifications.dispatch import CRASH_ENV, drain
from notifications.samples import sample
from tests.notifications_fixtures import (
    SmtpServer,
    add_person,
    queue,
    row,
)

DISPATCH_ONCE = """
import os
from models.clock import SystemClock
from models.db import make_engine
from notifications.dispatch import drain_once
drain_once(make_engine(os.environ["WCT_DATABASE_URL"]), clock=SystemClock())
"""


def test_killed_between_send_and_receipt_no_key_is_delivered_twice(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path, database_url: str
) -> None:
    first = add_person(loaded, name="First", email="first@example.org", clock=clock)
    second = add_person(loaded, name="Second", email="second@example.org", clock=clock)
    ids = [
        queue(
            loaded,
            person_id=p,
            kind="reminder",
            context=sample("reminder", name),
            key=f"crash:{p}:email",
            clock=clock,
        )
        for p, name in ((first, "First"), (second, "Second"))
    ]
    env = {
        **os.environ,
        "WCT_DATABASE_URL": database_url,
        "WCT_HOME": str(tmp_path / "home"),
        "WCT_SMTP_HOST": "127.0.0.1",
        "WCT_SMTP_PORT": str(smtp_server.port),
        "WCT_SMTP_TLS": "none",
        "WCT_MAIL_FROM": "wct@example.org",
        "WCT_WORKERS": "1",  # one message at a time: the kill comes after exactly one send
        "WCT_LEASE_SECONDS": "60",
        CRASH_ENV: "after-send",
    }
    killed = subprocess.run(
        [sys.executable, "-c", DISPATCH_ONCE],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert len(smtp_server.received) == 1  # sent, and the receipt never written
    statuses = sorted(row(loaded, i).status for i in ids)
    assert statuses == [Status.CLAIMED, Status.SENDING]

    # Restart after the lease ran out: the row in `sending` becomes `unknown` (never resent on
    # its own); the row that was only claimed goes back to pending and is delivered.
    clock.set(datetime.now(LONDON) + timedelta(minutes=10))
    settings = smtp_server.settings(tmp_path)
    result = drain(loaded, clock=clock, settings=settings)
    again = drain(loaded, clock=clock, settings=settings)

    assert (result.unknown, result.requeued, result.sent, again.claimed) == (1, 1, 1, 0)
    keys = [r.message["X-WCT-Key"] for r in smtp_server.received]
    assert sorted(keys) == sorted(f"crash:{p}:email" for p in (first, second))
    assert sorted(row(loaded, i).status for i in ids) == [Status.SENT, Status.UNKNOWN]
    unknown = next(row(loaded, i) for i in ids if row(loaded, i).status == Status.UNKNOWN)
    assert unknown.last_error is not None and "may or may not have it" in unknown.last_error


def _crash(
    engine: Engine, clock: FixedClock, tmp_path: Path, database_url: str, n: int, **env: str
) -> tuple[list[int], list[str]]:
    """Queue n reminders, then run one dispatcher that SIGKILLs itself as `env` says."""
    people = [
        add_person(engine, name=f"Member {i}", email=f"m{i}@example.org", clock=clock)
        for i in range(n)
    ]
    keys = [f"crash:{p}:email" for p in people]
    ids = [
        queue(
            engine,
            person_id=p,
            kind="reminder",
            context=sample("reminder", f"Member {i}"),
            key=k,
            clock=clock,
        )
        for i, (p, k) in enumerate(zip(people, keys, strict=True))
    ]
    killed = subprocess.run(
        [sys.executable, "-c", DISPATCH_ONCE],
        env={
            **os.environ,
            "WCT_DATABASE_URL": database_url,
            "WCT_HOME": str(tmp_path / "home"),
            "WCT_MAIL_FROM": "wct@example.org",
            "WCT_LEASE_SECONDS": "60",
            **env,
        },
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    return ids, keys


def test_a_crash_mid_batch_leaves_at_most_one_message_per_connection_unknown(
    loaded: Engine, clock: FixedClock, smtp_server: SmtpServer, tmp_path: Path, database_url: str
) -> None:
    workers = 2
    ids, keys = _crash(
        loaded,
        clock,
        tmp_path,
        database_url,
        12,
        WCT_SMTP_HOST="127.0.0.1",
        WCT_SMTP_PORT=str(smtp_server.port),
        WCT_SMTP_TLS="none",
        WCT_WORKERS=str(workers),
        **{CRASH_ENV: "after-send:4"},  # mid-batch: 12 claimed, one chunk of 20
    )
    in_doubt = [i for i in ids if row(loaded, i).status == Status.SENDING]
    assert 1 <= len(in_doubt) <= workers  # not the whole batch

    clock.set(datetime.now(LONDON) + timedelta(minutes=10))
    result = drain(loaded, clock=clock, settings=smtp_server.settings(tmp_path))

    assert result.unknown == len(in_doubt)
    got = Counter(r.message["X-WCT-Key"] for r in smtp_server.received)
    assert max(got.values()) == 1  # no key twice
    statuses = {k: row(loaded, i).status for i, k in zip(ids, keys, strict=True)}
    assert set(statuses.values()) <= {Status.SENT, Status.UNKNOWN}
    assert all(got[k] == 1 for k, s in statuses.items() if s == Status.SENT)  # none lost
    assert sum(s == Status.UNKNOWN for s in statuses.values()) == len(in_doubt)


def test_the_mail_folder_settles_what_a_crash_left_in_doubt(
    loaded: Engine, clock: FixedClock, tmp_path: Path, database_url: str
) -> None:
    ids, keys = _crash(
        loaded, clock, tmp_path, database_url, 12, WCT_WORKERS="2", **{CRASH_ENV: "after-send:5"}
    )
    folder = tmp_path / "home" / "mail"
    assert any(row(loaded, i).status == Status.SENDING for i in ids)  # a chunk in doubt
    written = {k for k in keys if (folder / eml_name(k)).exists()}
    assert len(written) >= 5

    clock.set(datetime.now(LONDON) + timedelta(minutes=10))
    result = drain(loaded, clock=clock, settings=NotificationSettings(home=tmp_path / "home"))

    assert result.unknown == 0 and result.settled >= len(written)
    assert all(row(loaded, i).status == Status.SENT for i in ids)  # nothing for a human
    assert sorted(p.name for p in folder.glob("*.eml")) == sorted(eml_name(k) for k in keys)
