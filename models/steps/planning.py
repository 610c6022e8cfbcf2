"""Planning steps: what the processes share when they record the steps they owe, and whom they tell.

A step is a row in `Step` (key unique) naming its kind, its subject and its typed parameters: a
timer run acts on it when it comes due, and the sweep acts on any that passed without its run
(models/steps/engine.py). Commands return the steps they planned as `PlannedStep` data so an
orchestrator can turn each into a durable timer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from models import deferred
from models.calendar import add_working_days
from models.casework import CLOSE_OF_BUSINESS, StepStatus, distinct
from models.clock import local_zone
from models.constitution import Constitution, Reminders
from models.steps.kind import (
    ALWAYS,
    SAY_LATE,
    CoveredBy,
    DaysBefore,
    Firing,
    LatePolicy,
    NoParams,
    P,
    StepKind,
    StepSpec,
    Subject,
    SupersededBy,
)
from models.tables import Person, PersonRole, Step
from models.uow import UnitOfWork, remembered

START_OF_DAY = time(9, 0)
STEPS: sa.Table = SQLModel.metadata.tables["step"]  # Step, for Core statements of columns


def at_nine(day: date) -> datetime:
    """A notice or reminder goes out at 09:00 on its day, the partnership's local time."""
    return datetime.combine(day, START_OF_DAY, tzinfo=local_zone())


def at_five(day: date) -> datetime:
    """A deadline day ends at 17:00, the partnership's local time."""
    return datetime.combine(day, CLOSE_OF_BUSINESS, tzinfo=local_zone())


@dataclass(frozen=True)
class PlannedStep:
    """A follow-up step a command planned: what it is, about what, when it is due, and the name
    of its timer run."""

    key: str
    kind: str
    subject: str
    due_at: datetime
    run_name: str

    def as_dict(self) -> dict[str, str]:
        return {
            "key": self.key,
            "kind": self.kind,
            "subject": self.subject,
            "due_at": self.due_at.isoformat(),
            "run_name": self.run_name,
        }


def run_name(step: Step) -> str:
    """A readable name for a step's timer run: a cycle's step by what it is about
    (`meeting:board:2027-03-09:agenda` -> `board-2027-03-09-agenda`), a case's with its kind of
    case (`dispute:3:informal:deadline` -> `dispute-3-informal-deadline`), an action's likewise
    (`action-3-r1-reminder-10`)."""
    return _run_name(step.key, Subject(step.subject_type))


def _run_name(key: str, subject: Subject) -> str:
    # A cycle's key names its body and date after its type; any other key needs its type.
    cycle = subject in (Subject.MEETING, Subject.REPORT, Subject.REVIEW)
    name = key.removeprefix(f"{subject.value}:") if cycle else key
    return name.replace(":", "-")


def as_planned(step: Step) -> PlannedStep:
    return PlannedStep(step.key, step.kind, step.subject, step.due_at, run_name(step))


def plan(
    session: Session,
    spec: StepSpec[P],
    *,
    key: str,
    subject_id: int,
    due_at: datetime,
    params: P | None = None,
) -> PlannedStep:
    """Record a step of kind `spec` once (the same key again keeps the first) and return it as
    data. Its parameters are checked against the kind's model before anything is written."""
    step = session.exec(select(Step).where(Step.key == key)).first()
    if step is None:
        step = Step(
            key=key,
            kind=spec.name,
            subject=spec.subject.of(subject_id),
            subject_type=spec.subject.value,
            subject_id=subject_id,
            params=spec.dump(params),
            due_at=due_at,
            status=StepStatus.PENDING,
        )
        session.add(step)
        session.flush()
    return as_planned(step)


#: The steps of anything owed by a date (a report, a review): opening, reminder, overdue.
Ladder = tuple[StepSpec[NoParams], StepSpec[DaysBefore], StepSpec[NoParams]]


def ladder_kinds(
    ladder: Ladder,
    *,
    lock: Callable[[Session, int], object],
    opening: Callable[[UnitOfWork, Firing[NoParams]], bool],
    reminder: Callable[[UnitOfWork, Firing[DaysBefore]], bool],
    overdue: Callable[[UnitOfWork, Firing[NoParams]], bool],
) -> tuple[StepKind[NoParams], StepKind[DaysBefore], StepKind[NoParams]]:
    """The kinds of a deadline's steps (22.2.1, 11.4.1; 19.1 and the other annual reviews), and
    what each does when found late: the opening message sent late says so; reminders due at once
    become the latest, and a late opening message covers those due before it; the overdue
    escalation always acts."""
    opening_step, reminder_step, overdue_step = ladder
    chasers = LatePolicy(
        skip_if=(SupersededBy((reminder_step, overdue_step)), CoveredBy(opening_step))
    )
    return (
        StepKind(opening_step, lock=lock, act=opening, late=SAY_LATE),
        StepKind(reminder_step, lock=lock, act=reminder, late=chasers),
        StepKind(overdue_step, lock=lock, act=overdue, late=ALWAYS),
    )


