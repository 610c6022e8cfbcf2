"""How the members' pages say dates: "Tuesday 9 March 2027", "Tuesday 9 March 2027 at 17:00"."""

from __future__ import annotations

from datetime import date, datetime

from models.clock import wall


def long_date(value: date | datetime) -> str:
    """A day as a council letter writes it; a time of day in the partnership's zone when given
    one."""
    if isinstance(value, datetime):
        wall_time = wall(value)
        return f"{wall_time:%A} {wall_time.day} {wall_time:%B %Y} at {wall_time:%H:%M}"
    return f"{value:%A} {value.day} {value:%B %Y}"
