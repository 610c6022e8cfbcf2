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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlmodel import Session, col, select
from typing_extensions import override

from models import deferred
from models.audit import STEP_SKIPPED
from models.casework import StepStatus
from models.clock import Clock
from models.constitution import Action
from models.errors import InvalidInput, NotFound, WctError
from models.permissions import SWEEP, TIMER, Principal, System
from models.service import BATCH, Command, Executed, Failed, execute, execute_many
from models.steps.kind import FIRED, GRACE, MARK_FIRED, Firing, StepKind, Subject
from models.steps.planning import STEPS
from models.steps.registry import KINDS, kind_of
from models.tables import Step
from models.uow import UnitOfWork, held, hold, remember_roles

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
    error: str | None = None  # why a step of a sweep failed (`result` "failed"); it stays pending

    @property
    def subject(self) -> str:
        return self.subject_type.of(self.subject_id)

    @property
    def changed_a_case(self) -> bool:
        """A case step that acted: the case's run re-reads it, and new deadlines get timers."""
        return self.result == "acted" and self.subject_type.is_case

    def as_dict(self) -> dict[str, str]:
        found = {"key": self.key, "result": self.result, "kind": self.kind, "subject": self.subject}
        return found if self.error is None else found | {"error": self.error}


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
    """The step (locked) marked `status` at `now`: a Core UPDATE in the caller's transaction or
    savepoint (a savepoint rolled back reads it back as it is), deferred with the other steps
    marked until the table is read or it commits (`models.deferred`: one executemany), the
    session's row set as written, so there is nothing to flush. A row the session already has
    changes for (its kind's action changed it) is written with them by the session, as any
    change is."""
    if instance_state(step).modified or step.id is None:
        step.status, step.done_at = status, now
        session.add(step)
        return
    row = {"b_id": step.id, "b_status": status.value, "b_at": now}
    if status in FIRED and step.status == StepStatus.PENDING:
        deferred.defer(session, MARK_FIRED, row)
    else:  # its action settled it (written): not deferred, as readers of steps rely (`FIRED`)
        deferred.written(session, (STEPS,))
        session.connection().execute(MARK_FIRED, row)
    set_committed_value(step, "status", status.value)
    set_committed_value(step, "done_at", now)


@dataclass(frozen=True, kw_only=True)
class FireStep(Command[StepRun]):
    """A step's time has come: act on it once, if it is pending and due, by its kind's rules.
    Given by the system (its timer run, or the sweep), through `execute` like every change."""

    action = Action.STEP_FIRE
    key: str

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> StepRun:
        session = uow.session
        claimed = held(session, _step_lock(self.key))
        if isinstance(claimed, Step):
            # Claimed with its batch (`claim_steps`): the step's row is locked and read, and its
            # subject's too (locked again here, which costs nothing once held, or fails saying
            # why if the claim could not lock it).
            step = claimed
            name, subject_type, subject_id = step.kind, step.subject_type, step.subject_id
            kind = _checked_kind(self.key, name, subject_type)
            kind.lock(session, subject_id)
        else:
            found = session.exec(
                select(Step.kind, Step.subject_type, Step.subject_id).where(Step.key == self.key)
            ).first()
            if found is None:
                raise NotFound(f"no step '{self.key}'")
            name, subject_type, subject_id = found
            kind = _checked_kind(self.key, name, subject_type)
            kind.lock(session, subject_id)
            step = _locked_step(session, self.key)
        if step.status != StepStatus.PENDING:
            result: str = step.status
        elif step.due_at > uow.clock.now():
            result = "not_due"
        else:
            result = fire(uow, kind, step)
        return StepRun(self.key, result, name, kind.subject, subject_id)


def _checked_kind(key: str, name: str, subject_type: str) -> StepKind[Any]:
    kind = kind_of(name)
    if subject_type != kind.subject:
        raise InvalidInput(f"step '{key}' is about a {subject_type}, not a {kind.subject}")
    return kind


def _locked_step(session: Session, key: str) -> Step:
    """The step, locked (its subject first: the caller), read afresh."""
    return session.exec(_LOCK_STEP, params={"key": key}).one()


