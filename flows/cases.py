"""Event-driven cases as Prefect flow runs: open the case, then wait (suspended, with a form in the
UI) for the person it waits on; deadlines are separate timer runs that escalate and wake it.

Each case flow takes the injected clock as the cycle flows do: `as_of` (None: the wall clock) is
when the case is opened and what its timers are set by; `follow=False` opens the case and returns
without waiting (the simulation, whose members answer with commands; under `wct up` the sweep
then starts a follower, as for a case opened from the CLI); `timers=False` sets no timer runs
(the simulation plays them itself).

A case run re-runs from the top each time it is resumed (that is how `suspend_flow_run` works),
so every step here is idempotent: opening a case twice returns the same case, and each wait has a
key made of the case's audit revision, so an answer is applied once and a stale wait is replaced.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.flow_runs import arun_deployment
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run as current_run
from pydantic import BaseModel, Field
from sqlmodel import Session

from flows.runtime import clock_at, engine, partnership_time, wct_flow
from flows.signals import act
from flows.timers import database_run_tag, foreign_database_tag, schedule_subject_timers
from models import accountability, instructions
from models.audit import revision
from models.cases import SUBJECT_PREFIX, Awaiting, Form, awaiting, list_cases, open_waits
from models.clock import Clock, SystemClock
from models.errors import NotFound, WctError
from models.service import Command

T = TypeVar("T")
CASE_TAG = "wct-case"


def case_tags(subject: str | None = None) -> list[str]:
    """What a case run is tagged with: a case run, of this database (a Prefect server may hold
    another database's runs: tests, simulations), following `subject`."""
    return [CASE_TAG, database_run_tag(), *([subject] if subject else [])]


WAIT_SECONDS = 400 * 24 * 3600  # a wait outlives any stage; deadlines are timers, not this


# --- forms the UI shows while a case waits ---------------------------------------------------

Decision = Literal["no answer", "resolved", "unresolved"]


class _Answer(RunInput):
    your_email: str = Field(default="", description="Your email as in the members list.")


class DisputeOutcomeForm(_Answer):
    decision: Decision = "no answer"
    note: str = ""


class AdrResultForm(_Answer):
    provider: str = ""
    decision: Decision = "no answer"
    note: str = ""


class DeadlineAnswerForm(_Answer):
    decision: Literal["no answer", "accept", "counter"] = "no answer"
    counter_deadline: date | None = None


class FormalResponseForm(_Answer):
    response: str = ""


class ResponseJudgementForm(_Answer):
    decision: Literal["no answer", "accept", "reopen"] = "no answer"
    note: str = ""
    new_deadline: date | None = None


class RiskActionForm(_Answer):
    decision: Literal["no answer", "review", "escalate", "close"] = "no answer"
    likelihood: int = Field(default=0, ge=0, le=5)
    impact: int = Field(default=0, ge=0, le=5)
    reason: str = ""


class BoardAssessmentForm(_Answer):
    assessment: str = ""


class ApprovalDecisionForm(_Answer):
    decision: Literal["no answer", "approve", "refuse"] = "no answer"
    note: str = ""


FORMS: dict[Form, type[_Answer]] = {
    Form.DISPUTE_OUTCOME: DisputeOutcomeForm,
    Form.ADR_RESULT: AdrResultForm,
    Form.DEADLINE_ANSWER: DeadlineAnswerForm,
    Form.FORMAL_RESPONSE: FormalResponseForm,
    Form.RESPONSE_JUDGEMENT: ResponseJudgementForm,
    Form.RISK_ACTION: RiskActionForm,
    Form.BOARD_ASSESSMENT: BoardAssessmentForm,
    Form.APPROVAL_DECISION: ApprovalDecisionForm,
}


def _is_wake(answer: _Answer) -> bool:
    """A resume with no answer (a timer or the sweep woke the run): nothing to apply."""
    decision = getattr(answer, "decision", None)
    if decision is not None:
        return bool(decision == "no answer")
    text = getattr(answer, "response", None) or getattr(answer, "assessment", None)
    return not text


def answer_command(case_id: int, form: Form, a: Any) -> Command[object]:
    """The command a form's answer stands for; the command decides."""
    match form:
        case Form.DISPUTE_OUTCOME:
            return instructions.RecordDisputeOutcome(
                dispute_id=case_id,
                stage=None,  # the stage the dispute is at when the answer is applied
                resolved=a.decision == "resolved",
                note=a.note or a.decision,
            )
        case Form.ADR_RESULT:
            return instructions.RecordAdr(
                dispute_id=case_id,
                provider=a.provider,
                resolved=a.decision == "resolved",
                note=a.note or a.decision,
            )
        case Form.DEADLINE_ANSWER:
            return instructions.AnswerDeadline(
                case_id=case_id,
                accept=a.decision == "accept",
                counter=a.counter_deadline if a.decision == "counter" else None,
            )
        case Form.FORMAL_RESPONSE:
            return instructions.RespondToCall(case_id=case_id, response=a.response)
        case Form.RESPONSE_JUDGEMENT:
            return instructions.JudgeResponse(
                case_id=case_id,
                accept=a.decision == "accept",
                note=a.note or a.decision,
                new_deadline=a.new_deadline,
            )
        case Form.RISK_ACTION:
            if a.decision == "review":
                return instructions.ReviewRisk(
                    risk_id=case_id, likelihood=a.likelihood, impact=a.impact
                )
            if a.decision == "escalate":
                return instructions.EscalateRisk(risk_id=case_id, reason=a.reason)
            return instructions.CloseRisk(risk_id=case_id)
        case Form.BOARD_ASSESSMENT:
            return instructions.AssessRisk(risk_id=case_id, assessment=a.assessment)
        case Form.APPROVAL_DECISION:
            return instructions.DecideApproval(
                request_id=case_id, approve=a.decision == "approve", note=a.note or a.decision
            )
    raise NotFound(f"no command answers the form '{form}'")


# --- running commands -----------------------------------------------------------------------


def _as(clock: Clock, who: str, command: Command[T]) -> T:
    """Run a command as the member `who` by `clock`, and relay what it changed."""
    return act(clock, who, command)


# --- timers and wakes (the step flow and the sweep call these, flows/steps.py) ---------------


async def wake(subject: str) -> int:
    """Resume the suspended case runs of `subject` so they re-read the case."""
    woken = 0
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=case_tags(subject)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )
        for run in runs:
            result = await client.resume_flow_run(run.id)
            woken += result.status.value == "ACCEPT"
    return woken


