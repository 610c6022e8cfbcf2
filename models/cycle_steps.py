"""What each due step of a recurring cycle does when its time comes (a timer run or the sweep)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import meetings, reports, reviews
from models.casework import StepStatus
from models.clock import Clock
from models.errors import InvalidInput, NotFound
from models.lateness import fire
from models.tables import Step
from models.uow import UnitOfWork

KINDS = (*meetings.STEP_KINDS, *reports.STEP_KINDS, *reviews.STEP_KINDS)


def _subject_id(step: Step) -> int:
    return int(step.subject.split(":", 1)[1])


def act_on_cycle_step(uow: UnitOfWork, step: Step, was_due: datetime | None = None) -> bool:
    """Run the step's rule; True if it changed anything. A satisfied step is a no-op. `was_due`:
    it fires late, and its messages say when it was due."""
    ident = _subject_id(step)
    if step.kind in meetings.STEP_KINDS:
        return meetings.act_on_step(uow, step.kind, ident, was_due=was_due)
    if step.kind in reports.STEP_KINDS:
        return reports.act_on_step(uow, step.kind, step.key, ident, was_due=was_due)
    if step.kind in reviews.STEP_KINDS:
        return reviews.act_on_step(uow, step.kind, step.key, ident, was_due=was_due)
    raise NotFound(f"no handler for step kind '{step.kind}' ({step.key})")


@dataclass(frozen=True)
class StepRun:
    """What happened when a step's time came: acted, no-op (satisfied), skipped (too late to be
    of use), not due, or the status of a step no longer pending (done, settled, skipped)."""

    key: str
    result: str

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "result": self.result}


def run_step(engine: Engine, clock: Clock, key: str, *, actor: str = "system:timer") -> StepRun:
    """Act on one step by key, in its own transaction, if it is pending and due. Locks the row so
    two workers firing the same step act once."""
    with UnitOfWork(engine, clock=clock, actor=actor) as uow:
        found = uow.session.exec(select(Step.subject, Step.kind).where(Step.key == key)).first()
        if found is None:
            raise NotFound(f"no step '{key}'")
        subject, kind = found
        if kind not in KINDS:
            raise InvalidInput(f"step '{key}' is not a cycle step (kind {kind})")
        # Lock what the step is about before the step itself, in the order commands use
        # (meeting/report/review, then its steps), so concurrent workers never deadlock.
        _lock_subject(uow.session, subject)
        step = uow.session.exec(
            select(Step)
            .where(Step.key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if step.status != StepStatus.PENDING:
            return StepRun(key, step.status)
        if step.due_at > clock.now():
            return StepRun(key, "not_due")
        result = fire(uow, step, act_on_cycle_step)
        uow.commit()
    return StepRun(key, result)


def _lock_subject(session: Session, subject: str) -> None:
    kind, _, ident = subject.partition(":")
    if kind == "meeting":
        meetings.load_meeting(session, int(ident))
    elif kind == "report":
        reports.lock(session, int(ident))
    elif kind == "review":
        reviews.lock(session, int(ident))


def overdue_steps(session: Session, *, now: datetime) -> list[Step]:
    """Pending cycle steps whose due time has passed, oldest first."""
    query = (
        select(Step)
        .where(
            Step.status == StepStatus.PENDING, col(Step.due_at) <= now, col(Step.kind).in_(KINDS)
        )
        .order_by(col(Step.due_at), col(Step.id))
    )
    return list(session.exec(query).all())


def reconcile(engine: Engine, clock: Clock, *, actor: str = "system:reconcile") -> list[StepRun]:
    """Act on every cycle step whose due time passed without its timer run, in due order, each
    in its own transaction; a step another worker took meanwhile is reported as done."""
    with Session(engine) as session:
        keys = [s.key for s in overdue_steps(session, now=clock.now())]
    return [run_step(engine, clock, key, actor=actor) for key in keys]
