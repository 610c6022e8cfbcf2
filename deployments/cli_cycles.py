"""`wct meeting|report|review|steps|deploy|simulate`: the recurring cycles from the command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlmodel import Session

from deployments.cli_base import JsonFlag, Runtime, app, errors, print_json, runtime
from deployments.server import api
from models import instructions, meetings, reports, reviews
from models.clock import local, local_zone
from models.commands import current_constitution
from models.constitution import Constitution, load_constitution
from models.errors import InvalidInput, NotInitialised, WctError
from models.permissions import OPERATOR
from models.steps import pending_steps
from models.steps.engine import overdue_steps, run_due

if TYPE_CHECKING:
    from flows.simulate import Progress, Summary

meeting_app = typer.Typer(help="Meetings (20.4.1, 21.4.1, 22.4.1).", no_args_is_help=True)
report_app = typer.Typer(help="Quarterly reports (22.2.1, 11.4.1).", no_args_is_help=True)
review_app = typer.Typer(
    help="Annual reviews (19.1, 11.4.2, 7.2, 11.3.4, 17.2, 20.3.5, 13.3, 11.2.4).",
    no_args_is_help=True,
)
app.add_typer(meeting_app, name="meeting")
app.add_typer(report_app, name="report")
app.add_typer(review_app, name="review")

As = Annotated[
    str | None, typer.Option("--as", help="Your email (or pseudonym): who is acting (required).")
]
By = Annotated[str | None, typer.Option("--by", hidden=True, help="The same as --as.")]
AsOperator = Annotated[
    str | None,
    typer.Option("--as", help="Your email (or pseudonym); default: the operator, as the system."),
]
Body = Annotated[str, typer.Argument(help="Body id, e.g. board.")]
Day = Annotated[str, typer.Argument(help="Meeting date, YYYY-MM-DD.")]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"'{text}' is not a date (use YYYY-MM-DD)") from None


def _who(as_: str | None, by: str | None) -> str:
    """Who is acting: `--as` (or its older name `--by`), which a member's command needs."""
    who = as_ or by
    if not who:
        raise InvalidInput("say who is acting: --as EMAIL")
    return who


def _meeting_id(rt: Runtime, body: str, day: str) -> int:
    with Session(rt.ready_engine()) as session:
        return meetings.find_meeting(session, body, _day(day)).id or 0


def _show(value: Any, as_json: bool, line: str) -> None:
    if as_json:
        print_json(value)
    else:
        typer.echo(line)


# --- meetings --------------------------------------------------------------------------------


@meeting_app.command("plan")
@errors
def meeting_plan(
    ctx: typer.Context, body: Body, day: Day, who: AsOperator = None, as_json: JsonFlag = False
) -> None:
    """Plan BODY's meeting on DAY (a date of its cadence) and its steps; safe to run again."""
    rt = runtime(ctx)
    planned = rt.act(who or rt.operator, instructions.PlanMeeting(body=body, day=_day(day)))
    state = "planned" if planned.created else "already planned"
    lines = [f"{body} {local(planned.starts_at):%Y-%m-%d %H:%M} ({state})"]
    lines += [f"  {local(s.due_at):%Y-%m-%d %H:%M}  {s.run_name}" for s in planned.steps]
    _show(planned.as_dict(), as_json, "\n".join(lines))


@meeting_app.command("item")
@errors
def meeting_item(
    ctx: typer.Context,
    body: Body,
    day: Day,
    title: Annotated[str, typer.Option(help="The item's title.")],
    approval: Annotated[
        int | None,
        typer.Option(
            help="The approval request it is put forward under: it cannot be decided until "
            "the approving body approves (11.3.5, 21.1.1)."
        ),
    ] = None,
    who: As = None,
    by: By = None,
) -> None:
    """Put an item forward for the agenda, before the items deadline."""
    rt = runtime(ctx)
    meeting_id = _meeting_id(rt, body, day)
    submit = instructions.SubmitItem(meeting_id=meeting_id, title=title, approval_id=approval)
    item = rt.act(_who(who, by), submit)
    typer.echo(f"item #{item} submitted for {body} {day}")