async def follow_up(subjects: Iterable[str], *, as_of: datetime | None = None) -> int:
    """Cases that moved on (a step acted, or answered elsewhere): timers for their new steps,
    and their waiting runs woken to re-read them. Returns how many runs were woken."""
    woken = 0
    for subject in sorted(set(subjects)):
        await schedule_subject_timers(subject, as_of=as_of)
        woken += await wake(subject)
    return woken


LIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


async def follow_unwatched() -> int:
    """Every open case is a visible run: start a follower for a case opened elsewhere (the CLI)
    or whose run died. Keyed by the case's revision, so one follower per state of the case."""
    with Session(engine()) as session:
        cases = [
            (v.kind, v.id, f"{SUBJECT_PREFIX[v.kind]}:{v.id}")
            for v in list_cases(session, only_open=True)
        ]
        revisions = {subject: revision(session, subject) for _, _, subject in cases}
    started = 0
    async with get_client() as client:
        for kind, case_id, subject in cases:
            live = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=case_tags(subject)),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=LIVE)),
                ),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            if live:
                continue
            await arun_deployment(
                "follow-case/follow-case",
                parameters={"kind": kind, "case_id": case_id},
                idempotency_key=f"follow:{subject}:r{revisions[subject]}",
                tags=case_tags(subject),
                timeout=0,
                as_subflow=False,
            )
            started += 1
    return started


async def stale_subjects() -> set[str]:
    """Cases whose waiting run waits on a revision the case has left (answered elsewhere)."""
    stale: set[str] = set()
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=case_tags()),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=200,
        )
    with Session(engine()) as session:
        for run in runs:
            key = run.state.state_details.pause_key if run.state else None
            subject = next((t for t in run.tags if t != CASE_TAG and ":" in t), None)
            if not key or not subject:
                continue
            if f"-r{revision(session, subject)}-" not in key:
                stale.add(subject)
    return stale


async def describe_waits() -> int:
    """Give every waiting case run of this database the state message a coordinator reads in
    the UI (`Waiting on Merseyside Police until 12 March 2027`): the run cannot say it itself,
    since suspending ends its process. The same Suspended state again, with the message; the
    number of runs whose message changed."""
    changed = 0
    with Session(engine()) as session:
        waits = open_waits(session)
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=case_tags()),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=200,
        )
        for run in runs:
            wait = next((waits[t] for t in run.tags if t in waits), None)
            if run.state is None or wait is None or run.state.message == wait.state_message:
                continue
            again = run.state.model_copy(update={"message": wait.state_message})
            await client.set_flow_run_state(run.id, state=again, force=True)
            changed += 1
    return changed


