"""The `wct` command line: every command has --help; --json where a script reads the output."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session, col, select

# Importing these registers their commands on `app`.
import deployments.cli_papers  # noqa: F401  (`wct meeting papers`)
from deployments import cli_actions, cli_cases, cli_cycles, cli_notifications, cli_up, cli_upcoming  # noqa: F401
from deployments.cli_base import (
    SIGPIPE_EXIT,
    JsonFlag,
    ReaderLeft,
    Runtime,
    app,
    audit_app,
    errors,
    members_app,
    print_json,
    problems_found,
    redacted,
    runtime,
)
from deployments.cli_up import describe, runtime_health
from models import audit
from models.clock import SystemClock
from models.commands import current_constitution
from models.constitution import default_constitution_path, load_constitution
from models.db import migrate
from models.errors import ConstitutionInvalid, InvalidInput, NotFound
from models.health import Level
from models.instructions import EraseMember, ImportMembers, LoadConstitution
from models.members import decode_members
from models.queries import status as status_view
from models.redact import install_log_redaction, redact, redacted_traceback
from models.tables import Person, PersonRole

__all__ = ["Runtime", "app", "main"]

MAX_MEMBERS_FILE = 8 * 2**20  # bytes; a partnership's members file is a few kilobytes


@app.command()
@errors
def init(
    ctx: typer.Context,
    constitution: Annotated[
        Path | None,
        typer.Option(help="Constitution YAML; default: the Wirral Children's Trust's."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create or upgrade the database and load the constitution (safe to run again)."""
    rt = runtime(ctx)
    path = constitution or default_constitution_path()
    checked = load_constitution(path)  # before any write: a bad file changes nothing
    migrate(rt.engine())
    applied = rt.act(rt.operator, LoadConstitution(document=checked, source=str(path)))
    result = {
        "database": rt.settings.shown_database_url,
        "partnership": checked.partnership.name,
        "constitution": str(path),
        "digest": applied.digest,
        "changed": applied.changed,
    }
    if as_json:
        print_json(result)
    elif applied.changed:
        typer.echo(
            f"Loaded {checked.partnership.name} ({len(checked.bodies)} bodies, "
            f"{len(checked.organisations)} organisations) into {result['database']}"
        )
    else:
        typer.echo(f"{checked.partnership.name}: already up to date ({applied.digest[:12]})")


@app.command()
@errors
def check(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Constitution YAML to check.")],
    as_json: JsonFlag = False,
) -> None:
    """Check a constitution against the schema, the MoU's structural rules and what its
    processes need (bodies, roles, cadences that meet in the next 12 months); writes nothing.
    Exit 1 if it has problems (the check worked: its answer is no)."""
    clock = ctx.obj.clock if isinstance(ctx.obj, Runtime) else SystemClock()
    try:
        checked = load_constitution(path, now=clock.now())
    except ConstitutionInvalid as exc:
        if as_json:
            print_json({"ok": False, "problems": [p.as_dict() for p in exc.problems]})
            raise typer.Exit(1) from None
        raise problems_found(exc, code=1) from None
    if as_json:
        print_json({"ok": True, "digest": checked.digest(), "problems": []})
    else:
        rules = ", ".join(sorted(checked.rules.values()))
        typer.echo(f"{path}: OK ({checked.partnership.name}; rules checked: {rules})")


@app.command()
@errors
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Bodies, chairs, seats filled, members, next meetings; and whether the running system works:
    the Prefect server, its scheduler, the last dispatch and the outbox. Exit 1 if it does not."""
    rt = runtime(ctx)
    engine = rt.ready_engine()
    with Session(engine) as session:
        view = status_view(session, now=rt.clock.now(), meetings=3 if as_json else 1)
    health = runtime_health(rt, engine)
    broken = health.level is Level.ERROR
    if as_json:
        print_json(redacted(view.as_dict() | {"runtime": health.as_dict(rt.clock.now())}))
        if broken:
            raise typer.Exit(1)
        return
    typer.echo(f"{view.partnership} ({view.short_name})")
    typer.echo(
        f"constitution {view.constitution_digest[:12]}, loaded {view.constitution_loaded_at}; "
        f"{view.members} members; {view.audit_events} audit events"
    )
    typer.echo("")
    rows = [("BODY", "NAME", "CHAIR", "SEATS FILLED", "NEXT MEETING")]
    for b in view.bodies:
        chair = f"{b.chair_role}: {b.chair or 'vacant'}"
        nxt = b.next_meetings[0].replace("T", " ")[:16] if b.next_meetings else "-"
        rows.append((b.id, b.name, chair, f"{b.seats_filled}/{b.seats}", nxt))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for warning in view.warnings:
        typer.echo(f"warning: {warning}")
    typer.echo("")
    for line in describe(health, rt.clock.now()):
        typer.echo(redact(line))
    for finding in health.findings:
        shown = redact(f"{finding.level.value}: {finding.message}")
        typer.echo(shown, err=finding.level is Level.ERROR)
    if broken:
        raise typer.Exit(1)


@members_app.command("import")
@errors
def members_import(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with columns name,email,organisation,roles[,teams_webhook,channels]; "
            "roles and channels separated by ';'."
        ),
    ],
    prune: Annotated[
        bool, typer.Option(help="Deactivate members who are not in this file.")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Confirm a --prune that deactivates more than half the active members."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Add or update members by email; a bad row is reported by line and nothing is written."""
    rt = runtime(ctx)
    try:
        if file.stat().st_size > MAX_MEMBERS_FILE:
            raise InvalidInput(f"{file}: larger than {MAX_MEMBERS_FILE // 2**20} MB")
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{file}: {exc.strerror or exc}") from None
    text = decode_members(data, source=str(file))
    result = rt.act(
        rt.operator, ImportMembers(text=text, source=str(file), prune=prune, confirmed=yes)
    )
    if as_json:
        print_json(asdict(result))
        return
    typer.echo(
        f"{file}: {len(result.added)} added, {len(result.updated)} updated, "
        f"{len(result.unchanged)} unchanged"
        + (f", {len(result.deactivated)} deactivated" if prune else "")
    )
    if result.not_in_file and not prune:
        typer.echo(
            f"note: {len(result.not_in_file)} active members are not in this file "
            "(use --prune to deactivate them)"
        )


