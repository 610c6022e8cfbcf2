"""The unit of work: one transaction in which a command changes state, audits it and queues mail."""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import Session, select

from models import audit, deferred
from models.clock import Clock
from models.tables import (
    ApprovalRequest,
    AuditHead,
    CallToAccount,
    Dispute,
    Meeting,
    MeetingAction,
    Person,
    PersonRole,
    Report,
    Review,
    Risk,
)

#: The key `held` and `hold` know the audit chain's head row by.
AUDIT_HEAD = ("audit_head", 1)
_LEDGER = "wct.locks"  # session.info: lock key -> the row, for the locks this transaction holds
_TAKEN = "wct.taken"  # session.info: for each open savepoint, the keys of the locks it took
_READS = "wct.reads"  # session.info: who holds which role, read once in this transaction


def held(session: Session, key: tuple[str, object]) -> object | None:
    """The row whose lock `key` (its table's name and its id) this transaction holds, as the
    session has it, or None: a lock taken outside any savepoint, or in one since released, is
    held until the transaction ends; a savepoint rolled back loses the locks taken in it."""
    ledger: dict[tuple[str, object], object] | None = session.info.get(_LEDGER)
    return None if ledger is None else ledger.get(key)


def hold(session: Session, key: tuple[str, object], row: object) -> None:
    """Note that this transaction now holds the lock `key` on `row`, just read with FOR UPDATE
    (on SQLite the transaction's BEGIN IMMEDIATE holds the database): so it is not locked and
    read again. Only this transaction can change the row meanwhile, through this session (a
    savepoint rolled back expires what it changed: it reads back as it is)."""
    ledger = session.info.setdefault(_LEDGER, {})
    taken: list[list[tuple[str, object]]] = session.info.get(_TAKEN, [])
    if key not in ledger and taken:
        taken[-1].append(key)
    ledger[key] = row


def read_rows(
    session: Session,
    statement: sa.Select[Any],
    params: Mapping[str, Any],
    *,
    unseen: Collection[UpdateBase] = (),
) -> sa.CursorResult[Any]:
    """Columns read by a Core select in the session's transaction, once what the session has
    pending for the tables it reads is written (as its own queries autoflush; what it has for
    other tables cannot change the rows read, and is written by the next flush), and the rows
    the transaction deferred for them (`models.deferred`), but for those of the statements
    `unseen` (the caller knows the read's answer is the same with or without them): for a read
    every step makes, without the ORM's cost a query."""
    tables = _tables_read(statement)
    if deferred.pending(session):
        deferred.written(session, tables, unseen=unseen)
    if session.autoflush and _pending_for(session, tables):
        session.flush()
    return session.connection().execute(statement, params)


_TABLES_READ: dict[int, tuple[sa.Select[Any], frozenset[sa.FromClause] | None]] = {}


def _tables_read(statement: sa.Select[Any]) -> frozenset[sa.FromClause] | None:
    """The tables `statement` reads (`deferred.read_by`), found once for a statement built once
    (every `read_rows` caller's is)."""
    known = _TABLES_READ.get(id(statement))
    if known is None or known[0] is not statement:
        known = _TABLES_READ[id(statement)] = (statement, deferred.read_by(statement))
    return known[1]


def _pending_for(session: Session, tables: frozenset[sa.FromClause] | None) -> bool:
    """Has the session rows to write (new, changed or deleted) in any of `tables` (None: any)?"""
    if tables is None:
        return bool(session.new or session.dirty or session.deleted)
    return not tables.isdisjoint(deferred.flushed_tables(session))


V = TypeVar("V")


def remember_roles(session: Session) -> None:
    """From now until this transaction ends, who holds which role is read once (`remembered`):
    for a batch of commands that change no member and no role (the sweep's steps), each asking
    for the same few holders. Forgotten if the transaction changes a member or a role after all
    (through the session), and when a savepoint rolls back."""
    session.info.setdefault(_READS, {})


def remembered(session: Session, key: Hashable, read: Callable[[], V]) -> V:
    """What `read` (a read of members and their roles, named by `key`) returned when this
    transaction first asked, if it remembers roles (`remember_roles`); else read now."""
    reads: dict[Hashable, Any] | None = session.info.get(_READS)
    if reads is None:
        return read()
    if key not in reads:
        reads[key] = read()
    found: V = reads[key]
    return found


def _forget_roles(session: OrmSession) -> None:
    reads: dict[Hashable, Any] | None = session.info.get(_READS)
    if reads:
        reads.clear()


_PEOPLE = (Person, PersonRole)
_PEOPLE_TABLES = frozenset({Person.__tablename__, PersonRole.__tablename__})


