"""The step engine: one path for every step of every kind, whether its timer run fires it
(`run_step`) or the sweep finds it due (`run_due`).

In one transaction a step is fired once:

    lock its subject, then the step --> pending and due? --> late policy --> act --> done
                                             |                   \\--> skipped (audited)
                                             \\--> not due, or already done / settled / skipped

The locks are taken in the order every command takes them (the subject row, then its steps), so a
timer and a member's answer never deadlock, and two workers firing the same step act once.
Firing is a command (`FireStep`) given by the system through `models.service.execute`, like every
other change: the constitution's `step.fire` grant, one unit of work, the system audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typing_extensions import override

from models.audit import STEP_SKIPPED
from models.casework import StepStatus
from models.clock import Clock
from models.constitution import Action
from models.errors import InvalidInput, NotFound
from models.permissions import SWEEP, TIMER, Principal, System
from models.service import Command, execute
from models.steps.kind import GRACE, Firing, StepKind, Subject
from models.steps.registry import KINDS, kind_of
from models.tables import Step
from models.uow import UnitOfWork

Fired = Literal["acted", "noop", "skipped"]


@dataclass(frozen=True)
class StepRun:
    """What happened when a step's time came: acted, no-op (satisfied), skipped (too late to be
    of use), not due, or the status of a step no longer pending (done, settled, skipped)."""

    key: str
    result: str
    kind: str
    subject_type: Subject
    subject_id: int

    @property
    def subject(self) -> str:
        return self.subject_type.of(self.subject_id)

    @property
    def changed_a_case(self) -> bool:
        """A case step that acted: the case's run re-reads it, and new deadlines get timers."""
        return self.result == "acted" and self.subject_type.is_case

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "result": self.result, "kind": self.kind, "subject": self.subject}


@dataclass(frozen=True)
class Verdict:
    """A due step's fate: skipped for `skip`, or acted on (saying it was due at `was_due`)."""

    skip: str | None = None
    was_due: datetime | None = None


def judge(session: Session, kind: StepKind[Any], step: Step, now: datetime) -> Verdict:
    """What a due step does at `now` by its kind's late policy: skip it, or act (late or not)."""
    for check in kind.late.skip_if:
        reason = check(session, step, now)
        if reason is not None:
            return Verdict(skip=reason)
    late = kind.late.says_late and now - step.due_at > GRACE
    return Verdict(was_due=step.due_at if late else None)


def fire(uow: UnitOfWork, kind: StepKind[Any], step: Step) -> Fired:
    """Act on a pending step whose time has come (the caller holds its locks) by its kind's late
    policy: a skipped step is marked `skipped` and audited and sends nothing; otherwise its kind
    acts (told when the step was due, if its messages must say late) and the step is done."""
    now = uow.clock.now()
    params = kind.spec.load(step.key, step.params)
    verdict = judge(uow.session, kind, step, now)
    if verdict.skip is not None:
        _finish(uow.session, step, StepStatus.SKIPPED, now)
        uow.record(
            STEP_SKIPPED,
            step.subject,
            before=None,
            after={
                "step": step.key,
                "kind": step.kind,
                "due_at": step.due_at.isoformat(),
                "reason": verdict.skip,
            },
        )
        return "skipped"
    acted = kind.act(uow, Firing(step.key, step.subject_id, params, verdict.was_due))
    _finish(uow.session, step, StepStatus.DONE, now)
    return "acted" if acted else "noop"


def _finish(session: Session, step: Step, status: StepStatus, now: datetime) -> None:
    step.status, step.done_at = status, now
    session.add(step)


@dataclass(frozen=True, kw_only=True)
class FireStep(Command[StepRun]):
    """A step's time has come: act on it once, if it is pending and due, by its kind's rules.
    Given by the system (its timer run, or the sweep), through `execute` like every change."""

    action = Action.STEP_FIRE
    key: str

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> StepRun:
        found = uow.session.exec(
            select(Step.kind, Step.subject_type, Step.subject_id).where(Step.key == self.key)
        ).first()
        if found is None:
            raise NotFound(f"no step '{self.key}'")
        name, subject_type, subject_id = found
        kind = kind_of(name)
        if subject_type != kind.subject:
            raise InvalidInput(f"step '{self.key}' is about a {subject_type}, not a {kind.subject}")
        kind.lock(uow.session, subject_id)
        step = uow.session.exec(
            select(Step)
            .where(Step.key == self.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if step.status != StepStatus.PENDING:
            result: str = step.status
        elif step.due_at > uow.clock.now():
            result = "not_due"
        else:
            result = fire(uow, kind, step)
        return StepRun(self.key, result, name, kind.subject, subject_id)


def run_step(engine: Engine, clock: Clock, key: str, *, actor: System = TIMER) -> StepRun:
    """Act on one step by key, in its own transaction, if it is pending and due: what its timer
    run does. Two workers firing the same step act once."""
    return execute(engine, clock, actor, FireStep(key=key)).result


def overdue_steps(session: Session, *, now: datetime) -> list[Step]:
    """Pending steps of every registered kind whose due time has passed, oldest first."""
    query = select(Step).where(
        Step.status == StepStatus.PENDING, col(Step.due_at) <= now, col(Step.kind).in_(list(KINDS))
    )
    return list(session.exec(query.order_by(col(Step.due_at), col(Step.id))).all())


def run_due(engine: Engine, clock: Clock, *, actor: System = SWEEP) -> list[StepRun]:
    """Act on every step whose due time passed without its timer run, of every kind, in due
    order, each in its own transaction: what the sweep does. A step another worker took
    meanwhile is reported as it was left (done, settled, skipped), never acted on twice."""
    with Session(engine) as session:
        keys = [s.key for s in overdue_steps(session, now=clock.now())]
    return [run_step(engine, clock, key, actor=actor) for key in keys]
