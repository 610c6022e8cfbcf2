"""The dispatcher flow on the session's one Prefect harness (tests/flows_harness.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from sqlmodel import Session, select

from flows.dispatch import DispatchReport, delivery_settings, dispatch
from models.clock import FixedClock
from models.outbox import Status
from models.tables import OutboxMessage, Person
from notifications.config import get_notification_settings
from notifications.samples import sample
from tests.notifications_fixtures import queue

from .flows_harness import CycleDb


@pytest.fixture
def mail_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("WCT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WCT_SMTP_HOST", raising=False)
    get_notification_settings.cache_clear()
    yield tmp_path / "home"
    get_notification_settings.cache_clear()


def test_dispatch_flow_delivers_each_due_message_once(
    cycle_db: CycleDb, mail_home: Path, clock: FixedClock
) -> None:
    with Session(cycle_db.engine) as session:
        people = session.exec(select(Person).limit(3)).all()
        ids = [p.id for p in people if p.id is not None]
    queued = [
        queue(
            cycle_db.engine,
            person_id=person_id,
            kind="reminder",
            context=sample("reminder"),
            key=f"flow:reminder:{person_id}:email",
            clock=clock,
        )
        for person_id in ids
    ]

    report = asyncio.run(dispatch(batch_size=2, as_of=clock.now()))
    again = asyncio.run(dispatch(as_of=clock.now()))

    assert isinstance(report, DispatchReport)
    assert (report.sent, report.failed, report.batches) == (3, 0, 3)  # 2 + 1 + an empty one
    assert (again.claimed, again.batches) == (0, 1)
    assert len(list((mail_home / "mail").glob("*.eml"))) == 3
    with Session(cycle_db.engine) as session:
        statuses = [session.get(OutboxMessage, i).status for i in queued]  # type: ignore[union-attr]
    assert statuses == [Status.SENT] * 3


def test_the_smtp_password_can_come_from_a_prefect_secret_block(
    prefect_harness: str,  # noqa: ARG001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asyncio.run(Secret(value="from-the-block").asave("wct-smtp-test", overwrite=True))
    monkeypatch.delenv("WCT_SMTP_PASSWORD", raising=False)
    monkeypatch.setenv("WCT_SMTP_PASSWORD_BLOCK", "wct-smtp-test")
    get_notification_settings.cache_clear()
    try:
        settings = asyncio.run(delivery_settings())
    finally:
        get_notification_settings.cache_clear()
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "from-the-block"
    assert "from-the-block" not in repr(settings)