def plan_deadline(
    session: Session,
    reminders: Reminders,
    *,
    stem: str,
    subject_id: int,
    due: date,
    kinds: Ladder,
    opening: str,
) -> list[PlannedStep]:
    """The ladder of anything owed by a date (a report, a review): the request `report_request`
    working days before, a reminder at each of `report_reminders`, and the overdue escalation
    `report_overdue_grace` working days after. `kinds` are (opening, reminder, overdue)."""
    opening_kind, reminder_kind, overdue_kind = kinds
    steps = [
        plan(
            session,
            opening_kind,
            key=f"{stem}:{opening}",
            subject_id=subject_id,
            due_at=at_nine(add_working_days(due, -reminders.report_request)),
        )
    ]
    for n in sorted(set(reminders.report_reminders), reverse=True):
        steps.append(
            plan(
                session,
                reminder_kind,
                key=f"{stem}:reminder-{n}",
                subject_id=subject_id,
                due_at=at_nine(add_working_days(due, -n)),
                params=DaysBefore(days=n),
            )
        )
    steps.append(
        plan(
            session,
            overdue_kind,
            key=f"{stem}:overdue",
            subject_id=subject_id,
            due_at=at_five(add_working_days(due, reminders.report_overdue_grace)),
        )
    )
    return steps


def pending_steps(session: Session, subject: str) -> list[PlannedStep]:
    """The steps of `subject` still waiting to fire, in due order."""
    rows = session.exec(
        select(Step)
        .where(Step.subject == subject, Step.status == StepStatus.PENDING)
        .order_by(col(Step.due_at), col(Step.id))
    ).all()
    return [as_planned(s) for s in rows]


def pending_until(session: Session, until: datetime) -> list[PlannedStep]:
    """Every step still waiting to fire that is due before `until`, in due order: the timers a
    sweep makes sure of."""
    t = STEPS.c
    deferred.written(session, (STEPS,))
    rows = session.connection().execute(
        sa.select(t.key, t.kind, t.subject, t.subject_type, t.due_at)
        .where(t.status == StepStatus.PENDING.value, t.due_at < until)
        .order_by(t.due_at, t.id)
    )
    return [
        PlannedStep(key, kind, subject, due_at, _run_name(key, Subject(subject_type)))
        for key, kind, subject, subject_type, due_at in rows
    ]


def due_steps(session: Session, *, now: datetime, prefix: str = "") -> list[Step]:
    """Pending steps whose time has come, oldest first (keys starting `prefix`, when given)."""
    query = select(Step).where(Step.status == StepStatus.PENDING, col(Step.due_at) <= now)
    if prefix:
        query = query.where(col(Step.key).startswith(prefix))
    return list(session.exec(query.order_by(col(Step.due_at), col(Step.id))).all())


def body_members(session: Session, c: Constitution, body_id: str) -> list[Person]:
    """Active people holding a seat on the body: a seat's role, within its organisation if any."""
    body = c.body(body_id)
    rows = session.exec(
        select(Person, PersonRole.role_id)
        .join(PersonRole, col(PersonRole.person_id) == col(Person.id))
        .where(col(Person.active).is_(True))
        .order_by(col(Person.id))
    ).all()
    found: list[Person] = []
    for seat in body.members:
        org = seat.organisation or c.role(seat.role).organisation
        found.extend(
            p for p, role in rows if role == seat.role and (org is None or p.organisation_id == org)
        )
    return sorted(distinct(found), key=lambda p: p.id or 0)


def role_holders(session: Session, role_id: str) -> list[Person]:
    """Active people holding a role (read once in a transaction that remembers roles)."""
    return list(
        remembered(
            session,
            ("role_holders", role_id),
            lambda: session.exec(_ROLE_HOLDERS, params={"role_id": role_id}).all(),
        )
    )


# Built once (its cache key too): a sweep asks it for every message it sends.
_ROLE_HOLDERS = (
    select(Person)
    .join(PersonRole, col(PersonRole.person_id) == col(Person.id))
    .where(col(Person.active).is_(True), PersonRole.role_id == sa.bindparam("role_id"))
    .order_by(col(Person.id))
)
