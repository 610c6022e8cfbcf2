"""No secret is shown, logged or stored: sentinel values planted in every secret setting never
appear in any output of the real `wct` script, in any file under WCT_HOME, or in the audit and
outbox tables, whatever fails (an unreachable database, a bad members file, failed deliveries, a
WCT_DEBUG traceback)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from models.clock import LONDON, FixedClock
from models.db import make_engine
from models.redact import HIDDEN, redact
from models.tables import AuditEvent, Channel, OutboxMessage
from notifications.samples import sample

from .conftest import DATA
from .notifications_fixtures import add_person, queue

DB_PASSWORD = "dbPASS-sentinel-" + secrets.token_hex(4)
SMTP_PASSWORD = "smtpPASS-sentinel-" + secrets.token_hex(4)
LINK_KEY = "5e" * 16 + secrets.token_hex(16)  # hex, 32 bytes
PREFECT_AUTH = "admin:prefectAUTH-sentinel-" + secrets.token_hex(4)
PREFECT_PASSWORD = "prefectURL-sentinel-" + secrets.token_hex(4)
SIG = "sigSENTINEL" + secrets.token_hex(4)
SENTINELS = (DB_PASSWORD, SMTP_PASSWORD, LINK_KEY, PREFECT_AUTH, PREFECT_PASSWORD, SIG)

WEBHOOK = (
    "https://{host}/workflows/abc/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=" + SIG
)


def leaks(text: str) -> list[str]:
    return [s for s in SENTINELS if s in text]


def test_redact_hides_url_passwords_signatures_and_known_values() -> None:
    shown = redact(
        f"postgresql+psycopg://wct:{DB_PASSWORD}@db:5432/wct and smtp://u:p%40ss@mail "
        f"{WEBHOOK.format(host='x.example')} token {SMTP_PASSWORD}",
        [SMTP_PASSWORD],
    )
    assert leaks(shown) == [] and "p%40ss" not in shown
    assert f"postgresql+psycopg://wct:{HIDDEN}@db:5432/wct" in shown
    assert f"&sig={HIDDEN}" in shown and "sp=%2Ftriggers" in shown  # only the secret goes


@pytest.mark.db  # the real `wct` script in subprocesses, against SQLite and PostgreSQL
def test_no_secret_in_any_output_log_or_table(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = database_url
    if url.startswith("postgresql"):  # trust authentication: the password is sent and ignored
        url = make_url(url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "WCT_HOME": str(home),
        "WCT_DATABASE_URL": url,
        "WCT_SMTP_HOST": "127.0.0.1",
        "WCT_SMTP_PORT": "1",  # nothing listens: every email fails
        "WCT_SMTP_TLS": "none",
        "WCT_SMTP_USER": "wct",
        "WCT_SMTP_PASSWORD": SMTP_PASSWORD,
        "WCT_LINK_KEY": LINK_KEY,
        "PREFECT_API_URL": f"http://admin:{PREFECT_PASSWORD}@127.0.0.1:1/api",
        "PREFECT_API_AUTH_STRING": PREFECT_AUTH,
    }
    outputs: list[str] = []

    def wct(*args: str | Path, **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-c", "from deployments.cli import main; main()", *map(str, args)],
            env=env | extra,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        outputs.append(f"$ wct {' '.join(map(str, args))}\n{done.stdout}{done.stderr}")
        return done

    unreachable = f"postgresql+psycopg://wct:{DB_PASSWORD}@127.0.0.1:1/wct"
    assert wct("init", WCT_DATABASE_URL=unreachable).returncode == 1
    debug = wct("init", WCT_DATABASE_URL=unreachable, WCT_DEBUG="1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    before = wct("status")
    assert before.returncode == 3 and "not initialised" in before.stderr
    assert wct("init").returncode == 0
    bad = tmp_path / "bad.csv"
    hook = WEBHOOK.format(host="10.0.0.1")
    bad.write_text(
        (DATA / "members.csv").read_text()
        + f"Eve,eve@x.example,nhs-wirral,representative,{hook},teams\n"
        + f"Eve Two,eve@@x.example,nhs-wirral,representative,{hook}&sig=x,teams\n"
    )
    refused = wct("members", "import", bad)
    assert refused.returncode == 2 and "line 8, teams_webhook" in refused.stderr
    assert wct("members", "import", DATA / "members.csv").returncode == 0

    # A Teams member whose webhook (on loopback, so added here, not imported) refuses connections.
    engine = make_engine(url)
    clock = FixedClock(datetime.now(LONDON))
    person = add_person(
        engine,
        email="teams@x.example",
        channels="email,teams",
        webhook=WEBHOOK.format(host="127.0.0.1:1"),
        clock=clock,
    )
    for channel in (Channel.EMAIL, Channel.TEAMS):
        queue(
            engine,
            person_id=person,
            kind="meeting_notice",
            context=sample("meeting_notice"),
            key=f"secret-test:{channel.value}",
            clock=clock,
            channel=channel,
        )
    wct("dispatch")
    wct("dispatch", "--json")
    for args in (("outbox",), ("outbox", "--failed"), ("outbox", "--json"), ("status",)):
        wct(*args)
    wct("status", "--json")
    wct("members", "list", "--json")
    wct("audit", "export")

    assert leaks("\n".join(outputs)) == [], "\n".join(outputs)
    for path in home.rglob("*"):
        if path.is_file() and path.name != "wct.db":
            assert leaks(path.read_bytes().decode("utf-8", "replace")) == [], path
    with engine.connect() as connection:
        for table in (AuditEvent, OutboxMessage):
            rows = connection.execute(sa.select(table)).all()
            assert rows, table
            assert leaks(repr(rows)) == [], table
    engine.dispose()
    assert os.environ.get("WCT_SMTP_PASSWORD") != SMTP_PASSWORD  # only the subprocesses had it
