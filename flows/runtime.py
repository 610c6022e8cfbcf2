"""What every flow needs from outside: the wct database and the clock (the one seam for time)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy.engine import Engine

from models.clock import Clock, FixedClock, SystemClock
from models.config import get_settings
from models.db import make_engine


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    return make_engine(url)


def engine() -> Engine:
    """The engine for the configured database, made once per process on first use."""
    return _engine(get_settings().resolved_database_url)


def clock_at(as_of: datetime | None) -> Clock:
    """The injected clock: wall time, or the time a simulation or test says it is."""
    return FixedClock(as_of) if as_of is not None else SystemClock()