@meeting_app.command("apologies")
@errors
def meeting_apologies(
    ctx: typer.Context, body: Body, day: Day, who: As = None, by: By = None
) -> None:
    """Send your apologies for a meeting (the reminder then skips you)."""
    rt = runtime(ctx)
    meeting_id = _meeting_id(rt, body, day)
    rt.act(_who(who, by), instructions.SendApologies(meeting_id=meeting_id))
    typer.echo(f"apologies recorded for {body} {day}")


@meeting_app.command("agenda")
@errors
def meeting_agenda(ctx: typer.Context, body: Body, day: Day, as_json: JsonFlag = False) -> None:
    """Show a meeting's agenda (composed when its items deadline passes)."""
    rt = runtime(ctx)
    meeting_id = _meeting_id(rt, body, day)
    with Session(rt.ready_engine()) as session:
        lines = meetings.agenda(session, meeting_id)
    _show(
        [line.__dict__ for line in lines],
        as_json,
        "\n".join(f"{line.position}. {line.title}" for line in lines) or "(not composed yet)",
    )


@meeting_app.command("record")
@errors
def meeting_record(
    ctx: typer.Context,
    body: Body,
    day: Day,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help="JSON: {present: [emails], apologies: [...], declarations: [{who, item, "
            "nature}], motions: [{text, item, votes_for, votes_against, abstentions, consensus, "
            "casting_vote, chaired_by}]}",
        ),
    ],
    who: As = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Record attendance, declarations (18.1) and votes (6.2), and draft the minutes."""
    from flows.cycles import MeetingRecord, recording

    rt = runtime(ctx)
    recorder = _who(who, by)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{file}: cannot read the record: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{file}: the record is not a JSON object")
    record = MeetingRecord.model_validate(
        {**data, "body": body, "day": day, "recorded_by": recorder}
    )
    meeting_id = _meeting_id(rt, body, day)
    draft = rt.act(recorder, recording(record, meeting_id))
    text = "\n".join(f"{m['text']}: {m['explanation']}" for m in draft.motions)
    _show(draft.as_dict(), as_json, text or "recorded; no motions")


@meeting_app.command("minutes")
@errors
def meeting_minutes(ctx: typer.Context, body: Body, day: Day) -> None:
    """Show the minutes data of a meeting as JSON."""
    rt = runtime(ctx)
    meeting_id = _meeting_id(rt, body, day)
    with Session(rt.ready_engine()) as session:
        print_json(meetings.minutes_data(session, meeting_id).as_dict())


@meeting_app.command("approve")
@errors
def meeting_approve(
    ctx: typer.Context,
    body: Body,
    day: Day,
    at: Annotated[str, typer.Option("--at", help="Date of the meeting approving them.")],
    who: As = None,
    by: By = None,
) -> None:
    """Approve the minutes of BODY's meeting on DAY at its next meeting."""
    rt = runtime(ctx)
    meeting_id, at_id = _meeting_id(rt, body, day), _meeting_id(rt, body, at)
    rt.act(_who(who, by), instructions.ApproveMinutes(meeting_id=meeting_id, at_meeting_id=at_id))
    typer.echo(f"minutes of {body} {day} approved at {at}")


@meeting_app.command("cancel")
@errors
def meeting_cancel(
    ctx: typer.Context,
    body: Body,
    day: Day,
    reason: Annotated[str, typer.Option(help="Why; members see it.")],
    who: As = None,
    by: By = None,
) -> None:
    """Cancel BODY's meeting on DAY: its steps stop and members get a calendar cancellation."""
    rt = runtime(ctx)
    meeting_id = _meeting_id(rt, body, day)
    cancel = instructions.CancelMeeting(meeting_id=meeting_id, reason=reason)
    done = rt.act(_who(who, by), cancel)
    typer.echo(f"{body} {day} " + ("cancelled; members told" if done else "was already cancelled"))