# --- the case run: wait, apply, repeat -------------------------------------------------------


class CaseSummary(BaseModel):
    kind: str
    case_id: int
    stage: str
    closed: bool


async def follow_to_close(
    kind: str, case_id: int, *, as_of: datetime | None = None, timers: bool = True
) -> CaseSummary:
    """Wait on whoever the case waits on, apply each answer through its command, until closed.
    An answer is applied when it arrives (the wall clock); `as_of` only says how the case's
    timers are set (each carrying its due time as its clock, flows/timers.py)."""
    logger = get_run_logger()
    subject = f"{SUBJECT_PREFIX[kind]}:{case_id}"
    await _label_run(f"{kind.replace('_', '-')}-{case_id}", subject)
    elder = await _older_follower(subject)
    if elder is not None:  # the same trigger twice: one case, one run waiting on it
        logger.info("case %s is already followed by run %s", subject, elder)
        return CaseSummary(kind=kind, case_id=case_id, stage=f"followed by {elder}", closed=False)
    if timers:
        await schedule_subject_timers(subject, as_of=as_of)
    attempt, last_revision = 0, -1
    while True:
        with Session(engine()) as session:
            wait: Awaiting | None = awaiting(session, kind, case_id)
        if wait is None:
            return CaseSummary(kind=kind, case_id=case_id, stage="closed", closed=True)
        if wait.revision != last_revision:
            attempt, last_revision = 0, wait.revision
        form = FORMS[wait.form]
        answer = await asuspend_flow_run(
            wait_for_input=form.with_initial_data(description=wait.description),
            key=f"{subject.replace(':', '-')}-r{wait.revision}-a{attempt}",
            timeout=WAIT_SECONDS,
        )
        attempt += 1
        if _is_wake(answer):
            continue

        try:
            _as(SystemClock(), answer.your_email, answer_command(case_id, wait.form, answer))
        except WctError as exc:  # refused: nothing changed; say why and wait again
            logger.warning("answer from %r refused: %s", answer.your_email, exc)
            continue
        if timers:
            await schedule_subject_timers(subject, as_of=as_of)


async def _older_follower(subject: str) -> str | None:
    """The name of a live run that followed this case before this one, if any."""
    run_id = current_run.id
    async with get_client() as client:
        me = await client.read_flow_run(run_id) if run_id else None
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=case_tags(subject)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=LIVE)),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )
    if me is None or me.created is None:
        return None
    mine = me.created
    older = sorted((r.created, r.name) for r in runs if r.created is not None and r.created < mine)
    return older[0][1] if older else None


async def _label_run(name: str, subject: str) -> None:
    run_id = current_run.id
    if run_id is None:
        return
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        tags = sorted(set(run.tags) | set(case_tags(subject)))
        if run.name != name or set(run.tags) != set(tags):
            await client.update_flow_run(run_id, name=name, tags=tags)


# --- opening a case from the UI (a deployment with typed parameters) -------------------------


class OpenDispute(BaseModel):
    title: str
    parties: list[str] = Field(min_length=2, description="Organisation ids, two or more.")
    opened_by: str = Field(description="Your email as in the members list.")
    note: str = ""


class CallToAccountRequest(BaseModel):
    organisation: str
    evidence: str
    proposed_deadline: date
    opened_by: str = Field(description="Email of the WSCB chair or deputy.")
    evidence_request: bool = False


class RaiseRisk(BaseModel):
    title: str
    owner: str = Field(description="Email of the risk owner.")
    likelihood: int = Field(ge=1, le=5)
    impact: int = Field(ge=1, le=5)
    raised_by: str


class RequestApproval(BaseModel):
    gate: str = Field(description="Approval gate id, e.g. safeguarding-commissioning.")
    title: str
    requested_by: str


def _another_databases(kind: str) -> CaseSummary | None:
    """A run this database must not act on: another database's (a run that one serving process
    left and another, serving the same deployment on a shared Prefect server, picked up). It ends
    at once, before any command, and says so."""
    foreign = foreign_database_tag()
    if foreign is None:
        return None
    get_run_logger().warning(
        "this %s run belongs to database %s, not this one: ended", kind, foreign
    )
    return CaseSummary(kind=kind, case_id=0, stage=f"not this database's ({foreign})", closed=False)


