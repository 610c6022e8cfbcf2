"""The recurring cycles as Prefect flows: meetings, quarterly reports, annual reviews, each step a
durable timer (a future-scheduled `cycle-step` run keyed by the step), and a reconcile sweep.

Flows orchestrate only: every rule is a command in `models/`; a flow calls it in one unit of work,
turns the steps it returns into timer runs, and shows agendas, minutes drafts and overdue lists
as markdown artifacts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.deployments.flow_runs import arun_deployment
from prefect.runtime import flow_run as current_run
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from flows.runtime import RETRIES, RETRY_DELAY, clock_at, engine, until_due
from models import meetings, reports, reviews
from models.casework import StepStatus
from models.clock import Clock
from models.commands import current_constitution
from models.cycle_steps import KINDS, reconcile, run_step
from models.decision import Vote
from models.errors import WctError
from models.queries import overdue_items
from models.steps import PlannedStep, as_planned
from models.tables import Meeting, Step
from models.uow import UnitOfWork

T = TypeVar("T")
CYCLE_TAG = "wct-cycle"
STEP_DEPLOYMENT = "cycle-step/cycle-step"
MEETINGS_AHEAD = 2
# The sweep re-creates any lost timer due within this horizon (the cycles create them all).
TIMER_HORIZON = timedelta(days=35)


def command(clock: Clock, run: Callable[[UnitOfWork], T], *, actor: str = "system:cycle") -> T:
    """Run one command in its own unit of work and commit it."""
    with UnitOfWork(engine(), clock=clock, actor=actor) as uow:
        result = run(uow)
        uow.commit()
    return result


# --- timers ----------------------------------------------------------------------------------


async def schedule_timers(steps: Sequence[PlannedStep], *, as_of: datetime | None = None) -> int:
    """One future-scheduled `cycle-step` run per step, keyed by the step: a durable timer a
    coordinator sees in the UI, created once however often this runs. Under an injected clock
    (simulation, tests) the timer carries its due time as the clock it acts by."""
    for step in steps:
        parameters: dict[str, Any] = {"key": step.key}
        if as_of is not None:
            parameters["as_of"] = step.due_at.isoformat()
        await arun_deployment(
            STEP_DEPLOYMENT,
            parameters=parameters,
            scheduled_time=step.due_at,
            idempotency_key=step.key,
            flow_run_name=step.run_name,
            tags=[CYCLE_TAG, step.subject],
            timeout=0,
            as_subflow=False,  # a timer outlives the run that set it
        )
    return len(steps)


def pending(*, before: datetime | None = None) -> list[PlannedStep]:
    """Every cycle step still waiting (due before `before`, when given)."""
    with Session(engine()) as session:
        query = select(Step).where(Step.status == StepStatus.PENDING, col(Step.kind).in_(KINDS))
        if before is not None:
            query = query.where(col(Step.due_at) < before)
        return [as_planned(s) for s in session.exec(query.order_by(col(Step.due_at)))]


# --- artifacts (display only: what the commands decided) -------------------------------------


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def agenda_markdown(session: Session, meeting: Meeting) -> str:
    c = current_constitution(session)
    lines = [
        f"# {c.body(meeting.body_id).name}: agenda",
        f"{meeting.starts_at:%A %d %B %Y, %H:%M}, {meeting.location or 'location to follow'}",
        "",
        "| # | Item | Kind |",
        "|---|------|------|",
    ]
    for line in meetings.agenda(session, meeting.id or 0):
        lines.append(f"| {line.position} | {_cell(line.title)} | {line.kind} |")
    return "\n".join(lines)


def minutes_markdown(draft: meetings.MinutesDraft) -> str:
    out = [f"# {draft.body}: draft minutes", f"Meeting of {draft.starts_at}", ""]
    for status in meetings.AttendanceStatus:
        out.append(f"**{status.title()}:** {', '.join(draft.attendance[status]) or 'none'}")
    out += ["", "## Agenda", *[f"- {_cell(a)}" for a in draft.agenda], ""]
    out += ["## Declarations of interest (18.1)"]
    out += [f"- {_cell(d)}" for d in draft.declarations] or ["- none"]
    out += ["", "## Decisions (6.2)", "| Item | Motion | Outcome | How |", "|---|---|---|---|"]
    for m in draft.motions:
        out.append(
            f"| {m['item'] or '-'} | {_cell(m['text'])} | {m['outcome']} | "
            f"{_cell(m['explanation'])} |"
        )
    return "\n".join(out)


def overdue_markdown(session: Session, now: datetime) -> tuple[str, int]:
    rows = [f"| {i.what} | {i.key} | {i.due} |" for i in overdue_items(session, now)]
    text = "\n".join(
        [f"# Overdue at {now:%d %B %Y %H:%M}", "", "| What | Key | Was due |", "|---|---|---|"]
        + (rows or ["| - | nothing overdue | - |"])
    )
    return text, len(rows)


def _slug(key: str) -> str:
    return key.replace(":", "-").lower()


async def publish_agenda_artifact(meeting_id: int) -> None:
    with Session(engine()) as session:
        meeting = session.get(Meeting, meeting_id)
        assert meeting is not None
        text = agenda_markdown(session, meeting)
        key = f"agenda-{_slug(meetings.meeting_key(meeting))[len('meeting-') :]}"
    await acreate_markdown_artifact(text, key=key, description="Agenda")


async def publish_minutes_artifact(meeting_id: int) -> None:
    with Session(engine()) as session:
        meeting = session.get(Meeting, meeting_id)
        assert meeting is not None
        draft = meetings.minutes_data(session, meeting_id)
        key = f"minutes-{_slug(meetings.meeting_key(meeting))[len('meeting-') :]}"
    await acreate_markdown_artifact(minutes_markdown(draft), key=key, description="Draft minutes")


# --- the step timer and the sweep ------------------------------------------------------------


def step_run_name() -> str:
    """Name a step's run for what it is about (`board-2027-03-09-agenda`), however started."""
    key = str(current_run.parameters.get("key", "step"))
    return "-".join(key.split(":")[1:]) or key


