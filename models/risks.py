"""16.1 (with 13.2): risks to the CYPP, managed by the Executive and escalated to the Board."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlmodel import Session, col, select

from models.casework import (
    chairs,
    clean_text,
    close_of_business,
    notify,
    settle,
    trigger_key,
)
from models.commands import current_constitution
from models.constitution import Action, BodyKind, Constitution
from models.errors import InvalidInput, NotFound
from models.messages import Ask, RiskEscalated, RiskReviewOverdue, revision_key
from models.permissions import Scope, find_actor
from models.steps import ALWAYS, Firing, NoParams, StepKind, StepSpec, Subject, plan
from models.tables import Person, Risk
from models.uow import UnitOfWork, locked

REVIEW_STEP = StepSpec("risk.review", Subject.RISK, NoParams)


class RiskStatus(StrEnum):
    """16.1: managed by the Executive; escalated to the Board; formally assessed by the Board;
    closed."""

    MANAGED = "managed"
    ESCALATED = "escalated"
    ASSESSED = "assessed"
    CLOSED = "closed"


# A risk still open: it is reviewed, and chased when its review is overdue.
OPEN = (RiskStatus.MANAGED, RiskStatus.ESCALATED)


def score(likelihood: int, impact: int) -> int:
    """The 5x5 risk score: likelihood times impact, each 1 (low) to 5 (high)."""
    for name, value in (("likelihood", likelihood), ("impact", impact)):
        if not 1 <= value <= 5:
            raise InvalidInput(f"{name} must be a whole number from 1 to 5, not {value}")
    return likelihood * impact


def must_escalate(c: Constitution, likelihood: int, impact: int) -> bool:
    """16.1: a risk whose score reaches the constitution's threshold goes to the Board."""
    return score(likelihood, impact) >= c.risk.escalation_threshold


@dataclass(frozen=True)
class RiskResult:
    risk_id: int
    created: bool
    status: str
    score: int


def _subject(risk: Risk) -> str:
    return f"risk:{risk.id}"


def _state(risk: Risk) -> dict[str, object]:
    return {
        "status": risk.status,
        "likelihood": risk.likelihood,
        "impact": risk.impact,
        "review_due_on": risk.review_due_on.isoformat(),
    }


def _load(session: Session, risk_id: int) -> Risk:
    risk = locked(session, Risk, risk_id)
    if risk is None:
        raise NotFound(f"no risk #{risk_id}")
    return risk


def raise_risk(
    uow: UnitOfWork,
    *,
    title: str,
    owner: str,
    likelihood: int,
    impact: int,
) -> RiskResult:
    """Record a risk to the CYPP, managed by the Executive; the same title twice is one risk."""
    session, c = uow.session, current_constitution(uow.session)
    title = clean_text(title, what="title", limit=300)
    risk_score = score(likelihood, impact)
    owner_actor = find_actor(session, owner)
    key = trigger_key("risk", title)
    existing = session.exec(select(Risk).where(Risk.trigger_key == key)).first()
    if existing is not None and existing.id is not None:
        return RiskResult(
            existing.id, False, existing.status, existing.likelihood * existing.impact
        )
    today = uow.clock.now().date()
    risk = Risk(
        trigger_key=key,
        title=title,
        owner_person_id=owner_actor.person_id,
        likelihood=likelihood,
        impact=impact,
        status=RiskStatus.MANAGED,
        review_due_on=today + timedelta(days=c.risk.review_interval_days),
        raised_at=uow.clock.now(),
    )
    session.add(risk)
    session.flush()
    uow.record("risk.raised", _subject(risk), before=None, after=_state(risk))
    _schedule_review(uow, risk)
    if must_escalate(c, likelihood, impact):
        _escalate(uow, c, risk, f"score {risk_score} reached the threshold")
    assert risk.id is not None
    return RiskResult(risk.id, True, risk.status, risk_score)


def review_risk(uow: UnitOfWork, *, risk_id: int, likelihood: int, impact: int) -> RiskResult:
    """The Executive reviews a risk at its meeting: new scores, next review date, and escalation
    if the score now reaches the threshold (16.1)."""
    session, c = uow.session, current_constitution(uow.session)
    risk = _load(session, risk_id)
    new_score = score(likelihood, impact)
    if risk.status not in OPEN:
        raise c.refused(
            f"risk #{risk_id} is {risk.status}: it is no longer reviewed", c.cite("risk")
        )
    before = _state(risk)
    risk.likelihood, risk.impact = likelihood, impact
    risk.review_due_on = uow.clock.now().date() + timedelta(days=c.risk.review_interval_days)
    session.add(risk)
    uow.record("risk.reviewed", _subject(risk), before=before, after=_state(risk))
    settle(session, subject=_subject(risk), now=uow.clock.now(), kinds=["risk.review"])
    _schedule_review(uow, risk)
    if risk.status == RiskStatus.MANAGED and must_escalate(c, likelihood, impact):
        _escalate(uow, c, risk, f"score {new_score} reached the threshold at review")
    return RiskResult(risk_id, False, risk.status, new_score)


def escalate_risk(uow: UnitOfWork, *, risk_id: int, reason: str) -> RiskResult:
    """The Executive decides to escalate a risk to the Board for formal assessment (16.1)."""
    session, c = uow.session, current_constitution(uow.session)
    risk = _load(session, risk_id)
    reason = clean_text(reason, what="reason", limit=500)
    if risk.status != RiskStatus.MANAGED:
        raise c.refused(f"risk #{risk_id} is already {risk.status}", c.cite("risk"))
    _escalate(uow, c, risk, reason)
    return RiskResult(risk_id, False, risk.status, risk.likelihood * risk.impact)