@sa.event.listens_for(Session, "after_flush")
def _people_flushed(session: OrmSession, _context: object) -> None:
    """A member or a role written through the session: what was remembered may be stale."""
    if session.info.get(_READS) and any(
        isinstance(row, _PEOPLE)
        for rows in (session.new, session.dirty, session.deleted)
        for row in rows
    ):
        _forget_roles(session)


@sa.event.listens_for(Session, "do_orm_execute")
def _people_changed(state: ORMExecuteState) -> None:
    """Members or roles inserted, updated or deleted by a statement through the session."""
    if (
        state.session.info.get(_READS)
        and (state.is_insert or state.is_update or state.is_delete)
        and getattr(getattr(state.statement, "table", None), "name", None) in _PEOPLE_TABLES
    ):
        _forget_roles(state.session)


Row = TypeVar(
    "Row", Meeting, MeetingAction, Report, Review, Risk, Dispute, CallToAccount, ApprovalRequest
)


_LOCKING: dict[type[Any], Any] = {}


def locked(session: Session, table: type[Row], row_id: int) -> Row | None:
    """A step's subject (a meeting, an action, a report, a review, a case) read for update: a
    deadline timer and a member's answer on the same row are applied one after the other, each on
    the state the other left (PostgreSQL row lock; SQLite transactions already begin with the
    write lock). Read afresh when locked; not locked and read again while this transaction holds
    it (`held`)."""
    key = (str(table.__tablename__), row_id)
    row = held(session, key)
    if isinstance(row, table):
        return row
    query = _LOCKING.get(table)
    if query is None:  # built once a table (its cache key too)
        query = _LOCKING[table] = (
            select(table)
            .where(table.id == sa.bindparam("row_id"))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    found: Row | None = session.exec(query, params={"row_id": row_id}).first()
    if found is not None:
        hold(session, key, found)
    return found


class UnitOfWork:
    """`with UnitOfWork(engine, clock=..., actor=...) as uow: ...; uow.commit()`; else rollback."""

    def __init__(self, engine: Engine, *, clock: Clock, actor: str) -> None:
        self.engine = engine
        self.clock = clock
        self.actor = actor
        self._session: Session | None = None
        self.recorded: list[audit.Recorded] = []  # this transaction's audit events, for signals

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

    def flush(self) -> None:
        """Write all this transaction has pending: the rows it deferred, then the session's."""
        deferred.written(self.session)
        self.session.flush()

    def commit(self) -> None:
        session = self.session
        session.info.pop(_LEDGER, None)  # the transaction's locks end with it
        session.info.pop(_TAKEN, None)
        session.info.pop(_READS, None)
        session.commit()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of this transaction that rolls back alone (a SAVEPOINT) if its block raises:
        its changes, its audit events (the chain's head reads back as it was) and its outbox rows
        vanish, and the exception propagates; otherwise it stays, to commit with the rest."""
        session, recorded = self.session, len(self.recorded)
        # Written before it begins, so that rolled back, it drops only the rows deferred in it
        # (the chain's head among them), and the head reads back as it is now.
        deferred.written(session)
        nested = session.begin_nested()
        taken: list[list[tuple[str, object]]] = session.info.setdefault(_TAKEN, [])
        taken.append([])
        try:
            yield
            nested.commit()  # flushes: a row refused by the database rolls back here too
        except BaseException:
            # SQLAlchemy expires what the savepoint changed through the session and drops what
            # it added; rows written by Core statements (a fired step's status) or deferred (its
            # audit events, steps marked and the chain's head: dropped with it,
            # `models.deferred`) it cannot know of: every row is read back as it now is (nothing
            # else is pending: the savepoint began with a flush), so the next event is chained
            # after the last one that stays. A flush the database refused inside it leaves it
            # inactive but open: it is rolled back all the same, or the whole transaction would
            # be refused from then on.
            if session.get_nested_transaction() is nested:
                nested.rollback()
            session.expire_all()
            _forget_roles(session)
            del self.recorded[recorded:]
            # The locks it took are released with it (PostgreSQL): taken again when needed.
            ledger = session.info.get(_LEDGER, {})
            for key in taken.pop():
                ledger.pop(key, None)
            raise
        else:
            # Released into the enclosing transaction, which now holds its locks.
            mine = taken.pop()
            if taken:
                taken[-1].extend(mine)

    def record(
        self,
        action: str,
        subject: str,
        *,
        before: Any,
        after: Any,
        organisations: Iterable[str] = (),
    ) -> audit.Recorded:
        """Append an audit event to this transaction (it commits or vanishes with the change)."""
        session = self.session
        head = held(session, AUDIT_HEAD)
        event, head = audit.append(
            session,
            head=head if isinstance(head, AuditHead) else None,
            at=self.clock.now(),
            actor=self.actor,
            action=action,
            subject=subject,
            before=before,
            after=after,
            organisations=organisations,
        )
        hold(session, AUDIT_HEAD, head)
        self.recorded.append(event)
        return event
