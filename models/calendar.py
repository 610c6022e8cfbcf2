"""Time rules: a region's working days and the expansion of a body's meeting cadence.

The region (whose bank holidays close the office) comes from the constitution
(`partnership.region`); a rule that is not told one uses the region in force (`in_region`),
England unless an entry point says otherwise. An entry point running one partnership enters its
region and its time zone together (`in_partnership`); a cadence not told a zone expands in the
zone in force (`models.clock.local_zone`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import holidays
from dateutil.rrule import rrule, rrulestr

from models.clock import in_zone, local_zone

if TYPE_CHECKING:
    from models.constitution import Partnership

Region = Literal["england", "wales", "scotland", "northern-ireland"]
#: The `holidays` package's subdivision of the United Kingdom for each region.
SUBDIVISIONS: dict[str, str] = {
    "england": "ENG",
    "wales": "WLS",
    "scotland": "SCT",
    "northern-ireland": "NIR",
}
_REGION: ContextVar[Region] = ContextVar("wct_region", default="england")


def current_region() -> Region:
    """The region whose bank holidays the working-day rules use when not told one."""
    return _REGION.get()


@contextmanager
def in_region(region: Region) -> Iterator[None]:
    """Within the block, working-day rules not told a region use `region` (an entry point
    running one partnership's constitution enters its `partnership.region`)."""
    token = _REGION.set(region)
    try:
        yield
    finally:
        _REGION.reset(token)


@contextmanager
def in_partnership(partnership: Partnership) -> Iterator[None]:
    """Within the block, the partnership's bank holidays (`partnership.region`) and its local
    time (`partnership.time_zone`) are in force: every entry point that runs a partnership's
    rules enters this once."""
    with in_region(partnership.region), in_zone(partnership.zone):
        yield


@lru_cache(maxsize=64)
def _bank_holidays(year: int, region: Region) -> dict[date, str]:
    found = holidays.country_holidays("GB", subdiv=SUBDIVISIONS[region], years=year)
    return dict(found.items())


def bank_holiday(day: date, region: Region | None = None) -> str | None:
    """The name of the region's bank holiday on `day`, if it is one."""
    return _bank_holidays(day.year, region or current_region()).get(day)


def is_working_day(day: date, region: Region | None = None) -> bool:
    """A weekday that is not a bank holiday in the region (substitute days included)."""
    return day.weekday() < 5 and bank_holiday(day, region) is None


def add_working_days(day: date, days: int, region: Region | None = None) -> date:
    """The date `days` working days after `day` (before it when negative); 0 keeps `day`."""
    region = region or current_region()
    step = 1 if days >= 0 else -1
    remaining = abs(days)
    current = day
    while remaining:
        current += timedelta(days=step)
        if is_working_day(current, region):
            remaining -= 1
    return current


def working_days_between(start: date, end: date, region: Region | None = None) -> int:
    """The `n` with add_working_days(start, n) == end when `end` is a working day: working days
    in (start, end], or minus those in [end, start) when `end` is earlier."""
    region = region or current_region()
    if end < start:
        span = range((start - end).days)
        return -sum(1 for n in span if is_working_day(end + timedelta(n), region))
    span = range(1, (end - start).days + 1)
    return sum(1 for n in span if is_working_day(start + timedelta(n), region))


def parse_cadence(rule: str, first: datetime, zone: tzinfo | None = None) -> rrule:
    """Parse an RFC 5545 RRULE anchored at `first` (wall time in `zone`, by default the zone in
    force, when it has none); ValueError if bad."""
    zone = zone or local_zone()
    if first.tzinfo is None:
        first = first.replace(tzinfo=zone)
    parsed = rrulestr(rule, dtstart=first)
    if not isinstance(parsed, rrule):
        raise ValueError("expected a single RRULE, not a rule set")
    return parsed


def meeting_dates(
    rule: str, first: datetime, *, after: datetime, count: int, zone: tzinfo | None = None
) -> list[datetime]:
    """The next `count` meeting starts strictly after `after`, as datetimes in `zone` (by
    default the zone in force)."""
    zone = zone or local_zone()
    return list(_take(_occurrences(parse_cadence(rule, first, zone), after, zone), count))


def meetings_between(
    rule: str, first: datetime, start: datetime, end: datetime, zone: tzinfo | None = None
) -> list[datetime]:
    """Every meeting start in [start, end], in `zone` (by default the zone in force)."""
    zone = zone or local_zone()
    parsed = parse_cadence(rule, first, zone)
    return [_wall(d, zone) for d in parsed.between(start, end, inc=True)]


def cadence_ends(rule: str) -> bool:
    """Whether the RRULE stops (COUNT or UNTIL), after which the body no longer meets."""
    parts = {part.partition("=")[0].strip().upper() for part in rule.split(";")}
    return bool(parts & {"COUNT", "UNTIL"})


def _occurrences(parsed: rrule, after: datetime, zone: tzinfo) -> Iterator[datetime]:
    current = parsed.after(after, inc=False)
    while current is not None:
        yield _wall(current, zone)
        current = parsed.after(current, inc=False)


def _take(it: Iterator[datetime], count: int) -> Iterator[datetime]:
    for n, item in enumerate(it):
        if n >= count:
            return
        yield item


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    # dateutil keeps the wall time and tzinfo; normalise so UTC offsets follow summer time.
    return moment.replace(tzinfo=zone)
