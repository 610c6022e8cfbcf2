"""Storage: the migrations build exactly the tables the models declare, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers every table)
from models.db import migrate, schema_is_current


def test_the_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == [], "a table changed without a migration: python .ci/new_migration.py"


def test_migrating_again_changes_nothing(engine: Engine) -> None:
    migrate(engine)
    assert schema_is_current(engine)