@members_app.command("list")
@errors
def members_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Active members with their organisation, roles and channels."""
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        people = session.exec(
            select(Person).where(col(Person.active).is_(True)).order_by(col(Person.name))
        ).all()
        roles: dict[int, list[str]] = {}
        for person_id, role_id in session.exec(select(PersonRole.person_id, PersonRole.role_id)):
            roles.setdefault(person_id, []).append(role_id)
    listing = [
        {
            "pseudonym": p.pseudonym,
            "name": p.name,
            "email": p.email,
            "organisation": p.organisation_id,
            "roles": sorted(roles.get(p.id or 0, [])),
            "channels": p.channels.split(","),
        }
        for p in people
    ]
    if as_json:
        print_json(listing)
        return
    for m in listing:
        typer.echo(
            f"{m['pseudonym']}  {m['name']} <{m['email']}>  {m['organisation']}  "
            f"{';'.join(m['roles'])}  [{','.join(m['channels'])}]"
        )


@members_app.command("erase")
@errors
def members_erase(
    ctx: typer.Context,
    who: Annotated[str, typer.Argument(help="Email or pseudonym of the member to erase.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
) -> None:
    """Erase a member's personal data (UK GDPR); the audit trail stays verifiable."""
    if not yes:
        raise InvalidInput("erasure cannot be undone: repeat with --yes")
    rt = runtime(ctx)
    pseudonym = rt.act(rt.operator, EraseMember(who=who))
    typer.echo(f"erased {pseudonym}: name, email and webhook removed; audit trail intact")


@audit_app.command("verify")
@errors
def audit_verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        str | None,
        typer.Option(help="SEQ:HASH published earlier by `wct audit checkpoint`."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check the hash chain; name every edited, deleted or reordered event. Exit 1 if any."""
    rt = runtime(ctx)
    expected = audit.parse_checkpoint(checkpoint) if checkpoint else None
    with Session(rt.ready_engine()) as session:
        findings = audit.verify(session, checkpoint=expected)
        count, head = audit.checkpoint(session)
    if as_json:
        print_json(
            {
                "ok": not findings,
                "events": count,
                "head": head,
                "findings": [asdict(f) for f in findings],
            }
        )
    elif findings:
        for finding in findings:
            typer.echo(f"{finding.kind}: {finding.message}", err=True)
    else:
        typer.echo(f"audit trail intact: {count} events, head {count}:{head}")
    if findings:
        if not as_json:
            typer.echo(f"wct: error: audit trail broken ({len(findings)} findings)", err=True)
        raise typer.Exit(1)


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


@audit_app.command("export")
@errors
def audit_export(
    ctx: typer.Context,
    export_format: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl or csv.", case_sensitive=False)
    ] = ExportFormat.JSONL,
    organisation: Annotated[
        str | None, typer.Option(help="Only the records concerning this organisation id.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Export the audit records (4.1), with their hashes so anyone can check them."""
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        if organisation is not None:
            known = {o.id for o in current_constitution(session).organisations}
            if organisation not in known:
                raise NotFound(
                    f"unknown organisation '{organisation}' (known: {', '.join(sorted(known))})"
                )
        rows = audit.export_rows(session, organisation=organisation)
    text = audit.to_jsonl(rows) if export_format is ExportFormat.JSONL else audit.to_csv(rows)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"{len(rows)} events written to {output}", err=True)


@audit_app.command("checkpoint")
@errors
def audit_checkpoint(ctx: typer.Context) -> None:
    """Print SEQ:HASH of the chain head; publish it outside the database to detect rewrites."""
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        count, head = audit.checkpoint(session)
    typer.echo(f"{count}:{head}")


def main() -> None:
    """Console entry point. Log records are redacted as they are made. When the reader of our
    output leaves early (`wct outbox | head`), exit quietly with 141 (128 + SIGPIPE, what a
    shell reports for any program the pipe stopped): not a traceback, and not 0, which would
    tell `set -o pipefail` that everything was written."""
    install_log_redaction()
    try:
        try:
            app()
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except (BrokenPipeError, ReaderLeft):
        # As the Python docs advise (library/signal.html, "Note on SIGPIPE"): point stdout at
        # devnull so the interpreter's last flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(SIGPIPE_EXIT)
    except Exception as exc:  # a command without @errors: Python's traceback, redacted
        sys.stderr.write(redacted_traceback(exc))
        sys.exit(1)
