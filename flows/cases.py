"""Event-driven cases as Prefect flow runs: open the case, then wait (suspended, with a form in the
UI) for the person it waits on; deadlines are separate timer runs that escalate and wake it.

A case run re-runs from the top each time it is resumed (that is how `suspend_flow_run` works),
so every step here is idempotent: opening a case twice returns the same case, and each wait has a
key made of the case's audit revision, so an answer is applied once and a stale wait is replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from prefect import flow, get_run_logger
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
from sqlmodel import Session, select

from flows.runtime import RETRIES, RETRY_DELAY, clock_at, engine, until_due
from flows.signals import relay
from models import accountability, approvals, disputes, risks
from models.audit import revision
from models.case_steps import HANDLERS, lock_case_then_step, run_case_step, run_due
from models.cases import SUBJECT_PREFIX, Awaiting, Form, awaiting, list_cases
from models.casework import StepStatus
from models.clock import SystemClock
from models.disputes import DisputeStage
from models.errors import Refused, WctError
from models.permissions import Actor, find_actor
from models.tables import Step
from models.uow import UnitOfWork

T = TypeVar("T")
CASE_TAG = "wct-case"
WAIT_SECONDS = 400 * 24 * 3600  # a wait outlives any stage; deadlines are timers, not this
STEP_DEPLOYMENT = "case-step/case-step"


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


def apply_answer(
    uow: UnitOfWork, actor: Actor, kind: str, case_id: int, form: Form, a: Any
) -> None:
    """Hand a form's answer to the command it stands for; the command decides."""
    match form:
        case Form.DISPUTE_OUTCOME:
            stage = DisputeStage(awaiting_stage(uow.session, kind, case_id))
            disputes.record_outcome(
                uow,
                actor=actor,
                dispute_id=case_id,
                stage=stage,
                resolved=a.decision == "resolved",
                note=a.note or a.decision,
            )
        case Form.ADR_RESULT:
            disputes.record_adr(
                uow,
                actor=actor,
                dispute_id=case_id,
                provider=a.provider,
                resolved=a.decision == "resolved",
                note=a.note or a.decision,
            )
        case Form.DEADLINE_ANSWER:
            accountability.answer_deadline(
                uow,
                actor=actor,
                case_id=case_id,
                accept=a.decision == "accept",
                counter=a.counter_deadline if a.decision == "counter" else None,
            )
        case Form.FORMAL_RESPONSE:
            accountability.record_response(uow, actor=actor, case_id=case_id, response=a.response)
        case Form.RESPONSE_JUDGEMENT:
            accountability.conclude(
                uow,
                actor=actor,
                case_id=case_id,
                accept=a.decision == "accept",
                note=a.note or a.decision,
                new_deadline=a.new_deadline,
            )
        case Form.RISK_ACTION:
            if a.decision == "review":
                risks.review_risk(
                    uow, actor=actor, risk_id=case_id, likelihood=a.likelihood, impact=a.impact
                )
            elif a.decision == "escalate":
                risks.escalate_risk(uow, actor=actor, risk_id=case_id, reason=a.reason)
            else:
                risks.close_risk(uow, actor=actor, risk_id=case_id)
        case Form.BOARD_ASSESSMENT:
            risks.assess_risk(uow, actor=actor, risk_id=case_id, assessment=a.assessment)
        case Form.APPROVAL_DECISION:
            approvals.decide_approval(
                uow,
                actor=actor,
                request_id=case_id,
                approve=a.decision == "approve",
                note=a.note or a.decision,
            )


def awaiting_stage(session: Session, kind: str, case_id: int) -> str:
    wait = awaiting(session, kind, case_id)
    if wait is None:
        raise Refused(f"{kind} #{case_id} is closed")
    return wait.stage


# --- running commands -----------------------------------------------------------------------


def _as(who: str, command: Callable[[UnitOfWork, Actor], T]) -> T:
    """Run a command as the member `who`, in one transaction, then signal what it changed."""
    with UnitOfWork(engine(), clock=SystemClock(), actor="unknown") as uow:
        actor = find_actor(uow.session, who)
        uow.actor = actor.pseudonym
        result = command(uow, actor)
        uow.commit()
    relay(engine())
    return result


# --- timers ----------------------------------------------------------------------------------


async def schedule_timers(subject: str) -> int:
    """One future-scheduled `case-step` run per pending step of the case: durable timers the
    coordinator sees in the UI, created once per step key however often this runs."""
    with Session(engine()) as session:
        steps = session.exec(
            select(Step).where(Step.subject == subject, Step.status == StepStatus.PENDING)
        ).all()
    for step in steps:
        await arun_deployment(
            STEP_DEPLOYMENT,
            parameters={"key": step.key},
            scheduled_time=step.due_at,
            idempotency_key=step.key,
            flow_run_name=step.key.replace(":", "-"),
            tags=[CASE_TAG, subject],
            timeout=0,
            as_subflow=False,
        )
    return len(steps)


async def wake(subject: str) -> int:
    """Resume the suspended case runs of `subject` so they re-read the case."""
    woken = 0
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[CASE_TAG, subject]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )
        for run in runs:
            result = await client.resume_flow_run(run.id)
            woken += result.status.value == "ACCEPT"
    return woken


