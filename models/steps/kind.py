"""What every step kind declares, in a leaf module that the domain modules import to declare
their own kinds next to their rules (models/steps/registry.py gathers them):

- a `StepSpec`: its name (the `kind` column), the subject it is about, and the pydantic model of
  its parameters (the `params` column): what a planner names when it plans a step;
- a `StepKind`: the spec, what it locks (its subject row: the engine then locks the step, the
  order every command takes its locks in), what it does when due (`act`), and what it does when it
  fires late (`LatePolicy`: a first start, recovery after an outage).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session, SQLModel, select

from models.casework import StepStatus
from models.errors import InvalidInput
from models.tables import Step
from models.uow import UnitOfWork, read_rows

# A sweep every 15 minutes picks up a missed step well within this: only a real delay says "late".
GRACE = timedelta(hours=1)


class Subject(StrEnum):
    """What a step is about: a row of the recurring cycles, a case, or an action agreed at a
    meeting (the action tracker)."""

    MEETING = "meeting"
    REPORT = "report"
    REVIEW = "review"
    DISPUTE = "dispute"
    ACCOUNT = "account"
    RISK = "risk"
    ACTION = "action"
    APPROVAL = "approval"

    @property
    def is_case(self) -> bool:
        """A case is followed by a run that waits on a person (flows/cases.py): when one of its
        steps changes it, that run re-reads it."""
        return self in (Subject.DISPUTE, Subject.ACCOUNT, Subject.RISK, Subject.APPROVAL)

    def of(self, subject_id: int) -> str:
        """`meeting:17`: how audit events, steps and timers name one subject."""
        return f"{self.value}:{subject_id}"


class StepParams(BaseModel):
    """The parameters a step carries beyond its subject (the `params` column), one model a kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(StepParams):
    """A kind whose steps need nothing beyond their subject."""


class DaysBefore(StepParams):
    """A reminder sent a number of working days before what it chases is due."""

    days: int = Field(ge=0, le=366)


P = TypeVar("P", bound=StepParams)


@dataclass(frozen=True)
class StepSpec(Generic[P]):
    """What a step of one kind is: its name, what it is about, and its parameters' model."""

    name: str
    subject: Subject
    params: type[P]

    def dump(self, params: P | None) -> dict[str, Any]:
        """The parameters as the `params` column keeps them, checked against this kind's model."""
        try:
            value = self.params() if params is None else params
        except ValidationError as exc:
            raise InvalidInput(f"a {self.name} step needs parameters: {_problems(exc)}") from None
        if type(value) is not self.params:
            raise InvalidInput(
                f"a {self.name} step takes {self.params.__name__}, not {type(value).__name__}"
            )
        return value.model_dump(mode="json")

    def load(self, key: str, data: dict[str, Any]) -> P:
        """A step's `params` column read back through this kind's model, or a clear error."""
        try:
            return self.params.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput(
                f"step '{key}' has bad parameters for {self.name}: {_problems(exc)}"
            ) from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )


@dataclass(frozen=True)
class Firing(Generic[P]):
    """A due step as its kind's `act` sees it: its key (the stem of the keys of the messages it
    sends), its subject's id, its parameters, and when it was due if it fires late and says so."""

    key: str
    subject_id: int
    params: P
    was_due: datetime | None = None


class SkipRule(Protocol):
    """Why a due step is skipped when it fires at `now`, or None if nothing stops it."""

    def __call__(self, session: Session, step: Step, now: datetime) -> str | None: ...


@dataclass(frozen=True)
class LatePolicy:
    """What a step of one kind does when it fires late: the rules that skip it (the first reason
    found wins), and whether its messages say they are late once past `GRACE`."""

    skip_if: tuple[SkipRule, ...] = ()
    says_late: bool = False


ALWAYS = LatePolicy()  # a state change happens whenever its time is found to have passed
SAY_LATE = LatePolicy(says_late=True)