@flow(
    name="cycle-step",
    flow_run_name=step_run_name,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
async def cycle_step(key: str, as_of: datetime | None = None) -> str:
    """A step of a cycle comes due: re-read the state and act once, or do nothing if satisfied."""
    await until_due(key, as_of)
    outcome = run_step(engine(), clock_at(as_of), key)
    get_run_logger().info("step %s: %s", key, outcome.result)
    if outcome.result == "acted":
        await _artifacts_for(key)
    return outcome.result


async def _artifacts_for(key: str) -> None:
    with Session(engine()) as session:
        step = session.exec(select(Step).where(Step.key == key)).one()
    if step.kind in (meetings.AGENDA, meetings.ITEMS_DEADLINE):
        await publish_agenda_artifact(int(step.subject.split(":")[1]))


@flow(name="cycle-reconcile", retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
async def cycle_reconcile(
    as_of: datetime | None = None, timers: bool = True, cycles: bool = True
) -> dict[str, Any]:
    """The sweep: re-plan every cycle (so a cycle run that failed is repaired within one sweep),
    act on every cycle step whose time passed without its timer run (server down, run deleted),
    make sure every pending step has its timer, and publish the overdue list."""
    clock = clock_at(as_of)
    problems = ensure_cycles(clock) if cycles else []
    for problem in problems:
        get_run_logger().warning("%s", problem)
    done = reconcile(engine(), clock)
    for run in done:
        if run.result == "acted":
            await _artifacts_for(run.key)
    horizon = clock.now() + TIMER_HORIZON
    ensured = await schedule_timers(pending(before=horizon), as_of=as_of) if timers else 0
    with Session(engine()) as session:
        text, overdue = overdue_markdown(session, clock.now())
    await acreate_markdown_artifact(text, key="overdue-list", description="Overdue")
    return {
        "acted": [r.key for r in done if r.result == "acted"],
        "skipped": [r.key for r in done if r.result == "skipped"],
        "timers": ensured,
        "overdue": overdue,
        "problems": problems,
    }


def ensure_cycles(clock: Clock) -> list[str]:
    """What each cycle's scheduled run does, done again (each is idempotent): the next meetings of
    every body, the current quarter's reports, the next of every review. Returns what failed."""
    with Session(engine()) as session:
        c = current_constitution(session)
    problems: list[str] = []
    work: list[tuple[str, Callable[[], object]]] = [
        (f"meetings of {b.id}", partial(plan_meetings, clock, b.id))
        for b in c.bodies
        if b.cadence is not None
    ]
    work.append(("quarterly reports", partial(open_quarter, clock, "current")))
    work += [(f"review {r.id}", partial(open_next_review, clock, r.id)) for r in c.reviews]
    for what, do in work:
        try:
            do()
        except WctError as exc:
            problems.append(f"{what}: {exc}")
    return problems


# --- the cycles ------------------------------------------------------------------------------


def _plan(clock: Clock, body: str, day: date) -> meetings.MeetingPlanned:
    return command(clock, lambda uow: meetings.plan_meeting(uow, body_id=body, day=day))


def plan_meetings(clock: Clock, body: str) -> list[meetings.MeetingPlanned]:
    """The body's next meetings by its cadence, planned (again: the same meeting is kept)."""
    with Session(engine()) as session:
        c = current_constitution(session)
    days = meetings.next_meeting_days(c, body, clock.now(), MEETINGS_AHEAD)
    return [_plan(clock, body, d) for d in days]


def open_quarter(clock: Clock, period: str) -> reports.ReportsOpened:
    name = reports.period_of(clock.now().date()) if period == "current" else period
    return command(clock, lambda uow: reports.open_reports(uow, period=name))


def open_next_review(clock: Clock, kind: str, year: int | None = None) -> reviews.ReviewOpened:
    if year is None:
        with Session(engine()) as session:
            year = reviews.next_due_year(current_constitution(session), kind, clock.now().date())
    due_year = year
    return command(clock, lambda uow: reviews.open_review(uow, kind=kind, year=due_year))


@flow(
    name="meeting-cycle",
    flow_run_name="meetings-{body}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
async def meeting_cycle(
    body: str, day: date | None = None, as_of: datetime | None = None, timers: bool = True
) -> list[dict[str, Any]]:
    """20.4.1 / 21.4.1 / 22.4.1: plan the body's meeting on `day` (default: its next meetings by
    its cadence) and set a timer for each of its steps."""
    clock = clock_at(as_of)
    planned = plan_meetings(clock, body) if day is None else [_plan(clock, body, day)]
    if timers:
        for p in planned:
            await schedule_timers(p.steps, as_of=as_of)
    return [p.as_dict() for p in planned]


@flow(
    name="quarterly-reports",
    flow_run_name="reports-{period}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
async def quarterly_reports(
    period: str = "current", as_of: datetime | None = None, timers: bool = True
) -> dict[str, Any]:
    """22.2.1, 11.4.1: open the quarter's reports (default: the current quarter) with timers."""
    opened = open_quarter(clock_at(as_of), period)
    if timers:
        await schedule_timers(opened.steps, as_of=as_of)
    return opened.as_dict()


@flow(
    name="annual-review",
    flow_run_name="review-{kind}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
async def annual_review(
    kind: str, year: int | None = None, as_of: datetime | None = None, timers: bool = True
) -> dict[str, Any]:
    """19.1, 11.4.2, 11.3.4, 17.2, 20.3.5, 13.3, 11.2.4: open the review due next (or in `year`)
    with its notice, reminders and escalation as timers."""
    opened = open_next_review(clock_at(as_of), kind, year)
    if timers:
        await schedule_timers(opened.steps, as_of=as_of)
    return opened.as_dict()


# --- recording a meeting from the Prefect UI (the parameters render as a form) ----------------


class DeclarationForm(BaseModel):
    who: str = Field(description="Email of the member declaring.")
    item: int = Field(ge=1, description="Agenda item number.")
    nature: str


class MotionForm(BaseModel):
    text: str
    item: int | None = Field(default=None, description="Agenda item number, if any.")
    votes_for: list[str] = Field(default_factory=list, description="Emails.")
    votes_against: list[str] = Field(default_factory=list, description="Emails.")
    abstentions: list[str] = Field(default_factory=list, description="Emails.")
    consensus: bool = False
    casting_vote: Literal["none", "for", "against"] = "none"
    chaired_by: str | None = Field(default=None, description="Email, if not the chair/deputy.")


class MeetingRecord(BaseModel):
    body: str
    day: date
    present: list[str] = Field(description="Emails of those present.")
    apologies: list[str] = Field(default_factory=list)
    declarations: list[DeclarationForm] = Field(default_factory=list)
    motions: list[MotionForm] = Field(default_factory=list)


def _motion(form: MotionForm) -> meetings.MotionInput:
    votes = dict.fromkeys(form.votes_for, Vote.FOR)
    votes |= dict.fromkeys(form.votes_against, Vote.AGAINST)
    votes |= dict.fromkeys(form.abstentions, Vote.ABSTAIN)
    return meetings.MotionInput(
        text=form.text,
        item=form.item,
        votes=votes,
        consensus=form.consensus,
        casting_vote=None if form.casting_vote == "none" else Vote(form.casting_vote),
        chaired_by=form.chaired_by,
    )


@flow(name="record-meeting", flow_run_name="record-{record.body}-{record.day}")
async def record_meeting(record: MeetingRecord, as_of: datetime | None = None) -> dict[str, Any]:
    """After a meeting: attendance, declarations (18.1) and votes, each motion decided by 6.2;
    the draft minutes become an artifact."""
    clock = clock_at(as_of)

    def apply(uow: UnitOfWork) -> meetings.MinutesDraft:
        meeting = meetings.find_meeting(uow.session, record.body, record.day)
        return meetings.record_meeting(
            uow,
            meeting_id=meeting.id or 0,
            present=record.present,
            apologies=record.apologies,
            declarations=[
                meetings.DeclarationInput(d.who, d.item, d.nature) for d in record.declarations
            ],
            motions=[_motion(m) for m in record.motions],
        )

    draft = command(clock, apply, actor="system:record-meeting")
    await publish_minutes_artifact(draft.meeting_id)
    return draft.as_dict()
