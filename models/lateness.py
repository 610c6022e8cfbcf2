"""What a step does when it fires after its time (a first start, recovery after an outage): each
kind's `LatePolicy` says when it is skipped and whether its messages say they are late, and `fire`
applies it on every path that acts on a due step (the cycle and case timers, and both sweeps).

The table is keyed by step kind so that it folds into one registry of step kinds later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from sqlmodel import Session, col, select

from models import meetings, reports, reviews
from models.audit import STEP_SKIPPED
from models.casework import StepStatus, mark_done, mark_skipped
from models.commands import current_constitution
from models.errors import NotFound
from models.tables import Meeting, Step
from models.uow import UnitOfWork

# A sweep every 15 minutes picks up a missed step well within this: only a real delay says "late".
GRACE = timedelta(hours=1)

Fired = Literal["acted", "noop", "skipped"]
Act = Callable[[UnitOfWork, Step, datetime | None], bool]


class SkipRule(Protocol):
    """Why a due step is skipped when it fires at `now`, or None if nothing stops it."""

    def __call__(self, session: Session, step: Step, now: datetime) -> str | None: ...


@dataclass(frozen=True)
class LatePolicy:
    """What a step of one kind does when it fires late: the rules that skip it (the first reason
    found wins), and whether its messages say they are late once past `GRACE`."""

    skip_if: tuple[SkipRule, ...] = ()
    says_late: bool = False


@dataclass(frozen=True)
class Verdict:
    """A due step's fate: skipped for `skip`, or acted on (saying it was due at `was_due`)."""

    skip: str | None = None
    was_due: datetime | None = None


def _meeting(session: Session, step: Step) -> Meeting:
    return meetings.load_meeting(session, int(step.subject.split(":", 1)[1]))


def items_deadline_passed(session: Session, step: Step, now: datetime) -> str | None:
    """20.4.1, 21.4.1, 22.4.1 with 23.1: a call for items at or after the items deadline would
    ask for contributions nobody can send any more."""
    meeting = _meeting(session, step)
    deadline = meetings.step_times(current_constitution(session), meeting.starts_at)[
        meetings.ITEMS_DEADLINE
    ]
    if now >= deadline:
        return f"the items deadline passed at {deadline.isoformat()}"
    return None


def meeting_started(session: Session, step: Step, now: datetime) -> str | None:
    """20.4.1, 21.4.1, 22.4.1: a notice or reminder of a meeting that has started helps nobody."""
    meeting = _meeting(session, step)
    if now >= meeting.starts_at:
        return f"the meeting started at {meeting.starts_at.isoformat()}"
    return None


@dataclass(frozen=True)
class SupersededBy:
    """The chasers of a report (22.2.1, 11.4.1), a review (19.1 and the other annual reviews) or
    a response (11.5.1) due at once become one, the latest: a later step of the same chain (a
    later reminder or the escalation, `kinds`) already due replaces this one."""

    kinds: tuple[str, ...]

    def __call__(self, session: Session, step: Step, now: datetime) -> str | None:
        later = session.exec(
            select(Step)
            .where(
                Step.subject == step.subject,
                col(Step.kind).in_(self.kinds),
                col(Step.due_at) > step.due_at,
                col(Step.due_at) <= now,
                # A settled step belongs to a chain already answered, not to this one.
                Step.status != StepStatus.SETTLED,
            )
            .order_by(col(Step.due_at).desc(), col(Step.id).desc())
        ).first()
        if later is None:
            return None
        return f"a later step of the same chain is due: {later.key} at {later.due_at.isoformat()}"


@dataclass(frozen=True)
class CoveredBy:
    """A reminder is covered by its chain's opening message (the notice of a meeting, 20.4.1,
    21.4.1, 22.4.1; the request for a report, 22.2.1, 11.4.1; the notice of a review, 19.1 and the
    other annual reviews) when that went out at or after the reminder's own time, or is due and
    has yet to go out (it goes out late now)."""

    opening: str

    def __call__(self, session: Session, step: Step, now: datetime) -> str | None:
        first = session.exec(
            select(Step).where(Step.subject == step.subject, Step.kind == self.opening)
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


ALWAYS = LatePolicy()  # a state change happens whenever its time is found to have passed
SAY_LATE = LatePolicy(says_late=True)

POLICIES: Mapping[str, LatePolicy] = {
    meetings.CALL_FOR_ITEMS: LatePolicy(skip_if=(items_deadline_passed,)),
    meetings.ITEMS_DEADLINE: ALWAYS,
    meetings.AGENDA: LatePolicy(skip_if=(meeting_started,), says_late=True),
    meetings.REMINDER: LatePolicy(skip_if=(meeting_started, CoveredBy(meetings.AGENDA))),
    meetings.MINUTES_DUE: ALWAYS,
    reports.REQUEST: SAY_LATE,
    reports.REMINDER: LatePolicy(
        skip_if=(SupersededBy((reports.REMINDER, reports.OVERDUE)), CoveredBy(reports.REQUEST))
    ),
    reports.OVERDUE: ALWAYS,
    reviews.NOTICE: SAY_LATE,
    reviews.REMINDER: LatePolicy(
        skip_if=(SupersededBy((reviews.REMINDER, reviews.OVERDUE)), CoveredBy(reviews.NOTICE))
    ),
    reviews.OVERDUE: ALWAYS,
    reviews.CHALLENGE_CLOSES: ALWAYS,
    "dispute.deadline": ALWAYS,
    "account.stalemate": ALWAYS,
    # 11.5.1: the reminders before an agreed deadline; the chain opens when it is agreed.
    "account.reminder": LatePolicy(
        skip_if=(SupersededBy(("account.reminder", "account.overdue")),)
    ),
    "account.overdue": ALWAYS,
    "risk.review": ALWAYS,
}


def policy(kind: str) -> LatePolicy:
    """The late policy of a step kind, or a clear error for a kind without one."""
    try:
        return POLICIES[kind]
    except KeyError:
        raise NotFound(f"no late policy for step kind '{kind}'") from None


def judge(session: Session, step: Step, now: datetime) -> Verdict:
    """What a due step does at `now` by its kind's policy: skip it, or act (late or on time)."""
    rule = policy(step.kind)
    for check in rule.skip_if:
        reason = check(session, step, now)
        if reason is not None:
            return Verdict(skip=reason)
    late = rule.says_late and now - step.due_at > GRACE
    return Verdict(was_due=step.due_at if late else None)


def fire(uow: UnitOfWork, step: Step, act: Act) -> Fired:
    """Act on a pending step whose time has come (the caller holds its locks) by its kind's late
    policy: a skipped step is marked `skipped` and audited and sends nothing; otherwise `act`
    runs (told when the step was due, if its messages must say late) and the step is done."""
    now = uow.clock.now()
    verdict = judge(uow.session, step, now)
    if verdict.skip is not None:
        mark_skipped(uow.session, step, now)
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
    acted = act(uow, step, verdict.was_due)
    mark_done(uow.session, step, now)
    return "acted" if acted else "noop"
