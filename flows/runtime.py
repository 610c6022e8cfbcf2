"""What every flow needs from outside: the wct database, the clock (the one seam for time), and
the partnership's local time and region in force while it runs (`partnership_time`)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.clock import Clock, FixedClock, SystemClock
from models.commands import partnership_of
from models.config import get_settings
from models.db import make_engine
from models.redact import install_log_redaction, remember
from models.tables import Step

#: Flows that talk to the Prefect API or deliver messages retry a transient failure. Each request
#: is first retried by Prefect's client with exponential backoff (429 and 503, up to
#: PREFECT_CLIENT_MAX_RETRIES); a run that fails anyway is retried whole after RETRY_DELAY (every
#: command in it is idempotent); a run that still fails is repaired by the sweep, which re-plans
#: the cycles and acts on every due step.
RETRIES = 3
RETRY_DELAY = 30


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    # A flow run's process (and a serving one) hides the secrets it reads in every log record,
    # as the CLI does, from the first time it opens the database.
    install_log_redaction()
    remember(get_settings().secret_values())
    return make_engine(url)


def engine() -> Engine:
    """The engine for the configured database, made once per process on first use."""
    return _engine(get_settings().resolved_database_url)


def database_tag() -> str:
    """A short name for this wct database (a hash of its URL, password left out), so that two
    partnerships, or a test and a simulation, sharing one Prefect server never share a timer."""
    return _tag(get_settings().resolved_database_url)


@lru_cache(maxsize=4)
def _tag(url: str) -> str:
    shown = _engine(url).url.render_as_string(hide_password=True)
    return hashlib.sha256(shown.encode()).hexdigest()[:10]


@contextmanager
def partnership_time() -> Iterator[None]:
    """Within the block, the constitution's time zone and region are in force (its 09:00 and
    17:00, its "today", its bank holidays); Europe/London and England before one is loaded."""
    with partnership_of(engine()):
        yield


def clock_at(as_of: datetime | None) -> Clock:
    """The injected clock: wall time, or the time a simulation or test says it is."""
    return FixedClock(as_of) if as_of is not None else SystemClock()


#: Prefect's runner starts a run up to 10 s before its scheduled time (prefetch), and the server's
#: wait-for-scheduled-time rule does not hold a run that is already Pending: a timer can start a
#: little early. It waits for its step's time instead of finding it "not due" and leaving it to
#: the next sweep. Longer than this is not a timer firing early: the run ends and the step waits.
EARLY_LIMIT = timedelta(minutes=5)


async def until_due(key: str, as_of: datetime | None) -> None:
    """Wait, on the wall clock only, until step `key` is due if it is due within EARLY_LIMIT."""
    if as_of is not None:
        return  # an injected clock says when it is; a simulation never starts early
    with Session(engine()) as session:
        due = session.exec(select(Step.due_at).where(Step.key == key)).first()
    if due is None:
        return
    early = due - SystemClock().now()
    if timedelta(0) < early <= EARLY_LIMIT:
        await asyncio.sleep(early.total_seconds())
