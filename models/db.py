"""Engines and schema migrations. Nothing here runs at import: callers ask when they need it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")

#: Execution options for a connection that only reads: on SQLite its transaction begins DEFERRED,
#: a snapshot of the last commit (WAL), instead of IMMEDIATE, which takes the database's write
#: lock. So a read made by every flow run and page (`models.commands.partnership_of`) neither
#: waits for a write in progress (a sweep's batch, a member's command) nor holds one up. A
#: connection with these options must not write: a deferred transaction that writes can fail to
#: take the lock another writer took after its snapshot. PostgreSQL ignores them.
_READS_ONLY = "wct_reads_only"
READS_ONLY: Mapping[str, bool] = MappingProxyType({_READS_ONLY: True})


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL and write transactions that lock early."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        _sqlite_transactions(engine)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling starts writes lazily, so two writers can both read the
    # audit head and then fail to upgrade their locks; BEGIN IMMEDIATE takes the write lock first
    # (but for a connection that only reads: READS_ONLY).
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        reads_only = connection.get_execution_options().get(_READS_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reads_only else "BEGIN IMMEDIATE")


# Alembic (~190 ms of imports, Mako's and Pygments' among them) loads in the functions that
# migrate or check the schema: `wct` commands, not the process of every served flow run.


def _alembic_config(connection: sa.Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, *, to: str = "head") -> None:
    """Bring the schema to the newest migration, or to revision `to` (idempotent)."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), to)


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        head = ScriptDirectory.from_config(_alembic_config(connection)).get_current_head()
    return current is not None and current == head
