"""England's working days and the expansion of meeting cadences."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.calendar import (
    add_working_days,
    bank_holiday,
    is_working_day,
    meeting_dates,
    meetings_between,
    parse_cadence,
    working_days_between,
)
from models.clock import LONDON


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2027, 3, 26), False),  # Good Friday
        (date(2027, 3, 29), False),  # Easter Monday
        (date(2027, 12, 27), False),  # Christmas Day (substitute)
        (date(2027, 12, 28), False),  # Boxing Day (substitute)
        (date(2027, 5, 3), False),  # Early May bank holiday
        (date(2027, 3, 27), False),  # Saturday
        (date(2027, 3, 30), True),
        (date(2027, 8, 2), True),  # Scotland's summer holiday: a working day in England
    ],
)
def test_working_days_in_england(day: date, working: bool) -> None:
    assert is_working_day(day) is working


def test_bank_holiday_names() -> None:
    assert bank_holiday(date(2027, 3, 26)) == "Good Friday"
    assert bank_holiday(date(2027, 3, 30)) is None


def test_add_working_days_skips_weekends_and_bank_holidays() -> None:
    assert add_working_days(date(2027, 3, 25), 1) == date(2027, 3, 30)
    assert add_working_days(date(2027, 3, 30), -1) == date(2027, 3, 25)
    assert add_working_days(date(2027, 3, 30), 0) == date(2027, 3, 30)
    assert add_working_days(date(2026, 12, 24), 1) == date(2026, 12, 29)


@given(st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31)), st.integers(-60, 60))
def test_adding_then_counting_working_days_round_trips(day: date, days: int) -> None:
    target = add_working_days(day, days)
    assert working_days_between(day, target) == days
    if days:
        assert is_working_day(target)


def test_cadence_keeps_wall_time_across_clock_changes() -> None:
    dates = meeting_dates(
        "FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU",
        datetime(2027, 1, 12, 14, 0),
        after=datetime(2027, 1, 1, tzinfo=LONDON),
        count=4,
    )
    assert [d.date() for d in dates] == [
        date(2027, 1, 12),
        date(2027, 3, 9),
        date(2027, 5, 11),
        date(2027, 7, 13),
    ]
    assert all(d.hour == 14 for d in dates)
    assert dates[0].utcoffset() == timedelta(0)  # GMT
    assert dates[2].utcoffset() == timedelta(hours=1)  # BST


def test_meetings_between_is_inclusive() -> None:
    got = meetings_between(
        "FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU",
        datetime(2027, 1, 12, 14, 0, tzinfo=LONDON),
        datetime(2027, 1, 12, 14, 0, tzinfo=LONDON),
        datetime(2027, 12, 31, tzinfo=LONDON),
    )
    assert len(got) == 6


def test_a_bad_rrule_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_cadence("FREQ=FORTNIGHTLY", datetime(2027, 1, 1))
