"""`wct simulate` delivers each day's mail in a delivery thread while the calendar goes on
(flows/simulate.py): the days are counted in order, and a delivery that fails fails the
simulation rather than being lost in the thread. (That each message is sent once, on its day, to
each of its recipients is checked on a real simulation: tests/test_cycle_serve.py.)"""

from __future__ import annotations

import asyncio
import threading
from datetime import date, datetime, time
from pathlib import Path

import pytest

from flows.simulate import Simulation
from models.clock import LONDON
from models.constitution import load_constitution
from notifications.dispatch import DrainResult


def _simulation(home: Path) -> Simulation:
    return Simulation(
        start=date(2027, 1, 4),
        end=date(2027, 1, 8),
        seed=1,
        home=home,
        constitution=load_constitution(),
    )


def _evening(day: int) -> datetime:
    return datetime.combine(date(2027, 1, day), time(18), tzinfo=LONDON)


def test_each_day_is_delivered_in_the_delivery_thread_in_order_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulation = _simulation(tmp_path)
    days: list[tuple[datetime, str]] = []

    def drain(now: datetime) -> DrainResult:
        days.append((now, threading.current_thread().name))
        return DrainResult(sent=now.day, failed=1)

    monkeypatch.setattr(simulation, "_drain", drain)
    try:
        for day in (4, 5, 6):
            asyncio.run(simulation._deliver(_evening(day)))
        simulation.delivered(wait=True)
    finally:
        simulation.delivery_thread.shutdown(wait=True)
    assert [now for now, _ in days] == [_evening(4), _evening(5), _evening(6)]
    assert all(name.startswith("wct-simulated-delivery") for _, name in days), days
    assert simulation.summary.messages_delivered == 4 + 5 + 6
    assert simulation.summary.messages_failed == 3
    assert simulation.deliveries == []


def test_a_delivery_that_fails_in_the_thread_fails_the_simulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulation = _simulation(tmp_path)

    def drain(now: datetime) -> DrainResult:
        if now.day == 5:
            raise RuntimeError("the mail folder is not writable")
        return DrainResult(sent=2)

    monkeypatch.setattr(simulation, "_drain", drain)
    try:
        for day in (4, 5, 6):
            asyncio.run(simulation._deliver(_evening(day)))
        with pytest.raises(RuntimeError, match="the mail folder is not writable"):
            simulation.delivered(wait=True)
    finally:
        simulation.delivery_thread.shutdown(wait=True)
    assert simulation.summary.messages_delivered == 2  # the day before it, counted
