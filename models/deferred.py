"""Writes a transaction defers: rows a command adds (an audit event) or marks (a fired step) that
nothing in the transaction reads back at once, sent to the database together, one executemany a
statement, when something could read them (or the transaction, or a savepoint, commits).

    defer(session, INSERT_EVENT, row)       # kept in the session, in order
    defer(session, ADVANCE_HEAD, row, latest=True)  # kept in place of the one kept before
    written(session, tables)                # before a read of `tables`: their rows are written

They are written, before the statement runs, for every read through the session that touches
their tables (its queries: `do_orm_execute`; a Core read: `models.uow.read_rows`, or a reader that
calls `written`), before the session flushes (so a change it makes to the same row comes after),
and before a transaction or a savepoint commits (`before_commit`). A savepoint begins with none
deferred (`models.uow.UnitOfWork.savepoint` writes them first), so one rolled back drops exactly
the rows deferred in it; a transaction rolled back drops all it deferred.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import ORMExecuteState, SessionTransaction, UOWTransaction, object_mapper
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.util import find_tables

_DEFERRED = "wct.deferred"  # session.info: statement -> the rows deferred for it, in order

Deferred = dict[UpdateBase, list[Mapping[str, Any]]]


def defer(
    session: OrmSession, statement: UpdateBase, row: Mapping[str, Any], *, latest: bool = False
) -> None:
    """Run `statement` (an INSERT or UPDATE of one table, built once) with `row` when its table is
    next read in this transaction, or when the transaction or savepoint commits: with every row
    deferred for it since, in one executemany; `latest`: with this row alone, in place of any
    deferred for it before (an UPDATE of one row whose last value is the one that counts)."""
    deferred: Deferred = session.info.setdefault(_DEFERRED, {})
    rows = deferred.get(statement)
    if rows is None:
        rows = deferred[statement] = []
    if latest:
        rows.clear()
    rows.append(row)


def written(
    session: OrmSession,
    tables: Iterable[sa.FromClause] | None = None,
    *,
    unseen: Collection[UpdateBase] = (),
) -> None:
    """Write what is deferred for `tables` (None: for every table), in the order deferred, but
    for the statements in `unseen` (whose rows the caller's read is known not to depend on)."""
    deferred: Deferred | None = session.info.get(_DEFERRED)
    if not deferred:
        return
    wanted = None if tables is None else frozenset(tables)
    for statement in list(deferred):
        if (wanted is None or statement.table in wanted) and statement not in unseen:
            rows = deferred.pop(statement)  # dropped before it runs: a refused write is not retried
            session.connection().execute(statement, rows)


def pending(session: OrmSession) -> bool:
    """Has this transaction rows deferred, not yet written?"""
    return bool(session.info.get(_DEFERRED))


def discard(session: OrmSession) -> None:
    """The transaction (or the savepoint they were deferred in) rolled back: none to write."""
    session.info.pop(_DEFERRED, None)


def read_by(statement: sa.Executable) -> frozenset[sa.FromClause] | None:
    """The tables `statement` reads or writes (None: unknown, as for text)."""
    tables = find_tables(
        statement,  # type: ignore[arg-type]
        check_columns=True,
        include_aliases=True,
        include_joins=True,
        include_crud=True,
    )
    found = frozenset(t for t in tables if isinstance(t, sa.Table))
    return found or None


@sa.event.listens_for(OrmSession, "do_orm_execute")
def _before_a_query(state: ORMExecuteState) -> None:
    """A statement through the session (a query, a lazy load, a bulk change) that touches a table
    with rows deferred: they are written first."""
    if state.session.info.get(_DEFERRED):
        written(state.session, read_by(state.statement))


@sa.event.listens_for(OrmSession, "before_flush")
def _before_a_flush(session: OrmSession, _context: UOWTransaction, _instances: object) -> None:
    """The session writes its changes to a table after the rows deferred for it, as they were
    made after them (a step marked, then changed again)."""
    if session.info.get(_DEFERRED):
        written(session, flushed_tables(session))


def flushed_tables(session: OrmSession) -> frozenset[sa.FromClause]:
    """The tables the session's next flush writes to (its new, changed and deleted rows')."""
    tables: set[sa.FromClause] = set()
    for rows in (session.new, session.dirty, session.deleted):
        for row in rows:
            tables |= mapped_tables(row)
    return frozenset(tables)


def mapped_tables(row: object) -> frozenset[sa.FromClause]:
    """The tables a mapped row is written to."""
    mapped = _MAPPED.get(type(row))
    if mapped is None:
        mapped = _MAPPED[type(row)] = frozenset(object_mapper(row).tables)
    return mapped


_MAPPED: dict[type[Any], frozenset[sa.FromClause]] = {}  # a mapped class: the tables it writes


@sa.event.listens_for(OrmSession, "before_commit")
def _before_a_commit(session: OrmSession) -> None:
    """A transaction or a savepoint commits with every row deferred in it."""
    written(session)


@sa.event.listens_for(OrmSession, "after_transaction_create")
def _savepoint_begun(session: OrmSession, transaction: SessionTransaction) -> None:
    """A savepoint begins with nothing deferred (`UnitOfWork.savepoint` writes it first): were
    rows deferred before it written inside it, rolling it back would lose them."""
    if transaction.nested and session.info.get(_DEFERRED):
        raise RuntimeError("a savepoint begun with deferred writes: write them first")


@sa.event.listens_for(OrmSession, "after_transaction_end")
def _transaction_ended(session: OrmSession, transaction: SessionTransaction) -> None:
    """A transaction or a savepoint ended: committed, its rows are written; rolled back, the rows
    deferred in it vanish with it (a savepoint began with none deferred)."""
    if transaction.nested or transaction.parent is None:
        discard(session)
