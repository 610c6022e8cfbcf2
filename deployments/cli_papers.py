"""`wct meeting papers`: a meeting's papers as a Word document or a printable HTML page."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from deployments.cli_base import JsonFlag, errors, print_json, runtime
from deployments.cli_cycles import Body, Day, _day, meeting_app
from models import meetings
from models.errors import InvalidInput
from models.meetings.papers import meeting_papers
from notifications.papers import PapersFormat, papers_filename, render_papers, withheld_note

SUFFIXES = {".docx": PapersFormat.DOCX, ".html": PapersFormat.HTML, ".htm": PapersFormat.HTML}


def papers_format(given: str | None, output: Path) -> PapersFormat:
    """`--format` as given, else as the output file's suffix says; InvalidInput otherwise."""
    if given is not None:
        try:
            return PapersFormat(given.lower())
        except ValueError:
            raise InvalidInput(f"unknown format '{given}' (use docx or html)") from None
    found = SUFFIXES.get(output.suffix.lower())
    if found is None:
        raise InvalidInput(f"say --format docx or html (the file '{output.name}' says neither)")
    return found


def write_file(output: Path, content: bytes) -> None:
    """Write `content` to `output` whole or not at all (a temporary file beside it, renamed);
    InvalidInput naming the reason when it cannot be written."""
    if output.is_dir():
        raise InvalidInput(f"cannot write {output}: it is a directory")
    temporary: str | None = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=".papers-", dir=output.parent)
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.replace(temporary, output)
        temporary = None
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


@meeting_app.command("papers")
@errors
def meeting_papers_command(
    ctx: typer.Context,
    body: Body,
    day: Day,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The file to write (.docx or .html).")
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="docx or html; default: by the output file's suffix."),
    ] = None,
    public: Annotated[
        bool,
        typer.Option(
            "--public", help="Leave out what the constitution's `papers:` marks confidential."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """A meeting's papers: before it, the agenda pack; once recorded, the minutes (attendance,
    declarations (18.1), decisions with their 6.2 explanation, actions)."""
    if output.is_dir():
        raise InvalidInput(f"cannot write {output}: it is a directory")
    chosen = papers_format(fmt, output)
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        meeting = meetings.find_meeting(session, body, _day(day))
        papers = meeting_papers(session, meeting.id or 0, public=public)
    write_file(output, render_papers(papers, chosen))
    result = {
        "file": str(output),
        "name": papers_filename(papers, chosen),
        "format": chosen.value,
        "papers": papers.stage.value,
        "public": public,
        "items": len(papers.items),
        "withheld": papers.withheld,
    }
    if as_json:
        print_json(result)
        return
    line = f"{papers.title} of {body} {day} written to {output} ({chosen.value})"
    if public and papers.withheld:
        line += f"; {withheld_note(papers.withheld).rstrip('.')}"
    typer.echo(line)
