"""What each due step of a case does when its time comes (a timer run or the reconcile sweep)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models import accountability, disputes, risks
from models.casework import StepStatus, due_steps, locked
from models.clock import Clock
from models.disputes import DisputeStage
from models.errors import NotFound
from models.lateness import Fired, fire
from models.tables import CallToAccount, Dispute, Risk, Step
from models.uow import UnitOfWork

Handler = Callable[[UnitOfWork, Step], bool]


def _case_id(step: Step) -> int:
    return int(step.subject.split(":", 1)[1])


def _dispute_deadline(uow: UnitOfWork, step: Step) -> bool:
    stage = DisputeStage(step.key.split(":")[2])
    return disputes.deadline_passed(uow, dispute_id=_case_id(step), stage=stage)


def _account_reminder(uow: UnitOfWork, step: Step) -> bool:
    return accountability.remind(uow, case_id=_case_id(step), key=step.key.rsplit(":", 2)[-2])


def _account_stalemate(uow: UnitOfWork, step: Step) -> bool:
    return accountability.stalemate(uow, case_id=_case_id(step))


def _account_overdue(uow: UnitOfWork, step: Step) -> bool:
    return accountability.deadline_passed(uow, case_id=_case_id(step))


def _risk_review(uow: UnitOfWork, step: Step) -> bool:
    return risks.chase_review(uow, risk_id=_case_id(step))


HANDLERS: dict[str, Handler] = {
    "dispute.deadline": _dispute_deadline,
    "account.stalemate": _account_stalemate,
    "account.reminder": _account_reminder,
    "account.overdue": _account_overdue,
    "risk.review": _risk_review,
}


def lock_case_then_step(session: Session, key: str) -> Step | None:
    """The pending step `key`, locked after its case row: the order every command takes its
    locks in (case, then its steps), so a timer and an answer never deadlock."""
    subject = session.exec(select(Step.subject).where(Step.key == key)).first()
    if subject is None:
        return None
    kind, _, ident = subject.partition(":")
    if kind == "dispute":
        locked(session, Dispute, int(ident))
    elif kind == "account":
        locked(session, CallToAccount, int(ident))
    elif kind == "risk":
        locked(session, Risk, int(ident))
    return session.exec(
        select(Step)
        .where(Step.key == key, Step.status == StepStatus.PENDING)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def act_on_case_step(uow: UnitOfWork, step: Step) -> bool:
    """Run the step's rule; True if it changed anything. A satisfied step is a no-op."""
    handler = HANDLERS.get(step.kind)
    if handler is None:
        raise NotFound(f"no handler for step kind '{step.kind}' ({step.key})")
    return handler(uow, step)


def run_case_step(uow: UnitOfWork, step: Step) -> Fired:
    """A pending case step whose time has come, locked by `lock_case_then_step`: acted on, found
    satisfied, or skipped, by its kind's late policy (models/lateness.py)."""
    # No case message says "late": its deadlines escalate, and an escalation is late by nature.
    return fire(uow, step, lambda u, s, _was_due: act_on_case_step(u, s))


def run_due(engine: Engine, clock: Clock, *, actor: str = "system:timer") -> list[str]:
    """Act on every case step whose time has come, each in its own transaction; a step another
    worker took meanwhile is left alone. Returns the keys of the steps that changed state."""
    with Session(engine) as session:
        keys = [s.key for s in due_steps(session, now=clock.now()) if s.kind in HANDLERS]
    acted = []
    for key in keys:
        with UnitOfWork(engine, clock=clock, actor=actor) as uow:
            step = lock_case_then_step(uow.session, key)
            if step is None:
                continue
            if run_case_step(uow, step) == "acted":
                acted.append(key)
            uow.commit()
    return acted
