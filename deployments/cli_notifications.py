"""`wct preview`, `wct outbox`, `wct outbox retry`, `wct calendar`, `wct dispatch`."""

from __future__ import annotations

import json
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from deployments.cli_base import JsonFlag, Runtime, app, errors, print_json, runtime
from models import outbox
from models.calendar_invite import Event, feed
from models.commands import current_constitution
from models.constitution import Constitution
from models.errors import InvalidInput, NotFound, NotInitialised
from models.instructions import RetryMessages
from models.meetings import MeetingStatus
from models.tables import Meeting, OutboxMessage
from notifications.config import NotificationSettings, get_notification_settings
from notifications.contexts import CONTEXTS, ContextInvalid, validate_context
from notifications.dispatch import drain
from notifications.render import render
from notifications.samples import sample, sample_for

outbox_app = typer.Typer(
    help="Messages waiting, in flight, failed or dead; retry them.",
    invoke_without_command=True,
)
app.add_typer(outbox_app, name="outbox")


def notification_settings(rt: Runtime) -> NotificationSettings:
    """Delivery settings from the environment, with the runtime's WCT_HOME."""
    return get_notification_settings().model_copy(update={"home": rt.settings.home})


class Part(StrEnum):
    ALL = "all"
    SUBJECT = "subject"
    TEXT = "text"
    HTML = "html"
    TEAMS = "teams"


@app.command()
@errors
def preview(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Message kind, e.g. meeting_notice.")],
    part: Annotated[Part, typer.Option(help="Which part to print.")] = Part.ALL,
    context: Annotated[
        Path | None, typer.Option(help="JSON file with the context; default: a sample.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Render a message of KIND from sample data (or --context) so it can be proofread: the
    sample as the loaded constitution's partnership sends it (the built-in one before `wct
    init`)."""
    if kind not in CONTEXTS:
        raise NotFound(f"unknown message kind '{kind}' (known: {', '.join(sorted(CONTEXTS))})")
    if context is not None:
        try:
            data = json.loads(context.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{context}: {exc}") from None
    else:
        c = _loaded_constitution(runtime(ctx))
        data = sample(kind) if c is None else sample_for(c, kind)
    try:
        checked = validate_context(kind, data)
    except ContextInvalid as exc:
        if context is None:
            raise  # a sample that does not fit its kind: our fault, not the caller's
        raise InvalidInput(str(exc)) from None
    rendered = render(kind, checked)
    parts = {
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "teams": rendered.teams,
    }
    if as_json:
        print_json({"kind": kind, **parts})
    elif part is Part.ALL:
        for name, value in parts.items():
            typer.echo(f"===== {name} =====")
            typer.echo(value.rstrip("\n"))
    else:
        typer.echo(parts[part.value].rstrip("\n"))


def _loaded_constitution(rt: Runtime) -> Constitution | None:
    """The constitution in force, or None when no database is initialised."""
    try:
        with Session(rt.ready_engine()) as session:
            return current_constitution(session)
    except (NotInitialised, SQLAlchemyError):
        return None


def _row(m: OutboxMessage) -> dict[str, object]:
    return {
        "id": m.id,
        "key": m.key,
        "kind": m.kind,
        "channel": m.channel,
        "status": m.status,
        "attempts": m.attempts,
        "next_attempt_at": m.next_attempt_at.isoformat() if m.next_attempt_at else None,
        "last_error": m.last_error,
        "created_at": m.created_at.isoformat() if m.created_at else None,
    }


@outbox_app.callback()
@errors
def outbox_list(
    ctx: typer.Context,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only failed, dead and unknown messages.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List messages not yet sent (or only those in trouble, with why)."""
    if ctx.invoked_subcommand is not None:
        return
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        rows = [_row(m) for m in outbox.listing(session, trouble_only=failed)]
        totals = outbox.counts(session)
    if as_json:
        print_json({"counts": totals, "messages": rows})
        return
    summary = ", ".join(f"{n} {s}" for s, n in sorted(totals.items())) or "empty"
    typer.echo(f"outbox: {summary}")
    for r in rows:
        line = f"#{r['id']}  {r['status']:<8} {r['kind']:<18} {r['channel']:<6} {r['key']}"
        line += f"  (attempts {r['attempts']}, next {r['next_attempt_at']})"
        typer.echo(line)
        if r["last_error"]:
            typer.echo(f"    {r['last_error']}")


@outbox_app.command("retry")
@errors
def outbox_retry(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Message ids to retry.")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Every failed and dead message (not unknown).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Queue failed, dead or unknown messages again, now. An `unknown` one may then arrive twice."""
    if not ids and not all_failed:
        raise InvalidInput("give message ids or --all-failed")
    rt = runtime(ctx)
    retried = rt.act(rt.operator, RetryMessages(ids=tuple(ids or ()), all_failed=all_failed))
    missing = sorted(set(ids or ()) - set(retried))
    if as_json:
        print_json({"retried": retried, "not_retryable": missing})
    else:
        typer.echo(f"{len(retried)} message(s) queued again" + (f": {retried}" if retried else ""))
    if missing:
        typer.echo(
            f"not retried (no such message, or not failed/dead/unknown): {missing}", err=True
        )
        raise typer.Exit(1)


@app.command()
@errors
def dispatch(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Deliver every due message once, without Prefect (for operators and cron)."""
    rt = runtime(ctx)
    result = drain(rt.ready_engine(), clock=rt.clock, settings=notification_settings(rt))
    if as_json:
        print_json(result.as_dict())
        return
    typer.echo(
        f"{result.sent} sent, {result.failed} failed (will retry), {result.dead} dead, "
        f"{result.unknown} unknown"
    )
    for error in result.errors:
        typer.echo(f"  {error}")


@app.command()
@errors
def calendar(
    ctx: typer.Context,
    body: Annotated[str, typer.Option("--body", help="Body id, e.g. board.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the .ics here, not to stdout.")
    ] = None,
) -> None:
    """Write an iCalendar feed (RFC 5545) of BODY's meetings, cancelled ones marked so."""
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        c = current_constitution(session)
        known = {b.id: b for b in c.bodies}
        if body not in known:
            raise NotFound(f"unknown body '{body}' (known: {', '.join(sorted(known))})")
        meetings = session.exec(
            select(Meeting).where(Meeting.body_id == body).order_by(col(Meeting.starts_at))
        ).all()
        settings = notification_settings(rt)
        events = [
            Event(
                uid=m.ical_uid,
                sequence=m.ical_sequence,
                starts_at=m.starts_at,
                ends_at=m.ends_at if m.ends_at > m.starts_at else m.starts_at + timedelta(hours=1),
                summary=f"{known[body].name} meeting",
                location=m.location,
                organizer_email=settings.mail_from,
                organizer_name=settings.mail_from_name,
                cancelled=m.status == MeetingStatus.CANCELLED,
            )
            for m in meetings
        ]
    text = feed(events, stamp=rt.clock.now(), name=known[body].name)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8", newline="")
        typer.echo(f"{len(events)} meetings written to {output}", err=True)
