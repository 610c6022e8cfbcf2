"""Storage: the migrations build exactly the tables the models declare, on every backend."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

import models.tables  # noqa: F401  (registers every table)
from models.clock import LONDON
from models.db import make_engine, migrate, schema_is_current
from models.steps.registry import kind_of
from models.tables import GENESIS, AwareDateTime, Step


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
    assert [tuple(row) for row in head] == [(0, GENESIS)]


def test_the_migration_gives_existing_steps_their_subject_and_parameters(
    database_url: str,
) -> None:
    """Steps planned before steps had typed columns: their subject and parameters are read out
    of their subject and key once, by the migration, as the handlers of the time read them."""
    engine = make_engine(database_url)
    migrate(engine, to="0001")
    legacy = sa.table(
        "step",
        sa.column("key", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("subject", sa.String()),
        sa.column("due_at", AwareDateTime()),
        sa.column("status", sa.String()),
    )
    due = datetime(2027, 1, 5, 9, tzinfo=LONDON)
    rows = {
        "meeting:board:2027-03-09:agenda": ("meeting.agenda", "meeting:4"),
        "report:wscb-quarterly:wscb:2027-Q1:reminder-10": ("report.reminder", "report:2"),
        "review:mou-review:2027:notice": ("review.notice", "review:7"),
        "dispute:3:chief_executives:deadline": ("dispute.deadline", "dispute:3"),
        "account:5:reminder:2027-01-15:1": ("account.reminder", "account:5"),
        "risk:8:review:2027-02-01": ("risk.review", "risk:8"),
    }
    with engine.begin() as connection:
        connection.execute(
            legacy.insert(),
            [
                {"key": k, "kind": kind, "subject": s, "due_at": due, "status": "pending"}
                for k, (kind, s) in rows.items()
            ],
        )
    migrate(engine)
    with Session(engine) as session:
        steps = {s.key: s for s in session.exec(select(Step)).all()}
    engine.dispose()
    found = {k: (s.subject_type, s.subject_id, s.params) for k, s in steps.items()}
    assert found == {
        "meeting:board:2027-03-09:agenda": ("meeting", 4, {}),
        "report:wscb-quarterly:wscb:2027-Q1:reminder-10": ("report", 2, {"days": 10}),
        "review:mou-review:2027:notice": ("review", 7, {}),
        "dispute:3:chief_executives:deadline": ("dispute", 3, {"stage": "chief_executives"}),
        "account:5:reminder:2027-01-15:1": ("account", 5, {"days": 1}),
        "risk:8:review:2027-02-01": ("risk", 8, {}),
    }
    for step in steps.values():  # what the step engine reads, it can read
        assert kind_of(step.kind).spec.load(step.key, step.params) is not None
