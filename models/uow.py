"""The unit of work: one transaction in which a command changes state, audits it and queues mail."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import audit
from models.clock import Clock
from models.tables import AuditEvent


class UnitOfWork:
    """`with UnitOfWork(engine, clock=..., actor=...) as uow: ...; uow.commit()`; else rollback."""

    def __init__(self, engine: Engine, *, clock: Clock, actor: str) -> None:
        self.engine = engine
        self.clock = clock
        self.actor = actor
        self._session: Session | None = None
        self.recorded: list[AuditEvent] = []  # this transaction's audit events, for signals

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("UnitOfWork used outside its `with` block")
        return self._session

    def __enter__(self) -> Self:
        self._session = Session(self.engine, expire_on_commit=False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self.session, None
        try:
            session.rollback()  # no-op after commit; undoes everything otherwise
        finally:
            session.close()

    def commit(self) -> None:
        self.session.commit()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of this transaction that rolls back alone (a SAVEPOINT) if its block raises:
        its changes, its audit events (the chain's head reads back as it was) and its outbox rows
        vanish, and the exception propagates; otherwise it stays, to commit with the rest."""
        recorded = len(self.recorded)
        nested = self.session.begin_nested()
        try:
            yield
            nested.commit()  # flushes: a row refused by the database rolls back here too
        except BaseException:
            # SQLAlchemy expires what the savepoint changed (the audit head) and drops what it
            # added, so the next event is chained after the last one that stays.
            if nested.is_active:
                nested.rollback()
            del self.recorded[recorded:]
            raise

    def record(
        self,
        action: str,
        subject: str,
        *,
        before: Any,
        after: Any,
        organisations: Iterable[str] = (),
    ) -> AuditEvent:
        """Append an audit event to this transaction (it commits or vanishes with the change)."""
        event = audit.append(
            self.session,
            at=self.clock.now(),
            actor=self.actor,
            action=action,
            subject=subject,
            before=before,
            after=after,
            organisations=organisations,
        )
        self.recorded.append(event)
        return event