def _moment(text: str, what: str) -> datetime:
    """A local date and time (`2027-03-16 14:00`, the partnership's time zone), or a clear
    error."""
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise InvalidInput(
            f"{what} '{text}' is not a date and time (use YYYY-MM-DD HH:MM)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=local_zone())


At = Annotated[str, typer.Option("--at", help="Date and time, 'YYYY-MM-DD HH:MM' (local time).")]
Where = Annotated[str | None, typer.Option(help="Where, if not the body's usual place.")]


@meeting_app.command("move")
@errors
def meeting_move(
    ctx: typer.Context,
    body: Body,
    day: Day,
    to: Annotated[str, typer.Option("--to", help="New date and time, 'YYYY-MM-DD HH:MM'.")],
    reason: Annotated[str, typer.Option(help="Why; members see it.")],
    location: Where = None,
    who: As = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Move BODY's meeting on DAY: members get the updated invitation and its steps move."""
    rt = runtime(ctx)
    meeting_id = _meeting_id(rt, body, day)
    move = instructions.MoveMeeting(
        meeting_id=meeting_id, starts_at=_moment(to, "--to"), reason=reason, location=location
    )
    moved = rt.act(_who(who, by), move)
    lines = [f"{body} {day} moved to {local(moved.starts_at):%Y-%m-%d %H:%M}; members told"]
    lines += [f"  {local(s.due_at):%Y-%m-%d %H:%M}  {s.run_name}" for s in moved.steps]
    _show(moved.as_dict(), as_json, "\n".join(lines))


@meeting_app.command("call")
@errors
def meeting_call(
    ctx: typer.Context,
    body: Body,
    at: At,
    reason: Annotated[str, typer.Option(help="Why it is called; members see it.")],
    location: Where = None,
    who: As = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Call an extraordinary meeting of BODY, off its cadence; the notice goes at once when
    the usual notice period has passed."""
    rt = runtime(ctx)
    rt.ready_engine()  # the partnership's time zone, in which --at is read
    call = instructions.CallMeeting(
        body=body, starts_at=_moment(at, "--at"), reason=reason, location=location
    )
    planned = rt.act(_who(who, by), call)
    state = "called" if planned.created else "already called"
    lines = [f"{body} {local(planned.starts_at):%Y-%m-%d %H:%M} extraordinary ({state})"]
    lines += [f"  {local(s.due_at):%Y-%m-%d %H:%M}  {s.run_name}" for s in planned.steps]
    _show(planned.as_dict(), as_json, "\n".join(lines))


@meeting_app.command("enter")
@errors
def meeting_enter(
    ctx: typer.Context,
    body: Body,
    at: At,
    location: Where = None,
    who: As = None,
    by: By = None,
) -> None:
    """Enter a meeting of BODY held before wct ran (no messages), then record it as any other
    with `wct meeting record`."""
    rt = runtime(ctx)
    rt.ready_engine()  # the partnership's time zone, in which --at is read
    entered = rt.act(
        _who(who, by),
        instructions.EnterPastMeeting(body=body, starts_at=_moment(at, "--at"), location=location),
    )
    state = "entered" if entered.created else "was already entered"
    at_local = local(entered.starts_at)
    typer.echo(f"{body} {at_local:%Y-%m-%d %H:%M} {state}: record it with `wct meeting record`")


# --- reports ---------------------------------------------------------------------------------


@report_app.command("open")
@errors
def report_open(
    ctx: typer.Context,
    period: Annotated[str, typer.Argument(help="Period, e.g. 2027-Q1 (or 2027-P1).")],
    who: AsOperator = None,
    as_json: JsonFlag = False,
) -> None:
    """Open every quarterly report owed for PERIOD with its reminders; safe to run again."""
    rt = runtime(ctx)
    opened = rt.act(who or rt.operator, instructions.OpenReports(period=period))
    _show(opened.as_dict(), as_json, f"{len(opened.created)} opened, {len(opened.steps)} steps")


@report_app.command("submit")
@errors
def report_submit(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Report id, e.g. wscb-quarterly.")],
    body: Annotated[str, typer.Argument(help="Reporting body.")],
    period: Annotated[str, typer.Argument(help="Period, e.g. 2027-Q1 (or 2027-P1).")],
    document: Annotated[str, typer.Option(help="Link to or name of the report.")],
    who: As = None,
    by: By = None,
) -> None:
    """Submit a quarterly report (its chair or deputy, or a coordinator): its reminders and
    escalation stop."""
    rt = runtime(ctx)
    submission = instructions.SubmitReport(
        kind=kind, from_body=body, period=period, document=document
    )
    report = rt.act(_who(who, by), submission)
    typer.echo(f"{reports.report_key(report)}: {report.status}")


# --- reviews ---------------------------------------------------------------------------------


@review_app.command("open")
@errors
def review_open(
    ctx: typer.Context, kind: str, year: int, who: AsOperator = None, as_json: JsonFlag = False
) -> None:
    """Open an annual review with its notice, reminders and escalation; safe to run again."""
    rt = runtime(ctx)
    opened = rt.act(who or rt.operator, instructions.OpenReview(kind=kind, year=year))
    _show(opened.as_dict(), as_json, f"{opened.key} due {opened.due_on}")


@review_app.command("complete")
@errors
def review_complete(
    ctx: typer.Context,
    kind: str,
    year: int,
    outcome: Annotated[str, typer.Option(help="The outcome, for the record.")],
    who: As = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a review's outcome (a 7.2 review is published and opens to challenge)."""
    rt = runtime(ctx)
    done = rt.act(_who(who, by), instructions.CompleteReview(kind=kind, year=year, outcome=outcome))
    line = f"review:{kind}:{year}: {done.status}"
    if done.challenge_closes_on:
        line += f" (open to challenge until {done.challenge_closes_on})"
    for gap in done.representation_gaps:
        line += f"\n  {gap}"
    _show(done.as_dict(), as_json, line)


@review_app.command("challenge")
@errors
def review_challenge(
    ctx: typer.Context,
    kind: str,
    year: int,
    text: Annotated[str, typer.Option("--text", help="The challenge.")],
    who: Annotated[
        str | None,
        typer.Option(
            "--as", help="Your email if you are a member, else your name (any interested party)."
        ),
    ] = None,
    by: By = None,
) -> None:
    """7.2: challenge a published review while its window is open (anyone may)."""
    rt = runtime(ctx)
    challenge = instructions.ChallengeReview(kind=kind, year=year, text=text)
    count = rt.act(_who(who, by), challenge)
    typer.echo(f"challenge #{count} to review:{kind}:{year} sent to its owner")


@review_app.command("challenges")
@errors
def review_challenges(ctx: typer.Context, kind: str, year: int, as_json: JsonFlag = False) -> None:
    """7.2: the challenges to a published review, each with its id (to answer it) and answer."""
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        found = reviews.list_challenges(session, kind=kind, year=year)
    lines = "\n".join(_challenge_lines(v) for v in found)
    _show([v.as_dict() for v in found], as_json, lines or "no challenges")


def _challenge_lines(v: reviews.ChallengeView) -> str:
    who = v.challenger if v.member else f"{v.challenger} (not a member)"
    line = f"#{v.id}  {v.received_at:%Y-%m-%d}  from {who}: {v.text or '(text not kept)'}"
    if v.answered_at is None:
        return line + "\n      not answered yet"
    answer = f": {v.response}" if v.response else " (the answer could not be sent)"
    return line + f"\n      answered {v.answered_at:%Y-%m-%d} by {v.answered_by}{answer}"


@review_app.command("answer")
@errors
def review_answer(
    ctx: typer.Context,
    challenge_id: Annotated[int, typer.Argument(help="The challenge's id (review challenges).")],
    response: Annotated[str, typer.Option("--response", help="The owning body's answer.")],
    who: As = None,
    by: By = None,
    as_json: JsonFlag = False,
) -> None:
    """7.2: answer a challenge to a published review; a member who challenged is sent it."""
    rt = runtime(ctx)
    answer = instructions.AnswerChallenge(challenge_id=challenge_id, response=response)
    done = rt.act(_who(who, by), answer)
    _show(done.as_dict(), as_json, f"challenge #{done.challenge_id} to {done.review}: {done.note}")


# --- steps -----------------------------------------------------------------------------------


@app.command("steps")
@errors
def steps_list(
    ctx: typer.Context,
    subject: Annotated[
        str, typer.Option(help="e.g. meeting:3 or dispute:2; default: overdue steps")
    ] = "",
    run: Annotated[bool, typer.Option("--reconcile", help="Act on the overdue steps now.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Steps overdue, of meetings, reports, reviews and cases (or pending for one subject);
    --reconcile acts on the overdue ones, as the sweep does."""
    rt = runtime(ctx)
    engine = rt.ready_engine()
    if run:
        done = run_due(engine, rt.clock, actor=OPERATOR)
        _show([d.as_dict() for d in done], as_json, f"{len(done)} overdue steps acted on")
        return
    with Session(engine) as session:
        if subject:
            rows = [s.as_dict() for s in pending_steps(session, subject)]
        else:
            rows = [
                {"key": s.key, "kind": s.kind, "due_at": s.due_at.isoformat()}
                for s in overdue_steps(session, now=rt.clock.now())
            ]
    _show(rows, as_json, "\n".join(f"{r['due_at'][:16]}  {r['key']}" for r in rows) or "none")


# --- up and simulate -------------------------------------------------------------------------


def _constitution(rt: Runtime) -> Constitution:
    with Session(rt.ready_engine()) as session:
        return current_constitution(session)


@app.command()
@errors
def deploy(
    ctx: typer.Context,
    pool: Annotated[str, typer.Option("--pool", help="Prefect work pool the workers poll.")],
) -> None:
    """Register every deployment (cycles, cases, dispatcher) on a Prefect work pool
    (PREFECT_API_URL), for workers on other machines; the flows are named by module, so any
    machine with wct installed can run them."""
    rt = runtime(ctx)
    c = _constitution(rt)
    if not os.environ.get("PREFECT_API_URL"):
        raise WctError("set PREFECT_API_URL to the Prefect server the workers use")
    from deployments.serve import all_deployments, register_on_pool
    from deployments.steps import retire_old_deployments

    with api(os.environ["PREFECT_API_URL"]):
        deployments = all_deployments(c, for_workers=True)
        retired = asyncio.run(retire_old_deployments())
        created = asyncio.run(register_on_pool(deployments, pool))
    for name in retired:
        typer.echo(
            f"removed the deployment {name} of an earlier wct, with its scheduled runs: "
            "the sweep sets their timers again under step/step"
        )
    typer.echo(
        f"{len(deployments)} deployments registered on work pool '{pool}'"
        + (" (created, type process)" if created else "")
        + f"; start workers with: prefect worker start --pool {pool}"
    )


@app.command()
@errors
def simulate(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD.")],
    seed: Annotated[int, typer.Option(help="Seed of the members' random behaviour.")] = 7,
    home: Annotated[
        Path | None, typer.Option(help="Folder for the simulation's database and mail.")
    ] = None,
    constitution: Annotated[
        Path | None,
        typer.Option(
            "--constitution",
            help="Constitution YAML to simulate; default: the one loaded in the configured "
            "database (WCT_DATABASE_URL / WCT_HOME).",
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Database URL the simulation writes (SQLite or PostgreSQL); it must be empty. "
            "Default: a SQLite file under --home. Never the partnership's live database.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Play the calendar in accelerated time against a real Prefect server (a temporary one
    unless PREFECT_API_URL is set), delivering to a mail folder, and print a summary: the
    totals, each body's meetings, reports and reviews, and each kind of case. The simulation
    has its own database (--database, or under --home); the configured one is only read.
    While it runs, its progress through the period is shown on stderr when stderr is a
    terminal (so --json output, on stdout, stays clean either way)."""
    rt = runtime(ctx)
    first, last = _day(start), _day(end)
    if last < first:
        raise InvalidInput(f"--to {last} is before --from {first}")
    folder = home or Path(tempfile.mkdtemp(prefix="wct-simulation-"))
    folder.mkdir(parents=True, exist_ok=True)
    c = load_constitution(constitution) if constitution else _loaded_constitution(rt)
    with _progress(first, last) as progress:
        summary = run_simulation(c, first, last, seed, folder, database=database, progress=progress)
    started = summary.pop("wall_seconds")
    if as_json:
        print_json({**summary, "wall_seconds": started})
        return
    for key, value in summary.items():
        if key in ("cases", "bodies"):  # one line each: "risk: opened 4, escalated 3, ..."
            typer.echo(f"{key:>20}:")
            for name, counts in value.items():
                shown = ", ".join(f"{what.replace('_', ' ')} {n}" for what, n in counts.items())
                typer.echo(f"{name:>20}: {shown}")
            continue
        typer.echo(f"{key:>20}: {value}")
    typer.echo(f"{'wall_seconds':>20}: {started}")


@contextmanager
def _progress(first: date, last: date) -> Iterator[Progress | None]:
    """A progress bar through the simulated period on stderr, when stderr is a terminal; None
    otherwise (a pipe, a log file, a test), so nothing but the summary is written."""
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    days = (last - first).days + 1
    bar = RichProgress(
        TextColumn("simulating {task.fields[day]}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} days"),
        TextColumn("{task.fields[runs]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("simulate", total=days, day=first.isoformat(), runs="")

    def advance(now: datetime, summary: Summary) -> None:
        day = local(now).date()
        done = (day - first).days + 1
        runs = (
            f"{summary.meetings_planned} meetings planned, {summary.steps_fired} steps fired, "
            f"{summary.commands_refused} refused"
        )
        bar.update(task, completed=min(done, days), day=day.isoformat(), runs=runs)

    with bar:
        yield advance


def _loaded_constitution(rt: Runtime) -> Constitution:
    """The constitution in force in the configured database; never a silent default."""
    try:
        return _constitution(rt)
    except WctError:
        raise NotInitialised(
            f"no constitution is loaded in {rt.settings.shown_database_url}: run `wct init`, "
            "or name one with `wct simulate --constitution FILE`"
        ) from None


def run_simulation(
    c: Constitution,
    first: date,
    last: date,
    seed: int,
    home: Path,
    *,
    database: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the simulation with its own database: `database` (which must be empty), else a SQLite
    file under `home`; the caller's configured database is never touched."""
    from flows.simulate import Simulation, prepare_database
    from models.clock import FixedClock
    from models.config import get_settings
    from models.db import make_engine

    url = database or f"sqlite:///{(home / 'wct.db').resolve()}"
    shown = _refuse_unless_empty(url)
    saved = {k: os.environ.get(k) for k in ("WCT_DATABASE_URL", "WCT_HOME")}
    os.environ.update({"WCT_DATABASE_URL": url, "WCT_HOME": str(home)})
    for name in ("prefect", "prefect.flow_runs", "prefect.engine", "prefect.server"):
        logging.getLogger(name).setLevel(logging.WARNING)  # hundreds of runs: keep the summary
    get_settings.cache_clear()
    began = time.monotonic()
    try:
        engine = make_engine(url)
        start = datetime.combine(first, datetime.min.time(), tzinfo=c.partnership.zone)
        prepare_database(engine, c, FixedClock(start))
        simulation = Simulation(
            start=first, end=last, seed=seed, home=home, constitution=c, progress=progress
        )
        with _simulation_server():
            summary = asyncio.run(simulation.run())
        engine.dispose()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
    result = summary.as_dict()
    result["database"] = shown
    result["wall_seconds"] = round(time.monotonic() - began, 1)
    return result


def _refuse_unless_empty(url: str) -> str:
    """The URL as it may be shown (no password), once it is known to hold no wct records: a
    simulation writes months of meetings, cases and mail, so it never runs on a database in use."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        probe = create_engine(url)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise InvalidInput(f"--database: not a database URL ({type(exc).__name__})") from None
    shown = probe.url.render_as_string(hide_password=True)
    try:
        with probe.connect() as connection:
            if inspect(connection).has_table("audit_event"):
                events = connection.execute(text("select count(*) from audit_event")).scalar()
                if events:
                    raise InvalidInput(
                        f"{shown} already holds wct records ({events} audit events): a "
                        "simulation needs an empty database, so it never touches one in use; "
                        "name another with --database, or leave it out for a SQLite file "
                        "under --home"
                    )
    except SQLAlchemyError as exc:
        raise InvalidInput(f"cannot open {shown}: {type(exc).__name__}") from None
    finally:
        probe.dispose()
    return shown


@contextmanager
def _simulation_server() -> Iterator[None]:
    given = os.environ.get("PREFECT_API_URL")
    if given:
        with api(given):
            yield
        return
    from deployments.server import throwaway_server

    # its own server and database, without what nobody can watch, talked to as a given one is
    with throwaway_server() as url, api(url):
        yield
