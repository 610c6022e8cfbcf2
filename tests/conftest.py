"""Shared fixtures: a real database (SQLite; PostgreSQL where reachable), a fixed clock, the CLI."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel
from typer.testing import CliRunner, Result

from deployments.cli import Runtime, app
from models.clock import LONDON, FixedClock
from models.commands import apply_constitution
from models.config import Settings
from models.constitution import Constitution, load_constitution
from models.db import MIGRATIONS, make_engine, migrate
from models.tables import GENESIS
from models.uow import UnitOfWork

# Shared fixtures that live in their own modules: one Prefect harness per session, the SMTP
# server and the HTTPS webhook, and one real Chromium for the browser tests.
pytest_plugins = [
    "tests.flows_harness",
    "tests.notifications_fixtures",
    "tests.browser_support",
]

DATA = Path(__file__).with_name("data")
POSTGRES_URL = os.environ.get(
    "WCT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


#: Fixtures that mean a test needs a Prefect server (the session's harness) or a real database.
PREFECT_FIXTURES = frozenset({"prefect_harness", "cycle_db"})
BROWSER_FIXTURES = frozenset({"browser", "page_context"})
DB_FIXTURES = frozenset(
    {"engine", "database_url", "loaded", "cli", "cycle_db", "postgres_available"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets its tier from what it uses, so `-m` can pick the fast ones:
    `unit` (pure rules), `db` (a real SQLite or PostgreSQL database), `prefect` (a Prefect server:
    the harness, or a real `prefect server start`, which is also `server`), `browser`."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("server") is not None or names & PREFECT_FIXTURES:
            item.add_marker(pytest.mark.prefect)
        if names & DB_FIXTURES:
            item.add_marker(pytest.mark.db)
        if names & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        tiers = ("db", "prefect", "server", "browser")
        if not any(item.get_closest_marker(t) for t in tiers):
            item.add_marker(pytest.mark.unit)


def _postgres_problem() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to reach the server means: skip here, fail in CI
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_available() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem} (CI=true: the PostgreSQL tests must run)")
    pytest.skip(f"{problem}; set WCT_TEST_POSTGRES_URL to run these (CI runs them)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'wct.db'}"
        return
    request.getfixturevalue("postgres_available")
    with postgres_schema("wct_test") as url:
        yield url


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL schema (dropped afterwards), as a URL whose search path is it."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 23, 9, 0, tzinfo=LONDON))


@pytest.fixture(scope="session")
def wirral() -> Constitution:
    return load_constitution()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database migrated to head, copied for each test (migrating costs ~0.5 s)."""
    path = tmp_path_factory.mktemp("template") / "wct.db"
    template = make_engine(f"sqlite:///{path}")
    migrate(template)
    template.dispose()
    folded = sqlite3.connect(path, isolation_level=None)  # fold the WAL into the file we copy
    folded.execute("PRAGMA journal_mode=DELETE")
    folded.close()
    return path


@pytest.fixture(scope="session")
def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


@pytest.fixture
def engine(database_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated, empty database. SQLite: a copy of a database migrated once per session.
    PostgreSQL: the models' tables at the migrations' head revision (tests/test_db.py proves
    the migrations and the models agree, and runs the migrations themselves)."""
    if database_url.startswith("sqlite"):
        target = sa.engine.make_url(database_url).database
        assert target is not None
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), target)
        engine = make_engine(database_url)
    else:
        engine = make_engine(database_url)
        with engine.begin() as connection:
            SQLModel.metadata.create_all(connection)
            connection.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
            )
            connection.execute(
                sa.text("INSERT INTO alembic_version VALUES (:v)"),
                {"v": request.getfixturevalue("head_revision")},
            )
            # The rows the migrations seed: the audit chain's head.
            connection.execute(
                sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :genesis)"),
                {"genesis": GENESIS},
            )
    yield engine
    engine.dispose()


@pytest.fixture
def migrated(database_url: str) -> Iterator[Engine]:
    """A database built by running the migrations themselves (for the tests of migrations)."""
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def loaded(engine: Engine, wirral: Constitution, clock: FixedClock) -> Engine:
    """A database holding the Wirral constitution."""
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        apply_constitution(uow, constitution=wirral, source="wirral.yaml")
        uow.commit()
    return engine


@dataclass
class Cli:
    """Runs `wct` in-process against the test database and clock."""

    runtime: Runtime
    runner: CliRunner

    def __call__(self, *args: str | Path) -> Result:
        return self.runner.invoke(app, [str(a) for a in args], obj=self.runtime)


@pytest.fixture
def cli(database_url: str, tmp_path: Path, clock: FixedClock) -> Iterator[Cli]:
    runtime = Runtime(
        settings=Settings(home=tmp_path / "home", database_url=database_url), clock=clock
    )
    yield Cli(runtime, CliRunner())
    runtime.engine().dispose()
