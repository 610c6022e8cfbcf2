"""The one injectable seam for time: every clock read in wct goes through `Clock.now()`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


class Clock(Protocol):
    """Anything that says what time it is, timezone-aware."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in Europe/London."""

    def now(self) -> datetime:
        return datetime.now(LONDON)


class FixedClock:
    """A clock that only moves when told to: for tests and accelerated simulation."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at.astimezone(LONDON)

    def now(self) -> datetime:
        return self._at

    def advance(self, by: timedelta) -> None:
        self._at = self._at + by

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at.astimezone(LONDON)