# Built once (its cache key too): every step its timer fires asks it.
_LOCK_STEP = (
    select(Step)
    .where(Step.key == sa.bindparam("key"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


def _step_lock(key: str) -> tuple[str, object]:
    return ("step", key)


def run_step(engine: Engine, clock: Clock, key: str, *, actor: System = TIMER) -> StepRun:
    """Act on one step by key, in its own transaction, if it is pending and due: what its timer
    run does. Two workers firing the same step act once."""
    return execute(engine, clock, actor, FireStep(key=key)).result


class DueStep(NamedTuple):
    """A pending step whose time has come, as the sweep finds it: the columns it needs only."""

    key: str
    kind: str
    subject_type: str
    subject_id: int
    due_at: datetime


def overdue_steps(session: Session, *, now: datetime) -> list[DueStep]:
    """Pending steps of every registered kind whose due time has passed, oldest first: a range
    of the (status, due_at) index, so finding none among many not yet due costs a lookup."""
    t = STEPS.c
    deferred.written(session, (STEPS,))
    rows = session.connection().execute(
        sa.select(t.key, t.kind, t.subject_type, t.subject_id, t.due_at)
        .where(t.status == StepStatus.PENDING.value, t.due_at <= now, t.kind.in_(list(KINDS)))
        .order_by(t.due_at, t.id)
    )
    return [DueStep(*row) for row in rows]


def claim_steps(uow: UnitOfWork, commands: Sequence[Command[StepRun]]) -> None:
    """Lock a batch's steps before any of them acts, in one global order (each subject by its
    kind's lock, in subject order, then the steps): the order every command takes its locks in,
    so a batch never holds the audit head while waiting for a subject another transaction holds."""
    keys = [c.key for c in commands if isinstance(c, FireStep)]
    # No step kind changes a member or a role (members are imported and erased by commands of
    # their own, models/commands.py): the batch reads each role's holders once, each step asking
    # for the same few (forgotten, should one change them after all).
    remember_roles(uow.session)
    found = uow.session.exec(
        select(Step.kind, Step.subject_type, Step.subject_id).where(col(Step.key).in_(keys))
    ).all()
    subjects = sorted({(t, i, k) for k, t, i in found})
    locked: set[tuple[str, int]] = set()
    for subject_type, subject_id, name in subjects:
        kind = KINDS.get(name)
        if kind is None or kind.subject != subject_type or (subject_type, subject_id) in locked:
            continue  # the step itself says what is wrong when it runs
        try:
            kind.lock(uow.session, subject_id)
        except WctError:
            continue  # a subject gone: its step fails alone when it runs, saying so
        locked.add((subject_type, subject_id))
    steps = uow.session.exec(
        select(Step)
        .where(col(Step.key).in_(keys))
        .order_by(col(Step.subject_type), col(Step.subject_id), col(Step.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    # Held once this savepoint is released: each step then reads its row (and its subject's)
    # from the session, not locking it again (`FireStep`).
    for step in steps:
        hold(uow.session, _step_lock(step.key), step)


def run_due(
    engine: Engine, clock: Clock, *, actor: System = SWEEP, batch: int = BATCH
) -> list[StepRun]:
    """Act on every step whose due time passed without its timer run, of every kind, in due
    order, `batch` steps to a transaction (`execute_many`): what the sweep does. A step that
    fails rolls back alone and is reported `failed` (it stays pending, for the next
    sweep); a step another worker took meanwhile is reported as it was left (done, settled,
    skipped), never acted on twice."""
    with Session(engine) as session:
        due = overdue_steps(session, now=clock.now())
    commands = [FireStep(key=step.key) for step in due]
    outcomes = execute_many(engine, clock, actor, commands, batch=batch, claim=claim_steps)
    return [_reported(step, outcome) for step, outcome in zip(due, outcomes, strict=True)]


def _reported(step: DueStep, outcome: Executed[StepRun] | Failed[StepRun]) -> StepRun:
    if isinstance(outcome, Executed):
        return outcome.result
    error = outcome.error
    return StepRun(
        step.key,
        "failed",
        step.kind,
        Subject(step.subject_type),
        step.subject_id,
        error=str(error) or type(error).__name__,
    )
