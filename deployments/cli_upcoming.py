"""`wct upcoming`: a forward look, per body, at everything due in the next weeks."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session

from deployments.cli_base import JsonFlag, app, errors, print_json, runtime
from models.upcoming import DEFAULT_DAYS, by_body, upcoming


@app.command("upcoming")
@errors
def upcoming_list(
    ctx: typer.Context,
    body: Annotated[str | None, typer.Option(help="Only this body (its id, e.g. board).")] = None,
    days: Annotated[int, typer.Option(help="How many days ahead to look.")] = DEFAULT_DAYS,
    as_json: JsonFlag = False,
) -> None:
    """Everything due next, per body, in date order: meetings and their items deadlines,
    quarterly reports, annual reviews, open actions and case deadlines, with whom each waits on."""
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        rows = upcoming(session, now=rt.clock.now(), days=days, body=body)
    if as_json:
        print_json([r.as_dict() for r in rows])
        return
    if not rows:
        typer.echo(f"nothing due in the next {days} days")
        return
    for n, group in enumerate(by_body(rows).values()):
        typer.echo(("\n" if n else "") + f"{group[0].body_name} ({group[0].body})")
        width = max(len(r.day) for r in group)
        for r in group:
            typer.echo(f"  {r.day.ljust(width)}  {r.due.value}: {r.what} -- waits on {r.waits_on}")
