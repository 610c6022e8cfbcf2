"""The one injectable seam for time: every clock read in wct goes through `Clock.now()`.

The partnership's local time is its constitution's `partnership.time_zone`: an entry point running
one partnership enters it (`models.calendar.in_partnership`), and every rule that needs a wall
time or a day (09:00 notices, 17:00 deadlines, "today") reads it with `local_zone()`. Outside any
partnership the zone in force is Europe/London (`DEFAULT_ZONE`). Stored times stay
timezone-aware, so they compare the same in any zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

#: Europe/London: the zone in force when no partnership's is (the constitution's default).
LONDON = ZoneInfo("Europe/London")
DEFAULT_ZONE = LONDON
_ZONE: ContextVar[ZoneInfo] = ContextVar("wct_zone", default=DEFAULT_ZONE)


def local_zone() -> ZoneInfo:
    """The time zone of the partnership in force: its wall times and its days."""
    return _ZONE.get()


@contextmanager
def in_zone(zone: ZoneInfo) -> Iterator[None]:
    """Within the block, `local_zone()` is `zone` (an entry point enters the partnership's, with
    its region: `models.calendar.in_partnership`)."""
    token = _ZONE.set(zone)
    try:
        yield
    finally:
        _ZONE.reset(token)


def local(when: datetime) -> datetime:
    """`when` (timezone-aware) as the partnership's wall time."""
    if when.tzinfo is None:
        raise ValueError(f"{when.isoformat()} has no time zone")
    return when.astimezone(local_zone())


def wall(when: datetime) -> datetime:
    """`when` as the partnership's wall time, for showing it: a time without a zone (a message
    context written without one) is taken as already the partnership's wall time."""
    return when.replace(tzinfo=local_zone()) if when.tzinfo is None else local(when)


def local_day(when: datetime) -> date:
    """The partnership's day at the moment `when`."""
    return local(when).date()


class Clock(Protocol):
    """Anything that says what time it is, timezone-aware."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in the partnership's zone (`local_zone()`)."""

    def now(self) -> datetime:
        return datetime.now(local_zone())


class FixedClock:
    """A clock that only moves when told to: for tests and accelerated simulation. It reads in
    the zone in force when read, and `advance` moves it by wall time in that zone."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at

    def now(self) -> datetime:
        return self._at.astimezone(local_zone())

    def advance(self, by: timedelta) -> None:
        self._at = self.now() + by

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at
