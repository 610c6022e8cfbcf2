"""The recurring cycles as Prefect flows: meetings, quarterly reports, annual reviews, each step a
durable timer (a future-scheduled `step` run keyed by the step, flows/timers.py); what the sweep
re-plans (flows/steps.py).

Flows orchestrate only: every rule is a command in `models/`; a flow calls it in one unit of work,
turns the steps it returns into timer runs, and shows each body's meeting papers (the agenda pack,
then the minutes) and the overdue list as markdown artifacts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import partial
from typing import Any, Literal

from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel, Field
from sqlmodel import Session

from flows.runtime import RETRIES, RETRY_DELAY, clock_at, engine, partnership_time, wct_flow
from flows.signals import act
from flows.timers import schedule_timers
from models import instructions, meetings, reports, reviews
from models.clock import Clock, local
from models.commands import current_constitution
from models.decision import Vote
from models.errors import WctError
from models.meetings.papers import meeting_papers
from models.permissions import SYSTEM_CYCLE
from models.queries import overdue_items
from models.steps.engine import StepRun
from notifications.papers import papers_markdown

CYCLE_TAG = "wct-cycle"


# --- artifacts (display only: what the commands decided) -------------------------------------


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def overdue_markdown(session: Session, now: datetime) -> tuple[str, int]:
    rows = [f"| {_cell(i.what)} | {_cell(i.key)} | {i.due} |" for i in overdue_items(session, now)]
    text = "\n".join(
        [
            f"# Overdue at {local(now):%d %B %Y %H:%M}",
            "",
            "| What | Key | Was due |",
            "|---|---|---|",
        ]
        + (rows or ["| - | nothing overdue | - |"])
    )
    return text, len(rows)


def _slug(key: str) -> str:
    return key.replace(":", "-").lower()


def papers_key(body_id: str) -> str:
    """`board-papers`: the one artifact of a body's meetings, whose latest version is the current
    papers (the agenda pack, then the draft minutes, then the minutes) and whose versions are
    their history."""
    return _slug(f"{body_id}-papers")


async def publish_papers_artifact(meeting_id: int) -> None:
    """The meeting's papers as they stand, as the body's papers artifact: the agenda pack (the
    agenda with its items, reports, apologies and open actions) before the meeting, the minutes
    (attendance, declarations of interest, each decision and how 6.2 decided it, the actions)
    once it is recorded. One artifact for all of them: a second and third artifact of the
    agenda and the minutes alone would repeat what the papers say, at a request each."""
    with Session(engine()) as session:
        papers = meeting_papers(session, meeting_id)
    await acreate_markdown_artifact(
        papers_markdown(papers),
        key=papers_key(papers.body_id),
        description=(
            f"{papers.body}: {papers.title.lower()}, {papers.starts_at:%A} "
            f"{papers.starts_at.day} {papers.starts_at:%B %Y}"
        ),
    )


async def publish_step_artifacts(runs: Sequence[StepRun]) -> None:
    """The papers of a meeting whose items deadline or agenda step acted, as its artifact."""
    for run in runs:
        if run.result == "acted" and run.kind in (meetings.AGENDA, meetings.ITEMS_DEADLINE):
            await publish_papers_artifact(run.subject_id)


async def publish_overdue_list(now: datetime) -> int:
    """The overdue list as an artifact; returns how many items are on it."""
    with Session(engine()) as session:
        text, overdue = overdue_markdown(session, now)
    await acreate_markdown_artifact(text, key="overdue-list", description="Overdue")
    return overdue


# --- re-planning (what the sweep does first) -------------------------------------------------


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
    return act(clock, SYSTEM_CYCLE, instructions.PlanMeeting(body=body, day=day))


def plan_meetings(clock: Clock, body: str) -> list[meetings.MeetingPlanned]:
    """The body's next meetings by its cadence, planned (again: the same meeting is kept)."""
    with Session(engine()) as session:
        c = current_constitution(session)
    days = meetings.next_meeting_days(c, body, clock.now(), c.planning.meetings_ahead)
    return [_plan(clock, body, d) for d in days]


def open_quarter(clock: Clock, period: str) -> reports.ReportsOpened:
    """Open `period`'s reports; "current": the period each report is in today (its months)."""
    if period != "current":
        return act(clock, SYSTEM_CYCLE, instructions.OpenReports(period=period))
    with Session(engine()) as session:
        names = reports.current_periods(current_constitution(session), clock.now().date())
    opened = [act(clock, SYSTEM_CYCLE, instructions.OpenReports(period=n)) for n in names]
    return reports.ReportsOpened(
        ", ".join(o.period for o in opened),
        [key for o in opened for key in o.created],
        [step for o in opened for step in o.steps],
    )


