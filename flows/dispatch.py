"""The dispatcher as a Prefect flow: drain the outbox, one task per batch.

Orchestration only: what to send, how, and when to give up are decided in notifications/ and
models/outbox.py. A task is safe to retry: a batch that died after its claim leaves leased rows
that the next batch recovers (never resent once `sending`), so a retry cannot deliver twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import cast

from prefect import get_run_logger, task
from prefect.blocks.system import Secret
from pydantic import BaseModel, Field, SecretStr

from flows.runtime import RETRIES, RETRY_DELAY, clock_at, engine, partnership_time, wct_flow
from notifications.config import NotificationSettings, get_notification_settings
from notifications.dispatch import drain_once


async def delivery_settings() -> NotificationSettings:
    """Settings from the environment; the SMTP password from the Prefect Secret block named by
    WCT_SMTP_PASSWORD_BLOCK when WCT_SMTP_PASSWORD is not set (never from the repo)."""
    settings = get_notification_settings()
    if settings.smtp_password is None and settings.smtp_password_block:
        secret = cast(Secret[str], await Secret.aload(settings.smtp_password_block))
        value = secret.get()
        settings = settings.model_copy(update={"smtp_password": SecretStr(str(value))})
    return settings


class BatchReport(BaseModel):
    """What one batch did (ids and counts only: no ORM objects leave a task)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    unknown: int = 0
    errors: list[str] = Field(default_factory=list)


class DispatchReport(BaseModel):
    batches: int = 0
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    unknown: int = 0
    errors: list[str] = Field(default_factory=list)


@task(name="deliver-batch", retries=2, retry_delay_seconds=10)
async def deliver_batch(as_of: datetime | None, limit: int | None) -> BatchReport:
    """Claim one batch of due messages and deliver it (the blocking work runs in a thread)."""
    result = await asyncio.to_thread(
        drain_once,
        engine(),
        clock=clock_at(as_of),
        settings=await delivery_settings(),
        limit=limit,
    )
    return BatchReport(
        claimed=result.claimed,
        sent=result.sent,
        failed=result.failed,
        dead=result.dead,
        unknown=result.unknown,
        errors=result.errors,
    )


@wct_flow("dispatch", log_prints=False, retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
async def dispatch(
    max_batches: int = 20, batch_size: int | None = None, as_of: datetime | None = None
) -> DispatchReport:
    """Deliver due outbox messages, batch after batch, until none is due or `max_batches`."""
    with partnership_time():
        logger = get_run_logger()
        report = DispatchReport()
        for _ in range(max_batches):
            batch = await deliver_batch(as_of, batch_size)
            report.batches += 1
            report.unknown += batch.unknown
            report.claimed += batch.claimed
            report.sent += batch.sent
            report.failed += batch.failed
            report.dead += batch.dead
            report.errors += batch.errors
            if batch.claimed == 0:
                break
        logger.info(
            "outbox: %d sent, %d failed (will retry), %d dead, %d unknown",
            report.sent,
            report.failed,
            report.dead,
            report.unknown,
        )
        for error in report.errors:
            logger.warning("%s", error)
        return report
