"""What the recurring cycles share: the steps they plan, whom they tell, and when a day starts.

A step is a row in `Step` (key unique): a timer run acts on it when it comes due, and the reconcile
sweep acts on any that passed without its run. Commands return the steps they planned as
`PlannedStep` data so an orchestrator can turn each into a durable timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from sqlmodel import Session, col, select

from models.calendar import add_working_days
from models.casework import StepStatus, close_of_business, distinct, schedule
from models.clock import LONDON
from models.constitution import Constitution, Reminders
from models.tables import Person, PersonRole, Step

START_OF_DAY = time(9, 0)


def at_nine(day: date) -> datetime:
    """A notice or reminder goes out at 09:00, Europe/London, on its day."""
    return datetime.combine(day, START_OF_DAY, tzinfo=LONDON)


at_five = close_of_business  # a deadline day ends at 17:00, Europe/London


@dataclass(frozen=True)
class PlannedStep:
    """A follow-up step a command planned: what it is, about what, and when it is due."""

    key: str
    kind: str
    subject: str
    due_at: datetime

    @property
    def run_name(self) -> str:
        """A readable name for its timer run: `meeting:board:2027-03-09:agenda` ->
        `board-2027-03-09-agenda`."""
        return "-".join(self.key.split(":")[1:])

    def as_dict(self) -> dict[str, str]:
        return {
            "key": self.key,
            "kind": self.kind,
            "subject": self.subject,
            "due_at": self.due_at.isoformat(),
            "run_name": self.run_name,
        }


def plan(session: Session, *, key: str, kind: str, subject: str, due_at: datetime) -> PlannedStep:
    """Record a step once (the same key again keeps the first) and return it as data."""
    step = schedule(session, key=key, kind=kind, subject=subject, due_at=due_at)
    return as_planned(step)


def plan_deadline(
    session: Session,
    reminders: Reminders,
    *,
    stem: str,
    subject: str,
    due: date,
    kinds: tuple[str, str, str],
    opening: str,
) -> list[PlannedStep]:
    """The ladder of anything owed by a date (a report, a review): the request `report_request`
    working days before, a reminder at each of `report_reminders`, and the overdue escalation
    `report_overdue_grace` working days after. `kinds` are (opening, reminder, overdue)."""
    opening_kind, reminder_kind, overdue_kind = kinds
    steps = [
        plan(
            session,
            key=f"{stem}:{opening}",
            kind=opening_kind,
            subject=subject,
            due_at=at_nine(add_working_days(due, -reminders.report_request)),
        )
    ]
    for n in sorted(set(reminders.report_reminders), reverse=True):
        steps.append(
            plan(
                session,
                key=f"{stem}:reminder-{n}",
                kind=reminder_kind,
                subject=subject,
                due_at=at_nine(add_working_days(due, -n)),
            )
        )
    steps.append(
        plan(
            session,
            key=f"{stem}:overdue",
            kind=overdue_kind,
            subject=subject,
            due_at=at_five(add_working_days(due, reminders.report_overdue_grace)),
        )
    )
    return steps


def as_planned(step: Step) -> PlannedStep:
    return PlannedStep(step.key, step.kind, step.subject, step.due_at)


def pending_steps(session: Session, subject: str) -> list[PlannedStep]:
    """The steps of `subject` still waiting to fire, in due order."""
    rows = session.exec(
        select(Step)
        .where(Step.subject == subject, Step.status == StepStatus.PENDING)
        .order_by(col(Step.due_at), col(Step.id))
    ).all()
    return [as_planned(s) for s in rows]


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
    """Active people holding a role."""
    return list(
        session.exec(
            select(Person)
            .join(PersonRole, col(PersonRole.person_id) == col(Person.id))
            .where(col(Person.active).is_(True), PersonRole.role_id == role_id)
            .order_by(col(Person.id))
        ).all()
    )
