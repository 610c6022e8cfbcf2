"""Shared fixtures: a real database (SQLite; PostgreSQL where reachable), a fixed clock, the CLI."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

from deployments.cli import Runtime, app
from models.clock import LONDON, FixedClock
from models.commands import apply_constitution
from models.config import Settings
from models.constitution import Constitution, load_constitution
from models.db import make_engine, migrate
from models.uow import UnitOfWork

# Shared fixtures that live in their own modules: one Prefect harness per session, the SMTP
# server and the HTTPS webhook.
pytest_plugins = ["tests.flows_harness", "tests.notifications_fixtures"]

DATA = Path(__file__).with_name("data")
POSTGRES_URL = os.environ.get(
    "WCT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


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
    schema = f"wct_test_{secrets.token_hex(4)}"
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


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated, empty database."""
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