@flow(name="case-step", log_prints=True, retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
async def case_step(key: str, as_of: datetime | None = None) -> bool:
    """A case deadline comes due: apply its rule once, then wake the case run."""
    logger = get_run_logger()
    await until_due(key, as_of)
    clock = clock_at(as_of)
    with UnitOfWork(engine(), clock=clock, actor="system:timer") as uow:
        step = lock_case_then_step(uow.session, key)
        if step is None or step.kind not in HANDLERS:
            logger.info("step %s: nothing to do (not a pending case step)", key)
            return False
        if clock.now() < step.due_at:
            logger.info("step %s is not due until %s", key, step.due_at)
            return False
        result = run_case_step(uow, step)
        acted = result == "acted"
        subject = step.subject
        uow.commit()
    relay(engine())
    await schedule_timers(subject)
    await wake(subject)
    logger.info("step %s: %s", key, result)
    return acted


@flow(name="case-reconcile", log_prints=True, retries=RETRIES, retry_delay_seconds=RETRY_DELAY)
async def case_reconcile(as_of: datetime | None = None) -> list[str]:
    """The sweep: act on any case step whose time passed without its timer run (server down, run
    deleted), and wake case runs waiting on a stale revision (e.g. answered from the CLI)."""
    clock = clock_at(as_of)
    acted = run_due(engine(), clock, actor="system:reconcile")
    relay(engine())
    subjects = {":".join(key.split(":")[:2]) for key in acted}
    subjects |= await _stale_subjects()
    for subject in sorted(subjects):
        await schedule_timers(subject)
        await wake(subject)
    await _follow_unwatched()
    return acted


LIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


async def _follow_unwatched() -> int:
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
                    tags=FlowRunFilterTags(all_=[CASE_TAG, subject]),
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
                tags=[CASE_TAG, subject],
                timeout=0,
                as_subflow=False,
            )
            started += 1
    return started


async def _stale_subjects() -> set[str]:
    stale: set[str] = set()
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[CASE_TAG]),
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


# --- the case run: wait, apply, repeat -------------------------------------------------------


class CaseSummary(BaseModel):
    kind: str
    case_id: int
    stage: str
    closed: bool


async def follow(kind: str, case_id: int) -> CaseSummary:
    """Wait on whoever the case waits on, apply each answer through its command, until closed."""
    logger = get_run_logger()
    subject = f"{SUBJECT_PREFIX[kind]}:{case_id}"
    await _label_run(f"{kind.replace('_', '-')}-{case_id}", subject)
    elder = await _older_follower(subject)
    if elder is not None:  # the same trigger twice: one case, one run waiting on it
        logger.info("case %s is already followed by run %s", subject, elder)
        return CaseSummary(kind=kind, case_id=case_id, stage=f"followed by {elder}", closed=False)
    await schedule_timers(subject)
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

        def apply(uow: UnitOfWork, actor: Actor, form: Form = wait.form, a: Any = answer) -> None:
            apply_answer(uow, actor, kind, case_id, form, a)

        try:
            _as(answer.your_email, apply)
        except WctError as exc:  # refused: nothing changed; say why and wait again
            logger.warning("answer from %r refused: %s", answer.your_email, exc)
            continue
        await schedule_timers(subject)


async def _older_follower(subject: str) -> str | None:
    """The name of a live run that followed this case before this one, if any."""
    run_id = current_run.id
    async with get_client() as client:
        me = await client.read_flow_run(run_id) if run_id else None
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[CASE_TAG, subject]),
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
        tags = sorted(set(run.tags) | {CASE_TAG, subject})
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


@flow(name="dispute", flow_run_name="dispute-{request.title}")
async def dispute_case(request: OpenDispute) -> CaseSummary:
    """18.2: a dispute between partners, from informal discussion to ADR."""
    opened = _as(
        request.opened_by,
        lambda uow, actor: disputes.open_dispute(
            uow, actor=actor, title=request.title, parties=request.parties, note=request.note
        ),
    )
    return await follow("dispute", opened.dispute_id)


@flow(name="call-to-account", flow_run_name="call-to-account-{request.organisation}")
async def call_to_account_case(request: CallToAccountRequest) -> CaseSummary:
    """11.5.1: the WSCB calls a partner to account; the response deadline is agreed mutually."""
    kind = (
        accountability.AccountKind.EVIDENCE_REQUEST
        if request.evidence_request
        else accountability.AccountKind.CALL_TO_ACCOUNT
    )
    opened = _as(
        request.opened_by,
        lambda uow, actor: accountability.open_call(
            uow,
            actor=actor,
            organisation=request.organisation,
            evidence=request.evidence,
            proposed_deadline=request.proposed_deadline,
            kind=kind,
        ),
    )
    return await follow(kind.value, opened.case_id)


@flow(name="risk", flow_run_name="risk-{request.title}")
async def risk_case(request: RaiseRisk) -> CaseSummary:
    """16.1: a risk managed by the Executive, escalated to the Board when it must be."""
    raised = _as(
        request.raised_by,
        lambda uow, actor: risks.raise_risk(
            uow,
            actor=actor,
            title=request.title,
            owner=request.owner,
            likelihood=request.likelihood,
            impact=request.impact,
        ),
    )
    return await follow("risk", raised.risk_id)


@flow(name="approval", flow_run_name="approval-{request.gate}")
async def approval_case(request: RequestApproval) -> CaseSummary:
    """11.3.5 / 21.1.1: a proposal waits on another body's approval."""
    asked = _as(
        request.requested_by,
        lambda uow, actor: approvals.request_approval(
            uow, actor=actor, gate_id=request.gate, title=request.title
        ),
    )
    return await follow("approval", asked.request_id)


@flow(name="follow-case", flow_run_name="follow-{kind}-{case_id}")
async def follow_case(kind: str, case_id: int) -> CaseSummary:
    """Follow a case opened elsewhere (the CLI) as a visible run."""
    return await follow(kind, case_id)
