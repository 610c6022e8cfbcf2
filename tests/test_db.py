"""Storage: the migrations build exactly the tables the models declare, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers every table)
from models.db import migrate, schema_is_current
from models.tables import GENESIS


def test_the_migrations_match_the_models(migrated: Engine) -> None:
    with migrated.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == [], "a table changed without a migration: python .ci/new_migration.py"


def test_migrating_again_changes_nothing(migrated: Engine) -> None:
    migrate(migrated)
    assert schema_is_current(migrated)


def test_the_tests_databases_are_what_the_migrations_build(engine: Engine) -> None:
    """The `engine` fixture's shortcut (a copy, or the models' tables) is at head and migrates
    to nothing more, with the audit chain's genesis head row the migrations seed."""
    assert schema_is_current(engine)
    migrate(engine)
    with engine.connect() as connection:
        head = connection.exec_driver_sql("SELECT seq, hash FROM audit_head").all()
    assert head == [(0, GENESIS)]