def _escalate(uow: UnitOfWork, c: Constitution, risk: Risk, reason: str) -> None:
    before = _state(risk)
    risk.status, risk.escalated_at = RiskStatus.ESCALATED, uow.clock.now()
    risk.escalation_reason = reason
    uow.session.add(risk)
    uow.record(
        "risk.escalated", _subject(risk), before=before, after=_state(risk) | {"reason": reason}
    )
    board = c.sole(BodyKind.BOARD).id
    assert risk.id is not None
    notify(
        uow,
        RiskEscalated(
            clause=c.cite("risk"),
            risk_id=risk.id,
            title=risk.title,
            likelihood=risk.likelihood,
            impact=risk.impact,
            score=risk.likelihood * risk.impact,
            threshold=c.risk.escalation_threshold,
            reason=reason,
            body=c.body(board).name,
            action=(
                f"The risk will be on the agenda of the next {c.body(board).name} meeting for "
                "its formal assessment."
            ),
        ),
        people=chairs(uow.session, c, board),
        key=revision_key(uow.session, _subject(risk), "escalated"),
    )


def assess_risk(uow: UnitOfWork, *, risk_id: int, assessment: str) -> RiskResult:
    """The Board's formal assessment of an escalated risk (16.1)."""
    session, c = uow.session, current_constitution(uow.session)
    risk = _load(session, risk_id)
    text = clean_text(assessment, what="assessment", limit=2000, multiline=True)
    if risk.status != RiskStatus.ESCALATED:
        raise c.refused(
            f"risk #{risk_id} is {risk.status}: only an escalated risk is assessed",
            c.cite("risk"),
        )
    before = _state(risk)
    risk.status, risk.board_assessment = RiskStatus.ASSESSED, text
    session.add(risk)
    uow.record("risk.assessed", _subject(risk), before=before, after=_state(risk))
    return RiskResult(risk_id, False, risk.status, risk.likelihood * risk.impact)


def close_risk(uow: UnitOfWork, *, risk_id: int) -> RiskResult:
    session, c = uow.session, current_constitution(uow.session)
    risk = _load(session, risk_id)
    if risk.status == RiskStatus.CLOSED:
        raise c.refused(f"risk #{risk_id} is already closed", c.cite("risk"))
    before = _state(risk)
    risk.status, risk.closed_at = RiskStatus.CLOSED, uow.clock.now()
    session.add(risk)
    settle(session, subject=_subject(risk), now=uow.clock.now())
    uow.record("risk.closed", _subject(risk), before=before, after=_state(risk))
    return RiskResult(risk_id, False, risk.status, risk.likelihood * risk.impact)


def _schedule_review(uow: UnitOfWork, risk: Risk) -> None:
    """The next review, planned by the change just recorded (raised, or reviewed) and named by
    the revision it made: a risk reviewed twice in a day (same next date) still gets its step."""
    plan(
        uow.session,
        REVIEW_STEP,
        key=revision_key(uow.session, _subject(risk), f"review:{risk.review_due_on.isoformat()}"),
        subject_id=risk.id or 0,
        due_at=close_of_business(risk.review_due_on),
    )


def chase_review(uow: UnitOfWork, *, risk_id: int) -> bool:
    """A risk left unreviewed past its review date: tell its owner and the Executive's chair.
    A risk reviewed (or closed) meanwhile is left alone."""
    session, c = uow.session, current_constitution(uow.session)
    risk = _load(session, risk_id)
    if risk.status not in OPEN or risk.review_due_on > uow.clock.now().date():
        return False
    owner = session.get(Person, risk.owner_person_id)
    people = [p for p in [owner, *chairs(session, c, c.sole(BodyKind.EXECUTIVE).id)] if p]
    assert risk.id is not None
    queued = notify(
        uow,
        RiskReviewOverdue(
            clause=c.cite("risk"),
            risk_id=risk.id,
            title=risk.title,
            score=risk.likelihood * risk.impact,
            due=risk.review_due_on,
            action=(
                f"Review the risk with {c.sole(BodyKind.EXECUTIVE).name} and record its new "
                "likelihood and impact with the button below."
            ),
            ask=Ask(action=Action.RISK_REVIEW, subject=_subject(risk)),
        ),
        people=people,
        scope=Scope(),
        # One chase per review date: a review moves the date on, so a chase is never repeated.
        key=f"{_subject(risk)}:review-chase:{risk.review_due_on.isoformat()}",
    )
    if queued:
        uow.record(
            "risk.review_chased",
            _subject(risk),
            before=None,
            after={"due": str(risk.review_due_on)},
        )
    return queued > 0


def _chase(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    return chase_review(uow, risk_id=firing.subject_id)


STEP_KINDS = (StepKind(REVIEW_STEP, lock=_load, act=_chase, late=ALWAYS),)


def open_risks(session: Session) -> list[Risk]:
    return list(session.exec(select(Risk).where(col(Risk.status).in_(OPEN))).all())


def risks_for_board(session: Session) -> list[Risk]:
    """Escalated risks awaiting the Board's formal assessment: a standing item of its agenda."""
    query = select(Risk).where(Risk.status == RiskStatus.ESCALATED).order_by(col(Risk.escalated_at))
    return list(session.exec(query).all())
