"""RFC 5545 calendar objects for meetings: invites (METHOD:REQUEST), cancellations, feeds.

Pure text building with the standard library only. A meeting keeps one UID for life
(`Meeting.ical_uid`) and raises `SEQUENCE` on every change (`Meeting.ical_sequence`), so a calendar
updates the event it already has instead of adding a second one. Times are written in the
partnership's time zone with its VTIMEZONE (Europe/London by default), so Outlook shows the wall
time the constitution means.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

from models.clock import local_zone

PRODID = "-//wct//Partnership governance//EN"
TZID = "Europe/London"

# The rules of Europe/London since 1996 (EU summer time): BST from 01:00 UTC on the last Sunday
# of March to 01:00 UTC on the last Sunday of October.
VTIMEZONE = (
    "BEGIN:VTIMEZONE",
    f"TZID:{TZID}",
    "X-LIC-LOCATION:Europe/London",
    "BEGIN:DAYLIGHT",
    "TZOFFSETFROM:+0000",
    "TZOFFSETTO:+0100",
    "TZNAME:BST",
    "DTSTART:19700329T010000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "END:DAYLIGHT",
    "BEGIN:STANDARD",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0000",
    "TZNAME:GMT",
    "DTSTART:19701025T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "END:STANDARD",
    "END:VTIMEZONE",
)


class Method(StrEnum):
    REQUEST = "REQUEST"
    CANCEL = "CANCEL"
    PUBLISH = "PUBLISH"


@dataclass(frozen=True)
class Attendee:
    name: str
    email: str


@dataclass(frozen=True)
class Event:
    """One meeting as a calendar sees it."""

    uid: str
    sequence: int
    starts_at: datetime
    ends_at: datetime
    summary: str
    organizer_email: str
    organizer_name: str = "wct"
    location: str | None = None
    description: str = ""
    cancelled: bool = False
    attendees: Sequence[Attendee] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("calendar events need timezone-aware times")
        if self.ends_at <= self.starts_at:
            raise ValueError(f"event {self.uid} ends before it starts")
        if self.sequence < 0:
            raise ValueError("SEQUENCE is never negative")


def escape_text(value: str) -> str:
    """RFC 5545 3.3.11 TEXT: backslash, semicolon, comma and newlines escaped."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _param(value: str) -> str:
    """A parameter value (CN=...): quoted, with characters a quoted value cannot hold removed."""
    return '"' + "".join(ch for ch in value if ch not in '"\r\n' and ord(ch) >= 32) + '"'


def fold(line: str) -> str:
    """RFC 5545 3.1: lines longer than 75 octets continue on the next line after a space."""
    out: list[str] = []
    current = b""
    for ch in line:
        encoded = ch.encode("utf-8")
        if len(current) + len(encoded) > (75 if not out else 74):
            out.append(current.decode("utf-8"))
            current = b""
        current += encoded
    out.append(current.decode("utf-8"))
    return "\r\n ".join(out)


