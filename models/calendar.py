"""Time rules: England's working days and the expansion of a body's meeting cadence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache

import holidays
from dateutil.rrule import rrule, rrulestr

from models.clock import LONDON


@lru_cache(maxsize=64)
def _bank_holidays(year: int) -> dict[date, str]:
    return dict(holidays.country_holidays("GB", subdiv="ENG", years=year).items())


def bank_holiday(day: date) -> str | None:
    """The name of the English bank holiday on `day`, if it is one."""
    return _bank_holidays(day.year).get(day)


def is_working_day(day: date) -> bool:
    """A weekday in England that is not a bank holiday (substitute days included)."""
    return day.weekday() < 5 and bank_holiday(day) is None


def add_working_days(day: date, days: int) -> date:
    """The date `days` working days after `day` (before it when negative); 0 keeps `day`."""
    step = 1 if days >= 0 else -1
    remaining = abs(days)
    current = day
    while remaining:
        current += timedelta(days=step)
        if is_working_day(current):
            remaining -= 1
    return current


def working_days_between(start: date, end: date) -> int:
    """The `n` with add_working_days(start, n) == end when `end` is a working day: working days
    in (start, end], or minus those in [end, start) when `end` is earlier."""
    if end < start:
        return -sum(1 for n in range((start - end).days) if is_working_day(end + timedelta(n)))
    return sum(1 for n in range(1, (end - start).days + 1) if is_working_day(start + timedelta(n)))


def parse_cadence(rule: str, first: datetime) -> rrule:
    """Parse an RFC 5545 RRULE anchored at `first` (Europe/London wall time); ValueError if bad."""
    if first.tzinfo is None:
        first = first.replace(tzinfo=LONDON)
    parsed = rrulestr(rule, dtstart=first)
    if not isinstance(parsed, rrule):
        raise ValueError("expected a single RRULE, not a rule set")
    return parsed


def meeting_dates(rule: str, first: datetime, *, after: datetime, count: int) -> list[datetime]:
    """The next `count` meeting starts strictly after `after`, as Europe/London datetimes."""
    return list(_take(_occurrences(parse_cadence(rule, first), after), count))


def meetings_between(rule: str, first: datetime, start: datetime, end: datetime) -> list[datetime]:
    """Every meeting start in [start, end]."""
    parsed = parse_cadence(rule, first)
    return [_wall(d) for d in parsed.between(start, end, inc=True)]


def _occurrences(parsed: rrule, after: datetime) -> Iterator[datetime]:
    current = parsed.after(after, inc=False)
    while current is not None:
        yield _wall(current)
        current = parsed.after(current, inc=False)


def _take(it: Iterator[datetime], count: int) -> Iterator[datetime]:
    for n, item in enumerate(it):
        if n >= count:
            return
        yield item


def _wall(moment: datetime) -> datetime:
    # dateutil keeps the wall time and tzinfo; normalise so UTC offsets follow BST/GMT.
    return moment.replace(tzinfo=LONDON)
