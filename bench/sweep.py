"""Sweep benchmark: the reconcile sweep's scan and its acting on due steps, at 10,000 steps.

Builds a wct database (a temporary SQLite file, or with `--database` a fresh schema of that
PostgreSQL database, dropped afterwards) holding the Wirral constitution and its members, then
opens enough quarterly reports through the domain (`models.reports.open_reports`: each report
with its request, reminders and overdue escalation) for N pending steps. Untimed set-up then
re-times them: the first N (in due order, their reports due days ago) fall due in the hours
before the clock, as after an outage; N more of the same kinds about the same reports (the
years a period may name hold too few reports for 2 x N) fall due after it.

  scan  the sweep's scan (`run_due`) finding nothing due among the N pending steps not yet due,
        the N it acted on now done: median of 5 runs;
  due   `run_due` acting on the N due steps (requests and escalations queued to their
        recipients, superseded reminders skipped, each audited), batched commits.

With `--baseline`, the due steps are first acted on by the old path (one transaction per step,
`run_step` for each) on a copy of the set-up, and the ratio is printed. The last lines are:

    sweep scan N in T ms
    sweep due N in T s

    python bench/sweep.py [--steps 10000] [--batch 200] [--baseline]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from flows.simulate import prepare_database
from models import reports
from models.calendar import in_partnership
from models.clock import LONDON, FixedClock
from models.constitution import load_constitution
from models.db import make_engine
from models.steps.engine import overdue_steps, run_due, run_step
from models.steps.planning import STEPS
from models.tables import Step
from models.uow import UnitOfWork

NOW = datetime(2030, 1, 7, 12, 0, tzinfo=LONDON)


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """A fresh database: a temporary SQLite file, or a new schema of the PostgreSQL `url`."""
    if url is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'sweep.db'}"
        return
    schema = f"wct_sweep_{secrets.token_hex(4)}"
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def populate(db: Engine, n: int) -> None:
    """The partnership, then 2n pending report steps: n due in the hours before NOW, n after."""
    c = load_constitution()
    clock = FixedClock(datetime(2026, 11, 23, 9, 0, tzinfo=LONDON))
    prepare_database(db, c, clock)
    months = c.quarterly_reports[0].months
    letter = reports.period_letter(months)
    year, number = 2000, 1  # the earliest year a period may name
    with in_partnership(c.partnership):
        while _count(db) < n:
            with UnitOfWork(db, clock=clock, actor="operator:bench") as uow:
                reports.open_reports(uow, period=f"{year}-{letter}{number}")
                uow.commit()
            year, number = (year + 1, 1) if number == len(months) else (year, number + 1)
    t, late = STEPS.c, (NOW - timedelta(days=3)).date()
    with db.begin() as connection:
        rows = connection.execute(sa.select(STEPS).order_by(t.due_at, t.id)).mappings().all()
        due, extra = rows[:n], rows[n:]
        connection.execute(STEPS.delete().where(t.id.in_([r["id"] for r in extra])))
        connection.execute(
            STEPS.update().where(t.id == sa.bindparam("b_id")).values(due_at=sa.bindparam("b_due")),
            [{"b_id": r["id"], "b_due": NOW - timedelta(seconds=n - i)} for i, r in enumerate(due)],
        )
        # The steps not yet due: as many again, of the same kinds about the same reports (the
        # years a period may name hold too few reports for both).
        later = [
            {**r, "key": f"{r['key']}:later", "due_at": NOW + timedelta(seconds=i + 1)}
            for i, r in enumerate(due)
        ]
        connection.execute(
            STEPS.insert(), [{k: v for k, v in r.items() if k != "id"} for r in later]
        )
        connection.execute(sa.table("report", sa.column("due_on")).update().values(due_on=late))


def _count(db: Engine) -> int:
    with Session(db) as session:
        return session.exec(select(func.count()).select_from(Step)).one()


def scan(db: Engine, runs: int = 5) -> float:
    """The sweep finding nothing due: median seconds of `runs`."""
    clock = FixedClock(NOW)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = run_due(db, clock)
        times.append(time.perf_counter() - start)
        assert done == [], f"{len(done)} steps were due"
    return statistics.median(times)


def baseline(url: str, n: int) -> float:
    """The old path: one transaction per due step."""
    db = make_engine(url)
    clock = FixedClock(NOW)
    with Session(db) as session:
        keys = [s.key for s in overdue_steps(session, now=NOW)]
    assert len(keys) == n
    start = time.perf_counter()
    for key in keys:
        run_step(db, clock, key)
    took = time.perf_counter() - start
    db.dispose()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--database", help="a PostgreSQL URL (a fresh schema is made in it)")
    parser.add_argument("--baseline", action="store_true", help="also time the per-step path")
    args = parser.parse_args()
    n = args.steps
    with database(args.database) as url:
        db = make_engine(url)
        started = time.perf_counter()
        populate(db, n)
        print(f"set-up: {_count(db)} steps in {time.perf_counter() - started:.1f} s")
        old = None
        if args.baseline:
            with database(args.database) as other:
                copy = make_engine(other)
                populate(copy, n)
                copy.dispose()
                old = baseline(other, n)
        clock = FixedClock(NOW)
        start = time.perf_counter()
        done = run_due(db, clock, batch=args.batch)
        due = time.perf_counter() - start
        assert len(done) == n, f"{len(done)} steps acted on, not {n}"
        print("results:", dict(sorted(Counter(d.result for d in done).items())))
        took = scan(db)
        db.dispose()
    if old is not None:
        print(f"baseline due {n} in {old:.1f} s (one transaction a step); ratio {old / due:.1f}")
    print(f"sweep scan {n} in {took * 1000:.1f} ms")
    print(f"sweep due {n} in {due:.1f} s")


if __name__ == "__main__":
    main()