def _local(value: datetime, zone: tzinfo) -> str:
    return value.astimezone(zone).strftime("%Y%m%dT%H%M%S")


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _transition(zone: tzinfo, low: datetime, high: datetime) -> datetime:
    """The first minute (UTC) in (low, high] whose offset differs from `low`'s."""
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(minutes=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(second=0, microsecond=0)


def vtimezone(name: str, years: Iterable[int]) -> tuple[str, ...]:
    """The VTIMEZONE of any IANA zone over `years` (and the years either side): one component
    per offset change, read from the zone database, so a calendar needs no rules of its own."""
    if name == TZID:
        return VTIMEZONE
    zone = ZoneInfo(name)
    wanted = sorted(set(years)) or [2000]
    start = datetime(wanted[0] - 1, 1, 1, 12, tzinfo=UTC)
    end = datetime(wanted[-1] + 2, 1, 1, 12, tzinfo=UTC)
    first = start.astimezone(zone)
    lines = ["BEGIN:VTIMEZONE", f"TZID:{name}"]

    def component(at: datetime, before: timedelta | None) -> None:
        local = at.astimezone(zone)
        summer = (local.dst() or timedelta()) > timedelta()  # Dublin's winter is dst < 0
        kind = "DAYLIGHT" if summer else "STANDARD"
        lines.extend(
            [
                f"BEGIN:{kind}",
                f"TZOFFSETFROM:{_offset(before)}",
                f"TZOFFSETTO:{_offset(local.utcoffset())}",
                f"TZNAME:{local.tzname() or name}",
                f"DTSTART:{(at + (before or timedelta())).strftime('%Y%m%dT%H%M%S')}",
                f"END:{kind}",
            ]
        )

    component(start, first.utcoffset())
    day = start
    while day < end:
        following = day + timedelta(days=1)
        offset = day.astimezone(zone).utcoffset()
        if following.astimezone(zone).utcoffset() != offset:
            component(_transition(zone, day, following), offset)
        day = following
    lines.append("END:VTIMEZONE")
    return tuple(lines)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _event_lines(event: Event, *, method: Method, stamp: datetime, zone: str) -> list[str]:
    local = ZoneInfo(zone)
    lines = [
        "BEGIN:VEVENT",
        f"UID:{escape_text(event.uid)}",
        f"SEQUENCE:{event.sequence}",
        f"DTSTAMP:{_utc(stamp)}",
        f"DTSTART;TZID={zone}:{_local(event.starts_at, local)}",
        f"DTEND;TZID={zone}:{_local(event.ends_at, local)}",
        f"SUMMARY:{escape_text(event.summary)}",
        f"ORGANIZER;CN={_param(event.organizer_name)}:mailto:{event.organizer_email}",
    ]
    if event.location:
        lines.append(f"LOCATION:{escape_text(event.location)}")
    if event.description:
        lines.append(f"DESCRIPTION:{escape_text(event.description)}")
    for person in event.attendees:
        role = "ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE"
        if method is Method.CANCEL:
            role = "ROLE=REQ-PARTICIPANT"
        lines.append(f"ATTENDEE;CN={_param(person.name)};{role}:mailto:{person.email}")
    cancelled = event.cancelled or method is Method.CANCEL
    lines.append("STATUS:CANCELLED" if cancelled else "STATUS:CONFIRMED")
    lines.append("TRANSP:OPAQUE")
    lines.append("END:VEVENT")
    return lines


def calendar(
    events: Iterable[Event],
    *,
    method: Method,
    stamp: datetime,
    name: str = "",
    zone: str | None = None,
) -> str:
    """A VCALENDAR with `events` in `zone` (an IANA name; none: the partnership's zone in force)
    and its VTIMEZONE, CRLF line ends, folded."""
    events = list(events)
    zone = zone or local_zone().key
    lines = ["BEGIN:VCALENDAR", f"PRODID:{PRODID}", "VERSION:2.0", "CALSCALE:GREGORIAN"]
    lines.append(f"METHOD:{method.value}")
    if name:
        lines.append(f"X-WR-CALNAME:{escape_text(name)}")
    lines.extend(vtimezone(zone, (e.starts_at.year for e in events)))
    for event in events:
        lines.extend(_event_lines(event, method=method, stamp=stamp, zone=zone))
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)


def invite(event: Event, *, stamp: datetime, zone: str | None = None) -> str:
    """METHOD:REQUEST for a planned or changed meeting; METHOD:CANCEL when it is cancelled."""
    method = Method.CANCEL if event.cancelled else Method.REQUEST
    return calendar([event], method=method, stamp=stamp, zone=zone)


def feed(events: Iterable[Event], *, stamp: datetime, name: str, zone: str | None = None) -> str:
    """A subscribable feed (METHOD:PUBLISH) of a body's meetings."""
    return calendar(events, method=Method.PUBLISH, stamp=stamp, name=name, zone=zone)