async def opened(
    kind: str,
    case_id: int,
    *,
    as_of: datetime | None,
    follow: bool,
    timers: bool,
) -> CaseSummary:
    """After a case flow's opening command: follow the case until it closes, or (`follow=False`)
    name the run for the case, set its timers and return where the case stands."""
    if follow:
        return await follow_to_close(kind, case_id, as_of=as_of, timers=timers)
    subject = f"{SUBJECT_PREFIX[kind]}:{case_id}"
    await _label_run(f"{kind.replace('_', '-')}-{case_id}", subject)
    if timers:
        await schedule_subject_timers(subject, as_of=as_of)
    with Session(engine()) as session:
        wait = awaiting(session, kind, case_id)
    stage = "closed" if wait is None else wait.stage
    return CaseSummary(kind=kind, case_id=case_id, stage=stage, closed=wait is None)


@wct_flow("dispute", prefect_validates=True, flow_run_name="dispute-{request.title}")
async def dispute_case(
    request: OpenDispute,
    as_of: datetime | None = None,
    follow: bool = True,
    timers: bool = True,
) -> CaseSummary:
    """18.2: a dispute between partners, from informal discussion to ADR."""
    with partnership_time():
        if (elsewhere := _another_databases("dispute")) is not None:
            return elsewhere
        done = _as(
            clock_at(as_of),
            request.opened_by,
            instructions.OpenDispute(
                title=request.title, parties=request.parties, note=request.note
            ),
        )
        return await opened("dispute", done.dispute_id, as_of=as_of, follow=follow, timers=timers)


@wct_flow(
    "call-to-account",
    prefect_validates=True,
    flow_run_name="call-to-account-{request.organisation}",
)
async def call_to_account_case(
    request: CallToAccountRequest,
    as_of: datetime | None = None,
    follow: bool = True,
    timers: bool = True,
) -> CaseSummary:
    """11.5.1: the WSCB calls a partner to account; the response deadline is agreed mutually."""
    with partnership_time():
        if (elsewhere := _another_databases("call_to_account")) is not None:
            return elsewhere
        kind = (
            accountability.AccountKind.EVIDENCE_REQUEST
            if request.evidence_request
            else accountability.AccountKind.CALL_TO_ACCOUNT
        )
        done = _as(
            clock_at(as_of),
            request.opened_by,
            instructions.OpenCallToAccount(
                organisation=request.organisation,
                evidence=request.evidence,
                proposed_deadline=request.proposed_deadline,
                kind=kind,
            ),
        )
        return await opened(kind.value, done.case_id, as_of=as_of, follow=follow, timers=timers)


@wct_flow("risk", prefect_validates=True, flow_run_name="risk-{request.title}")
async def risk_case(
    request: RaiseRisk,
    as_of: datetime | None = None,
    follow: bool = True,
    timers: bool = True,
) -> CaseSummary:
    """16.1: a risk managed by the Executive, escalated to the Board when it must be."""
    with partnership_time():
        if (elsewhere := _another_databases("risk")) is not None:
            return elsewhere
        done = _as(
            clock_at(as_of),
            request.raised_by,
            instructions.RaiseRisk(
                title=request.title,
                owner=request.owner,
                likelihood=request.likelihood,
                impact=request.impact,
            ),
        )
        return await opened("risk", done.risk_id, as_of=as_of, follow=follow, timers=timers)


@wct_flow("approval", prefect_validates=True, flow_run_name="approval-{request.gate}")
async def approval_case(
    request: RequestApproval,
    as_of: datetime | None = None,
    follow: bool = True,
    timers: bool = True,
) -> CaseSummary:
    """11.3.5 / 21.1.1: a proposal waits on another body's approval."""
    with partnership_time():
        if (elsewhere := _another_databases("approval")) is not None:
            return elsewhere
        done = _as(
            clock_at(as_of),
            request.requested_by,
            instructions.RequestApproval(gate=request.gate, title=request.title),
        )
        return await opened("approval", done.request_id, as_of=as_of, follow=follow, timers=timers)


@wct_flow("follow-case", flow_run_name="follow-{kind}-{case_id}")
async def follow_case(kind: str, case_id: int) -> CaseSummary:
    """Follow a case opened elsewhere (the CLI) as a visible run."""
    with partnership_time():
        if (elsewhere := _another_databases(kind)) is not None:
            return elsewhere
        return await follow_to_close(kind, case_id)
