"""Helpers for the cycle tests: a partnership with people in it, runs, and state snapshots."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from models.clock import LONDON, FixedClock
from models.commands import current_constitution, import_members
from models.members import parse_members
from models.tables import AuditHead, OutboxMessage, Person, Step
from models.uow import UnitOfWork

from .conftest import DATA

T = TypeVar("T")


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def populate(engine: Engine, clock: FixedClock) -> None:
    text = (DATA / "cycles-members.csv").read_text()
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        rows = parse_members(text, current_constitution(uow.session), source="cycles-members.csv")
        import_members(uow, rows=rows)
        uow.commit()


def run(engine: Engine, clock: FixedClock, command: Callable[[UnitOfWork], T]) -> T:
    """Run one command in its own unit of work and commit it."""
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        result = command(uow)
        uow.commit()
    return result


def state(engine: Engine) -> tuple[int, int, int]:
    """(audit events, outbox rows, steps): what a refused command must leave unchanged."""
    with Session(engine) as session:
        head = session.exec(select(AuditHead)).one()
        outbox = session.exec(select(func.count()).select_from(OutboxMessage)).one()
        steps = session.exec(select(func.count()).select_from(Step)).one()
    return head.seq, outbox, steps


def recipients(engine: Engine, kind: str, key_prefix: str = "") -> list[str]:
    """Sorted emails of those a message of `kind` (keys starting `key_prefix`) was queued for."""
    with Session(engine) as session:
        rows = session.exec(
            select(Person.email)
            .join(OutboxMessage, col(OutboxMessage.person_id) == col(Person.id))
            .where(OutboxMessage.kind == kind, col(OutboxMessage.key).startswith(key_prefix))
        ).all()
    return sorted(rows)


def step_status(engine: Engine, key: str) -> str:
    with Session(engine) as session:
        return session.exec(select(Step.status).where(Step.key == key)).one()
