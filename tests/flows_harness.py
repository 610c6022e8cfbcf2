"""One Prefect test harness for the whole session (it takes seconds to start), the
deployments registered on it, and a fresh wct database per test that the flows read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy.engine import Engine

from models.clock import SystemClock
from models.commands import apply_constitution, current_constitution, import_members
from models.config import get_settings
from models.constitution import load_constitution
from models.db import make_engine, migrate
from models.members import parse_members
from models.uow import UnitOfWork

from .conftest import DATA


def register_deployments() -> None:
    """Register the cycle deployments, the step timer and the sweep (without its schedule),
    without serving them: timers are runs of `step`."""
    from deployments.serve import cycle_deployments
    from deployments.steps import step_deployments

    for deployment in cycle_deployments() + step_deployments(sweep_every=None):
        deployment.apply()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=120):
        register_deployments()
        yield str(PREFECT_API_URL.value())


@dataclass
class CycleDb:
    url: str
    engine: Engine


@pytest.fixture
def cycle_db(
    prefect_harness: str,  # noqa: ARG001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[CycleDb]:
    """A fresh wct database with the Wirral constitution and members, the one flows use."""
    url = f"sqlite:///{tmp_path / 'wct.db'}"
    engine = make_engine(url)
    migrate(engine)
    with UnitOfWork(engine, clock=SystemClock(), actor="test") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        text = (DATA / "cycles-members.csv").read_text()
        rows = parse_members(text, current_constitution(uow.session), source="members")
        import_members(uow, rows=rows)
        uow.commit()
    monkeypatch.setenv("WCT_DATABASE_URL", url)
    get_settings.cache_clear()
    yield CycleDb(url, engine)
    get_settings.cache_clear()
    engine.dispose()
