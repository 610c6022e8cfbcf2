"""`wct actions|decisions|action`: the action tracker and the decision log (12.1, 21.2.1; 6.2).

Actions are agreed with a meeting's record (`wct meeting record --file F`, its `actions`); here
the coordinator lists them and the decisions, as JSON or a CSV with names (the coordinator's
export, never pseudonyms), and a member marks one done, drops it, or moves its due date.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from dataclasses import fields
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from sqlmodel import Session

from deployments.cli_base import JsonFlag, app, errors, print_json, runtime
from models import meetings
from models.errors import InvalidInput
from models.instructions import UpdateAction

action_app = typer.Typer(
    help="An action agreed at a meeting (12.1, 21.2.1): done, dropped or moved.",
    no_args_is_help=True,
)
app.add_typer(action_app, name="action")

BodyOption = Annotated[str | None, typer.Option("--body", help="Only this body's, e.g. board.")]
CsvOption = Annotated[
    Path | None,
    typer.Option("--csv", help="Write a CSV (with a header row) to FILE; - for stdout."),
]
ActionId = Annotated[int, typer.Argument(help="The action's number (see `wct actions`).")]
As = Annotated[str, typer.Option("--as", help="Your email (or pseudonym): who is acting.")]
Note = Annotated[str | None, typer.Option("--note", help="A note kept with the action.")]


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{option} '{text}': not a date (use YYYY-MM-DD)") from None


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    def write(out: TextIO) -> None:
        writer = csv.DictWriter(out, fieldnames=list(header), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    if str(path) == "-":
        write(sys.stdout)
        return
    try:
        with path.open("w", encoding="utf-8", newline="") as out:
            write(out)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write the CSV: {exc.strerror or exc}") from None
    typer.echo(f"wrote {len(rows)} row(s) to {path}")


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


@app.command("actions")
@errors
def actions(
    ctx: typer.Context,
    body: BodyOption = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only actions still open.")] = False,
    as_json: JsonFlag = False,
    csv_file: CsvOption = None,
) -> None:
    """The action tracker: every action agreed at a meeting, its owner, due date and status."""
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        rows = meetings.action_rows(session, now=rt.clock.now(), body=body, open_only=open_only)
    data = [r.as_dict() for r in rows]
    if csv_file is not None:
        _write_csv(csv_file, [f.name for f in fields(meetings.ActionRow)], data)
    elif as_json:
        print_json(data)
    elif not rows:
        typer.echo("no actions")
    else:
        for r in rows:
            late = ", OVERDUE" if r.overdue else ""
            typer.echo(
                f"#{r.id}  {r.body} {r.meeting} item {_cell(r.item)}  due {r.due_on} "
                f"({r.status}{late})  {r.owner}: {r.text}"
            )


@app.command("decisions")
@errors
def decisions(
    ctx: typer.Context,
    body: BodyOption = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Meetings on or after DATE (YYYY-MM-DD).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Meetings on or before DATE (YYYY-MM-DD).")
    ] = None,
    as_json: JsonFlag = False,
    csv_file: CsvOption = None,
) -> None:
    """The decision log (6.2): every motion recorded, its outcome, how it was decided and why."""
    rt = runtime(ctx)
    first, last = _date(start, "--from"), _date(end, "--to")
    with Session(rt.ready_engine()) as session:
        rows = meetings.decision_log(session, body=body, start=first, end=last)
    data = [r.as_dict() for r in rows]
    if csv_file is not None:
        _write_csv(csv_file, [f.name for f in fields(meetings.DecisionRow)], data)
    elif as_json:
        print_json(data)
    elif not rows:
        typer.echo("no decisions")
    else:
        for r in rows:
            typer.echo(
                f"{r.body} {r.meeting} item {_cell(r.item)}: {r.motion} -> {_cell(r.outcome)} "
                f"({_cell(r.explanation)})"
            )


def _update(ctx: typer.Context, who: str, command: UpdateAction, as_json: bool) -> None:
    rt = runtime(ctx)
    action = rt.act(who, command)
    result = {
        "id": action.id,
        "status": action.status,
        "due_on": action.due_on.isoformat(),
        "note": action.note,
    }
    if as_json:
        print_json(result)
    else:
        typer.echo(f"action #{action.id}: {action.status}, due {action.due_on.isoformat()}")


@action_app.command("done")
@errors
def action_done(
    ctx: typer.Context, action_id: ActionId, who: As, note: Note = None, as_json: JsonFlag = False
) -> None:
    """Mark an action done: its reminders stop and it leaves the matters arising."""
    command = UpdateAction(action_id=action_id, status=meetings.ActionStatus.DONE, note=note)
    _update(ctx, who, command, as_json)


@action_app.command("drop")
@errors
def action_drop(
    ctx: typer.Context,
    action_id: ActionId,
    who: As,
    note: Annotated[str, typer.Option("--note", help="Why it is dropped (required).")],
    as_json: JsonFlag = False,
) -> None:
    """Drop an action, saying why: its reminders stop and it leaves the matters arising."""
    command = UpdateAction(action_id=action_id, status=meetings.ActionStatus.DROPPED, note=note)
    _update(ctx, who, command, as_json)


@action_app.command("move")
@errors
def action_move(
    ctx: typer.Context,
    action_id: ActionId,
    due: Annotated[str, typer.Option("--due", help="The new due date, YYYY-MM-DD.")],
    who: As,
    note: Note = None,
    as_json: JsonFlag = False,
) -> None:
    """Give an action a new due date: its reminders and escalation are planned again."""
    new_due = _date(due, "--due")
    command = UpdateAction(action_id=action_id, due=new_due, note=note)
    _update(ctx, who, command, as_json)