def open_next_review(clock: Clock, kind: str, year: int | None = None) -> reviews.ReviewOpened:
    if year is None:
        with Session(engine()) as session:
            year = reviews.next_due_year(current_constitution(session), kind, clock.now().date())
    return act(clock, SYSTEM_CYCLE, instructions.OpenReview(kind=kind, year=year))


@wct_flow(
    "meeting-cycle",
    flow_run_name="meetings-{body}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
async def meeting_cycle(
    body: str, day: date | None = None, as_of: datetime | None = None, timers: bool = True
) -> list[dict[str, Any]]:
    """20.4.1 / 21.4.1 / 22.4.1: plan the body's meeting on `day` (default: its next meetings by
    its cadence), set a timer for each of its steps, and show the next meeting's papers (the
    artifact `BODY-papers`)."""
    with partnership_time():
        clock = clock_at(as_of)
        planned = plan_meetings(clock, body) if day is None else [_plan(clock, body, day)]
        if timers:
            for p in planned:
                await schedule_timers(p.steps, as_of=as_of)
        if planned:  # the run shows the next meeting's papers as they stand
            await publish_papers_artifact(planned[0].meeting_id)
        return [p.as_dict() for p in planned]


@wct_flow(
    "quarterly-reports",
    flow_run_name="reports-{period}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
async def quarterly_reports(
    period: str = "current", as_of: datetime | None = None, timers: bool = True
) -> dict[str, Any]:
    """22.2.1, 11.4.1: open the quarter's reports (default: the current quarter) with timers."""
    with partnership_time():
        opened = open_quarter(clock_at(as_of), period)
        if timers:
            await schedule_timers(opened.steps, as_of=as_of)
        return opened.as_dict()


@wct_flow(
    "annual-review",
    flow_run_name="review-{kind}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY,
)
async def annual_review(
    kind: str, year: int | None = None, as_of: datetime | None = None, timers: bool = True
) -> dict[str, Any]:
    """19.1, 11.4.2, 11.3.4, 17.2, 20.3.5, 13.3, 11.2.4: open the review due next (or in `year`)
    with its notice, reminders and escalation as timers."""
    with partnership_time():
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


class ActionForm(BaseModel):
    item: int | None = Field(default=None, ge=1, description="Agenda item number it is under.")
    text: str = Field(description="What is to be done.")
    owner: str = Field(description="Email of the member who owns it.")
    due: str = Field(description="Due date, YYYY-MM-DD, after the meeting.")


class MeetingRecord(BaseModel):
    body: str
    day: date
    recorded_by: str = Field(description="Your email: the chair, the deputy or a coordinator.")
    present: list[str] = Field(description="Emails of those present.")
    apologies: list[str] = Field(default_factory=list)
    declarations: list[DeclarationForm] = Field(default_factory=list)
    motions: list[MotionForm] = Field(default_factory=list)
    actions: list[ActionForm] = Field(default_factory=list)


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


def recording(record: MeetingRecord, meeting_id: int) -> instructions.RecordMeeting:
    """The form's record as the command that records the meeting."""
    return instructions.RecordMeeting(
        meeting_id=meeting_id,
        present=record.present,
        apologies=record.apologies,
        declarations=[
            meetings.DeclarationInput(d.who, d.item, d.nature) for d in record.declarations
        ],
        motions=[_motion(m) for m in record.motions],
        actions=[
            meetings.ActionInput(text=a.text, owner=a.owner, due=a.due, item=a.item)
            for a in record.actions
        ],
    )


@wct_flow(
    "record-meeting",
    prefect_validates=True,
    flow_run_name="record-{record.body}-{record.day}",
)
async def record_meeting(record: MeetingRecord, as_of: datetime | None = None) -> dict[str, Any]:
    """After a meeting, as the member who records it: attendance, declarations (18.1) and votes,
    each motion decided by 6.2; the papers artifact becomes the draft minutes."""
    with partnership_time():
        with Session(engine()) as session:
            meeting_id = meetings.find_meeting(session, record.body, record.day).id or 0
        draft = act(clock_at(as_of), record.recorded_by, recording(record, meeting_id))
        await publish_papers_artifact(draft.meeting_id)
        return draft.as_dict()
