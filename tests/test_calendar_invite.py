"""RFC 5545 invites, cancellations and feeds, checked by parsing them with `icalendar`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from models.calendar_invite import Attendee, Event, escape_text, feed, fold, invite
from models.clock import LONDON

STAMP = datetime(2026, 11, 23, 9, 0, tzinfo=LONDON)


def _event(**changes: object) -> Event:
    values: dict[str, object] = {
        "uid": "board-20270112@wirral.wct",
        "sequence": 0,
        "starts_at": datetime(2027, 1, 12, 10, 0, tzinfo=LONDON),
        "ends_at": datetime(2027, 1, 12, 12, 0, tzinfo=LONDON),
        "summary": "Wirral Children's Trust Board meeting",
        "organizer_email": "wct@example.org",
        "location": "Town Hall; Room 1, Wallasey",
        "attendees": (Attendee("Sam O'Neil", "sam@example.org"),),
    }
    values.update(changes)
    return Event(**values)  # type: ignore[arg-type]


def _vevents(text: str) -> list[icalendar.cal.Component]:
    return [c for c in icalendar.Calendar.from_ical(text).walk() if c.name == "VEVENT"]


def test_request_has_uid_sequence_and_london_times() -> None:
    text = invite(_event(), stamp=STAMP)
    cal = icalendar.Calendar.from_ical(text)
    assert str(cal["METHOD"]) == "REQUEST"
    [event] = _vevents(text)
    assert str(event["UID"]) == "board-20270112@wirral.wct"
    assert int(str(event["SEQUENCE"])) == 0
    assert event.decoded("DTSTART") == datetime(2027, 1, 12, 10, 0, tzinfo=LONDON)
    assert event.decoded("DTEND") == datetime(2027, 1, 12, 12, 0, tzinfo=LONDON)
    assert str(event["LOCATION"]) == "Town Hall; Room 1, Wallasey"
    assert str(event["STATUS"]) == "CONFIRMED"
    [tz] = [c for c in cal.walk() if c.name == "VTIMEZONE"]
    assert str(tz["TZID"]) == "Europe/London"
    assert all(line.endswith("\r") or line == "" for line in text.split("\n"))


def test_summer_meeting_is_an_hour_ahead_of_utc() -> None:
    summer = _event(
        starts_at=datetime(2027, 7, 6, 14, 0, tzinfo=LONDON),
        ends_at=datetime(2027, 7, 6, 16, 0, tzinfo=LONDON),
    )
    [event] = _vevents(invite(summer, stamp=STAMP))
    start = event.decoded("DTSTART")
    assert start.utcoffset() == timedelta(hours=1)
    assert "DTSTART;TZID=Europe/London:20270706T140000" in invite(summer, stamp=STAMP)


def test_a_change_raises_the_sequence_and_keeps_the_uid() -> None:
    first = _vevents(invite(_event(), stamp=STAMP))[0]
    moved = _event(
        sequence=1,
        starts_at=datetime(2027, 1, 19, 10, 0, tzinfo=LONDON),
        ends_at=datetime(2027, 1, 19, 12, 0, tzinfo=LONDON),
    )
    second = _vevents(invite(moved, stamp=STAMP))[0]
    assert str(second["UID"]) == str(first["UID"])
    assert int(str(second["SEQUENCE"])) == int(str(first["SEQUENCE"])) + 1


def test_cancellation_is_method_cancel() -> None:
    text = invite(_event(sequence=2, cancelled=True), stamp=STAMP)
    assert str(icalendar.Calendar.from_ical(text)["METHOD"]) == "CANCEL"
    [event] = _vevents(text)
    assert (str(event["STATUS"]), int(str(event["SEQUENCE"]))) == ("CANCELLED", 2)


def test_feed_lists_every_meeting() -> None:
    text = feed(
        [_event(), _event(uid="board-20270309@wirral.wct", sequence=3)], stamp=STAMP, name="Board"
    )
    cal = icalendar.Calendar.from_ical(text)
    assert str(cal["METHOD"]) == "PUBLISH"
    assert [str(e["UID"]) for e in _vevents(text)] == [
        "board-20270112@wirral.wct",
        "board-20270309@wirral.wct",
    ]


def test_text_is_escaped_and_long_lines_folded() -> None:
    assert escape_text("a;b,c\\d\ne") == "a\\;b\\,c\\\\d\\ne"
    long = "SUMMARY:" + "é" * 100
    folded = fold(long)
    assert all(len(part.encode()) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "") == long
    hostile = _event(summary="Board\r\nATTENDEE:mailto:evil@example.org")
    [event] = _vevents(invite(hostile, stamp=STAMP))
    assert "evil" not in str(event.get("ATTENDEE"))
    assert str(event["SUMMARY"]) == "Board\nATTENDEE:mailto:evil@example.org"


@pytest.mark.parametrize(
    "changes",
    [
        {"starts_at": datetime(2027, 1, 12, 10, 0)},
        {"ends_at": datetime(2027, 1, 12, 9, 0, tzinfo=LONDON)},
        {"sequence": -1},
    ],
)
def test_nonsense_events_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _event(**changes)


@pytest.mark.parametrize(
    ("zone", "wall", "offsets"),
    [
        ("Atlantic/Reykjavik", "20270706T140000", {"+0000"}),  # no summer time
        ("Europe/Dublin", "20270706T150000", {"+0000", "+0100"}),  # summer "standard" time
        ("America/St_Johns", "20270706T113000", {"-0330", "-0230"}),
    ],
)
def test_an_invite_in_another_zone_carries_that_zones_rules_and_wall_time(
    zone: str, wall: str, offsets: set[str]
) -> None:
    """The partnership's zone, not London's: its VTIMEZONE comes from the zone database, and a
    calendar reading it puts the meeting at the same instant."""
    summer = _event(
        starts_at=datetime(2027, 7, 6, 14, 0, tzinfo=UTC),
        ends_at=datetime(2027, 7, 6, 16, 0, tzinfo=UTC),
    )
    text = invite(summer, stamp=STAMP, zone=zone)
    assert f"DTSTART;TZID={zone}:{wall}" in text
    [event] = _vevents(text)
    assert event.decoded("DTSTART") == summer.starts_at
    assert event.decoded("DTEND") == summer.ends_at
    [tz] = [c for c in icalendar.Calendar.from_ical(text).walk() if c.name == "VTIMEZONE"]
    assert str(tz["TZID"]) == zone
    found = {line.split(":")[1] for line in text.splitlines() if line.startswith("TZOFFSETTO")}
    assert found == offsets