@dataclass(frozen=True)
class SupersededBy:
    """The chasers of a report (22.2.1, 11.4.1), a review (19.1 and the other annual reviews) or
    a response (11.5.1) due at once become one, the latest: a later step of the same chain (a
    later reminder or the escalation, `kinds`) already due replaces this one."""

    kinds: Sequence[StepSpec[Any]]

    def __call__(self, session: Session, step: Step, now: datetime) -> str | None:
        later = read_rows(
            session,
            _LATER,
            {
                "subject_type": step.subject_type,
                "subject_id": step.subject_id,
                "kinds": [k.name for k in self.kinds],
                "after": step.due_at,
                "now": now,
            },
            # Steps this transaction fired and has yet to write as fired read the same: only a
            # pending step's marking is deferred, to done or skipped (`FIRED`), never settled.
            unseen=(MARK_FIRED,),
        ).first()
        if later is None:
            return None
        key, due_at = later
        return f"a later step of the same chain is due: {key} at {due_at.isoformat()}"


_STEPS: sa.Table = SQLModel.metadata.tables["step"]  # Step, for Core statements
# Built once (its cache key too): the sweep asks it for every reminder it finds due.
_LATER = (
    sa.select(_STEPS.c.key, _STEPS.c.due_at)
    .where(
        _STEPS.c.subject_type == sa.bindparam("subject_type"),
        _STEPS.c.subject_id == sa.bindparam("subject_id"),
        _STEPS.c.kind.in_(sa.bindparam("kinds", expanding=True)),
        _STEPS.c.due_at > sa.bindparam("after"),
        _STEPS.c.due_at <= sa.bindparam("now"),
        # A settled step belongs to a chain already answered, not to this one.
        _STEPS.c.status != StepStatus.SETTLED.value,
    )
    .order_by(_STEPS.c.due_at.desc(), _STEPS.c.id.desc())
    .limit(1)
)


#: What a fired step becomes (`models.steps.engine`). Marked so from pending, it is deferred
#: (`models.deferred`) with the others its transaction fires, one executemany; from any other
#: status (its own action settled it) it is written at once.
FIRED = frozenset({StepStatus.DONE, StepStatus.SKIPPED})
# Built once (its cache key too): every step fired is marked so by the engine.
MARK_FIRED = (
    _STEPS.update()
    .where(_STEPS.c.id == sa.bindparam("b_id"))
    .values(status=sa.bindparam("b_status"), done_at=sa.bindparam("b_at"))
)


@dataclass(frozen=True)
class CoveredBy:
    """A reminder is covered by its chain's opening message (the notice of a meeting, 20.4.1,
    21.4.1, 22.4.1; the request for a report, 22.2.1, 11.4.1; the notice of a review, 19.1 and the
    other annual reviews) when that went out at or after the reminder's own time, or is due and
    has yet to go out (it goes out late now)."""

    opening: StepSpec[Any]

    def __call__(self, session: Session, step: Step, now: datetime) -> str | None:
        first = session.exec(
            select(Step).where(
                Step.subject_type == step.subject_type,
                Step.subject_id == step.subject_id,
                Step.kind == self.opening.name,
            )
        ).first()
        if first is None:
            return None
        if first.status == StepStatus.PENDING and first.due_at <= now:
            return f"{first.key} is due and not yet sent: it goes out late and covers this one"
        if (
            first.status == StepStatus.DONE
            and first.done_at is not None
            and first.done_at >= step.due_at
        ):
            return f"{first.key} went out at {first.done_at.isoformat()}, when this was due"
        return None


@dataclass(frozen=True)
class StepKind(Generic[P]):
    """One entry of the registry: what the step is (`spec`); what it locks before the step row
    (`lock`, given the subject's id: the order every command takes its locks in, so a timer and an
    answer never deadlock); what it does when due (`act`: True if it changed anything, False when
    what it waits for already happened); and what it does when it fires late (`late`)."""

    spec: StepSpec[P]
    lock: Callable[[Session, int], object]
    act: Callable[[UnitOfWork, Firing[P]], bool]
    late: LatePolicy

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def subject(self) -> Subject:
        return self.spec.subject
