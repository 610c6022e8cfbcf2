"""Helpers for the case tests: a partnership with people in it, and before/after snapshots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from models.clock import FixedClock
from models.commands import apply_constitution, current_constitution, import_members
from models.constitution import Constitution
from models.members import parse_members
from models.permissions import Principal
from models.service import Command, execute
from models.tables import AuditHead, OutboxMessage, Step
from models.uow import UnitOfWork

from .conftest import DATA

T = TypeVar("T")


def import_members_file(engine: Engine, clock: FixedClock, path: Path) -> None:
    import_members_text(engine, clock, path.read_text(), source=path.name)


def import_members_text(engine: Engine, clock: FixedClock, text: str, *, source: str) -> None:
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        rows = parse_members(text, current_constitution(uow.session), source=source)
        import_members(uow, rows=rows)
        uow.commit()


def install(engine: Engine, clock: FixedClock, c: Constitution, members: str) -> None:
    """Load another partnership's constitution `c` and its members (CSV text)."""
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        apply_constitution(uow, constitution=c, source=c.partnership.id)
        uow.commit()
    import_members_text(engine, clock, members, source=f"{c.partnership.id} members")


def populate(engine: Engine, clock: FixedClock) -> None:
    import_members_file(engine, clock, DATA / "cases-members.csv")


def act(engine: Engine, clock: FixedClock, who: str | Principal, command: Command[T]) -> T:
    """Give a command as `who` through the one way in (`models.service.execute`)."""
    return execute(engine, clock, who, command).result


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


def messages(engine: Engine, kind: str) -> list[tuple[str, str]]:
    """(key, person email) of each queued message of `kind`."""
    from models.tables import Person

    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage.key, Person.email)
            .join(Person, Person.id == OutboxMessage.person_id)  # type: ignore[arg-type]
            .where(OutboxMessage.kind == kind)
        ).all()
    return [(k, e) for k, e in rows]
