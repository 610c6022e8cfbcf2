"""Annual reviews: the MoU (19.1), the WCT-WSCB protocol (11.4.2), the CYPP review with its
safeguarding assessment (11.3.4), published and open to challenge (7.2), the equalities impact
assessment (17.2), the membership review (20.3.5), commissioning (13.3), the WSCB annual report
(11.2.4). Each has an owner, a due date, reminders, escalation and a recorded outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from models.calendar import add_working_days, is_working_day
from models.casework import clean_text, coordinators, notify, settle
from models.clock import local_day
from models.commands import current_constitution
from models.constitution import BodyKind, Constitution, StructuralRule, review_due
from models.constitution import Review as ReviewSpec
from models.errors import InvalidInput, NotFound, Refused, cited
from models.messages import (
    ChallengeAnswer,
    Reminder,
    RepresentationGap,
    ReviewChallenged,
    ReviewDue,
    ReviewOverdue,
)
from models.permissions import Principal
from models.steps import (
    ALWAYS,
    DaysBefore,
    Firing,
    Ladder,
    NoParams,
    PlannedStep,
    StepKind,
    StepSpec,
    Subject,
    at_five,
    ladder_kinds,
    pending_steps,
    plan,
    plan_deadline,
    role_holders,
)
from models.tables import AuditEvent, OutboxMessage, Person, PersonRole, Review
from models.uow import UnitOfWork, locked

NOTICE = "review.notice"
REMINDER = "review.reminder"
OVERDUE = "review.overdue"
CHALLENGE_CLOSES = "review.challenge_closes"
NOTICE_STEP = StepSpec(NOTICE, Subject.REVIEW, NoParams)
REMINDER_STEP = StepSpec(REMINDER, Subject.REVIEW, DaysBefore)
OVERDUE_STEP = StepSpec(OVERDUE, Subject.REVIEW, NoParams)
CHALLENGE_CLOSES_STEP = StepSpec(CHALLENGE_CLOSES, Subject.REVIEW, NoParams)
LADDER: Ladder = (NOTICE_STEP, REMINDER_STEP, OVERDUE_STEP)


class ReviewStatus(StrEnum):
    """Where a year's review is: open (awaiting its outcome); overdue (escalated); published and
    open to challenge (7.2); completed."""

    OPEN = "open"
    OVERDUE = "overdue"
    PUBLISHED = "published"
    COMPLETED = "completed"


# The names the statuses had before `ReviewStatus`.
OPEN, OVERDUE_STATUS, PUBLISHED, COMPLETED = (
    ReviewStatus.OPEN,
    ReviewStatus.OVERDUE,
    ReviewStatus.PUBLISHED,
    ReviewStatus.COMPLETED,
)


def spec_of(c: Constitution, kind: str) -> ReviewSpec:
    for spec in c.reviews:
        if spec.id == kind:
            return spec
    known = ", ".join(r.id for r in c.reviews)
    raise NotFound(f"no annual review '{kind}' in the constitution (known: {known})")


def due_date(spec: ReviewSpec, year: int) -> date:
    """The review's due date in `year`: the constitution's day and month, moved back to the
    working day before when it falls on a weekend or an English bank holiday."""
    day = review_due(spec, year)
    while not is_working_day(day):
        day -= timedelta(days=1)
    return day


def _year(year: int) -> int:
    if not 2000 <= year <= 2100:
        raise InvalidInput(f"year {year} is out of range")
    return year


def review_key(review: Review) -> str:
    """`review:mou-review:2027`: the stem of this review's step and message keys."""
    return _key(review.kind, review.year)


def _key(kind: str, year: int) -> str:
    return f"review:{kind}:{year}"


def overdue_review_keys(session: Session) -> list[tuple[str, date]]:
    """(review key, day due) of every overdue review: the columns, not the rows."""
    rows = session.exec(
        select(col(Review.kind), col(Review.year), col(Review.due_on)).where(
            Review.status == ReviewStatus.OVERDUE
        )
    ).all()
    return [(_key(kind, year), due) for kind, year, due in rows]


def _subject(review: Review) -> str:
    return f"review:{review.id}"


def _state(review: Review) -> dict[str, Any]:
    return {
        "kind": review.kind,
        "year": review.year,
        "owner": review.owner_body_id,
        "due_on": review.due_on.isoformat(),
        "status": review.status,
        "challenge_closes_on": (
            review.challenge_closes_on.isoformat() if review.challenge_closes_on else None
        ),
    }


@dataclass(frozen=True)
class ReviewOpened:
    review_id: int
    key: str
    created: bool
    due_on: date
    steps: list[PlannedStep]

    def as_dict(self) -> dict[str, Any]:
        return {
            "review_id": self.review_id,
            "key": self.key,
            "created": self.created,
            "due_on": self.due_on.isoformat(),
            "steps": [s.as_dict() for s in self.steps],
        }


def open_review(uow: UnitOfWork, *, kind: str, year: int) -> ReviewOpened:
    """19.1, 11.4.2, 11.3.4, 17.2, 20.3.5, 13.3, 11.2.4: open the year's review, owned by the
    body the constitution names, with a notice, reminders and escalation at the constitution's
    offsets in working days. The same review and year again opens nothing new."""
    session, c = uow.session, current_constitution(uow.session)
    spec = spec_of(c, kind)
    due = due_date(spec, _year(year))
    review = session.exec(select(Review).where(Review.kind == kind, Review.year == year)).first()
    if review is not None and review.id is not None:
        return ReviewOpened(
            review.id,
            review_key(review),
            False,
            review.due_on,
            pending_steps(session, _subject(review)),
        )
    review = Review(
        kind=kind, year=year, owner_body_id=spec.owner, due_on=due, status=ReviewStatus.OPEN
    )
    session.add(review)
    session.flush()
    uow.record("review.opened", _subject(review), before=None, after=_state(review))
    assert review.id is not None
    steps = plan_deadline(
        session,
        c.reminders,
        stem=review_key(review),
        subject_id=review.id,
        due=due,
        kinds=LADDER,
        opening="notice",
    )
    return ReviewOpened(review.id, review_key(review), True, due, steps)


def find_review(session: Session, *, kind: str, year: int) -> Review:
    review = session.exec(
        select(Review)
        .where(Review.kind == kind, Review.year == year)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if review is None:
        raise NotFound(f"no {kind} review for {year} has been opened")
    return review


def lock(session: Session, review_id: int) -> Review:
    """The review, locked for this transaction: a step and an outcome never interleave."""
    review = locked(session, Review, review_id)
    if review is None:
        raise NotFound(f"no review #{review_id}")
    return review


def _action(c: Constitution, review: Review) -> str:
    return (
        f"Put the review on the agenda of {c.body(review.owner_body_id).name}. When its outcome "
        "is agreed, send it to the governance coordinator, who records it."
    )


def _owners(session: Session, c: Constitution, review: Review) -> list[Person]:
    return role_holders(session, c.body(review.owner_body_id).chair)


def remind(uow: UnitOfWork, review: Review, *, label: str, was_due: datetime | None = None) -> bool:
    """The notice that a review is due, then reminders, to the owning body's chair; none once
    the review has its outcome. Sent late (`was_due`), the message says when it was due."""
    session, c = uow.session, current_constitution(uow.session)
    if review.status not in (ReviewStatus.OPEN, ReviewStatus.OVERDUE):
        return False
    spec = spec_of(c, review.kind)
    notify(
        uow,
        ReviewDue(
            clause=spec.clause,
            review=spec.title,
            year=review.year,
            owner_body=c.body(review.owner_body_id).name,
            due_on=review.due_on,
            action=_action(c, review),
        )
        if label == "notice"
        else Reminder(
            clause=spec.clause,
            what=f"{spec.title} {review.year}",
            due=at_five(review.due_on),
            action=_action(c, review),
        ),
        people=_owners(session, c, review),
        key=f"{review_key(review)}:{label}",
        was_due=was_due,
    )
    uow.record("review.reminded", _subject(review), before=None, after={"step": label})
    return True


def escalate(uow: UnitOfWork, review: Review) -> bool:
    """A review without an outcome by the end of the grace period is overdue: the owning chair,
    the Board's chair and the coordinators are told."""
    session, c = uow.session, current_constitution(uow.session)
    if review.status != ReviewStatus.OPEN:
        return False
    before = _state(review)
    review.status = ReviewStatus.OVERDUE
    session.add(review)
    board = c.sole(BodyKind.BOARD)
    people = (
        _owners(session, c, review) + role_holders(session, board.chair) + coordinators(session, c)
    )
    spec = spec_of(c, review.kind)
    notify(
        uow,
        ReviewOverdue(  # TODO(notifications): a dedicated review_overdue template
            clause=spec.clause,
            what=f"Overdue: {spec.title} {review.year}",
            due=at_five(review.due_on),
            action=_action(c, review),
            escalated_to=board.name,
        ),
        people=people,
        key=f"{review_key(review)}:overdue",
    )
    uow.record("review.overdue", _subject(review), before=before, after=_state(review))
    return True


def close_challenge(uow: UnitOfWork, review: Review) -> bool:
    """7.2: when the challenge window closes, the published review is complete."""
    if review.status != ReviewStatus.PUBLISHED:
        return False
    before = _state(review)
    review.status, review.completed_at = ReviewStatus.COMPLETED, uow.clock.now()
    uow.session.add(review)
    uow.record("review.completed", _subject(review), before=before, after=_state(review))
    return True


# --- the steps as the step engine runs them: each False once the review has its outcome -------


def _notice(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    review = lock(uow.session, firing.subject_id)
    return remind(uow, review, label="notice", was_due=firing.was_due)


def _remind(uow: UnitOfWork, firing: Firing[DaysBefore]) -> bool:
    review = lock(uow.session, firing.subject_id)
    return remind(uow, review, label=f"reminder-{firing.params.days}")


def _escalate(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    return escalate(uow, lock(uow.session, firing.subject_id))


def _close_challenge(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    return close_challenge(uow, lock(uow.session, firing.subject_id))


STEP_KINDS: tuple[StepKind[NoParams] | StepKind[DaysBefore], ...] = (
    *ladder_kinds(LADDER, lock=lock, opening=_notice, reminder=_remind, overdue=_escalate),
    StepKind(CHALLENGE_CLOSES_STEP, lock=lock, act=_close_challenge, late=ALWAYS),
)


@dataclass(frozen=True)
class ReviewCompleted:
    review_id: int
    status: str
    challenge_closes_on: date | None
    representation_gaps: list[str] = field(default_factory=list)
    steps: list[PlannedStep] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "review_id": self.review_id,
            "status": self.status,
            "challenge_closes_on": (
                self.challenge_closes_on.isoformat() if self.challenge_closes_on else None
            ),
            "representation_gaps": self.representation_gaps,
            "steps": [s.as_dict() for s in self.steps],
        }


def representation_gaps(c: Constitution, holders: list[tuple[str, str, str]]) -> list[str]:
    """20.3.3-20.3.4 among the people: each statutory partner has someone on the Board."""
    clause = c.rules.get(StructuralRule.STATUTORY_PARTNERS_ON_BOARD)
    boards = c.bodies_of(BodyKind.BOARD)
    if clause is None or len(boards) != 1:
        return []
    board = boards[0]
    seated: set[str] = set()
    for seat in board.members:
        for r, o, _ in holders:
            org = seat.organisation or c.role(seat.role).organisation
            if r == seat.role and (org is None or o == org):
                seated.add(o)
    return [
        f"[{clause}] statutory partner '{org.id}' has no member holding a seat on {board.id}"
        for org in c.organisations
        if org.statutory_partner and org.id not in seated
    ]


def statutory_representation(session: Session, c: Constitution) -> list[str]:
    """20.3.5 with 20.3.3-20.3.4: the statutory partners without a member on the Board."""
    rows = session.exec(
        select(PersonRole.role_id, Person.organisation_id, Person.name)
        .join(Person, col(Person.id) == col(PersonRole.person_id))
        .where(col(Person.active).is_(True))
    ).all()
    return representation_gaps(c, [(r, o, n) for r, o, n in rows])


def complete_review(
    uow: UnitOfWork, *, kind: str, year: int, by: Principal, outcome: str
) -> ReviewCompleted:
    """Record a review's outcome (who may: the constitution's `review.complete`, by default the
    owning body's chair or deputy, or a coordinator). A review under 7.2 is published and stays
    open to challenge by any interested party for a window of working days; the membership review
    (20.3.5) checks that statutory representation still holds and tells the Board's chair of any
    gap. Pending reminders and escalation stop."""
    session, c = uow.session, current_constitution(uow.session)
    spec = spec_of(c, kind)
    outcome = clean_text(outcome, what="outcome", limit=1500, multiline=True)
    review = find_review(session, kind=kind, year=year)
    if review.status in (ReviewStatus.PUBLISHED, ReviewStatus.COMPLETED):
        raise Refused(f"{review_key(review)} already has an outcome (status {review.status})")
    now = uow.clock.now()
    before = _state(review)
    gaps: list[str] = []
    if spec.representation_check:
        gaps = statutory_representation(session, c)
        if gaps:
            outcome = outcome + "\nStatutory representation gaps: " + "; ".join(gaps)
    review.outcome = outcome[:2000]
    steps: list[PlannedStep] = []
    settle(session, subject=_subject(review), now=now)
    if spec.challenge_window:
        review.status, review.published_at = ReviewStatus.PUBLISHED, now
        review.challenge_closes_on = add_working_days(local_day(now), c.reminders.challenge_window)
        steps.append(
            plan(
                session,
                CHALLENGE_CLOSES_STEP,
                key=f"{review_key(review)}:challenge-closes",
                subject_id=review.id or 0,
                due_at=at_five(review.challenge_closes_on),
            )
        )
    else:
        review.status, review.completed_at = ReviewStatus.COMPLETED, now
    session.add(review)
    uow.record(
        "review.published" if review.status == ReviewStatus.PUBLISHED else "review.completed",
        _subject(review),
        before=before,
        after={**_state(review), "by": by.audit_name, "representation_gaps": gaps},
    )
    if gaps:
        board = c.sole(BodyKind.BOARD)
        notify(
            uow,
            RepresentationGap(  # TODO(notifications): a dedicated representation_gap template
                clause=c.cite("membership"),
                what="Statutory representation on the Board: " + "; ".join(gaps),
                due=at_five(review.due_on),
                action=cited(
                    "Fill the statutory partners' Board seats",
                    c.rules.get(StructuralRule.STATUTORY_PARTNERS_ON_BOARD),
                )
                + ".",
                gaps=gaps,
            ),
            people=role_holders(session, board.chair) + coordinators(session, c),
            # A review has one outcome (a second is refused): one notice of its gaps.
            key=f"{review_key(review)}:representation-gap",
        )
    assert review.id is not None
    return ReviewCompleted(review.id, review.status, review.challenge_closes_on, gaps, steps)


def challenge_review(uow: UnitOfWork, *, kind: str, year: int, by: str, challenge: str) -> int:
    """7.2: while a published review is open to challenge, any interested party may challenge it;
    the challenge goes to the owning body's chair. `by` names who challenges, as they gave it
    (kept in the message, not in the audit chain). Returns the number of challenges so far."""
    session, c = uow.session, current_constitution(uow.session)
    spec = spec_of(c, kind)
    challenge_clause = c.cite("challenge")
    if not spec.challenge_window:
        only = f"under {challenge_clause}" if challenge_clause else "with a challenge window"
        raise c.refused(
            f"{kind} is not open to public challenge (only reviews {only} are)", challenge_clause
        )
    review = find_review(session, kind=kind, year=year)
    challenge = clean_text(challenge, what="challenge", limit=2000, multiline=True)
    who = clean_text(by, what="who challenges", limit=200)
    if review.status != ReviewStatus.PUBLISHED or review.challenge_closes_on is None:
        raise c.refused(
            f"{review_key(review)} is not open to challenge (status {review.status})",
            challenge_clause,
        )
    if local_day(uow.clock.now()) > review.challenge_closes_on:
        raise c.refused(
            f"the challenge window of {review_key(review)} closed on "
            f"{review.challenge_closes_on.isoformat()}",
            challenge_clause,
        )
    review.challenges += 1
    session.add(review)
    notify(
        uow,
        ReviewChallenged(  # TODO(notifications): a dedicated review_challenged template
            clause=spec.clause,
            what=cited(f"Challenge to the published {spec.title} {review.year}", challenge_clause),
            due=at_five(review.due_on),
            action="Consider the challenge and respond to the challenger.",
            challenge=challenge,
            challenger=who,
        ),
        people=_owners(session, c, review) + coordinators(session, c),
        # Each challenge is its own message: the review's count of challenges names it.
        key=f"{review_key(review)}:challenge-{review.challenges}",
    )
    uow.record(CHALLENGED, _subject(review), before=None, after={"challenge": review.challenges})
    return review.challenges


# --- 7.2 challenges listed and answered ------------------------------------------------------
#
# A challenge is recorded as its `review.challenged` audit event (who: a member's pseudonym or
# `public`; which: its number), and its text and the challenger's name as given travel only in
# the messages to the owning body (not in the audit chain). The event's sequence number is the
# challenge's id; an answer is a `review.challenge_answered` event naming it.

CHALLENGED = "review.challenged"
CHALLENGE_ANSWERED = "review.challenge_answered"
_PUBLIC = "public"


@dataclass(frozen=True)
class ChallengeView:
    """One challenge to a published review: who made it, what it says, and its answer."""

    id: int
    review: str
    number: int
    received_at: datetime
    challenger: str
    member: bool
    text: str | None
    answered_at: datetime | None
    answered_by: str | None
    response: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "review": self.review,
            "number": self.number,
            "received_at": self.received_at.isoformat(),
            "challenger": self.challenger,
            "member": self.member,
            "text": self.text,
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
            "answered_by": self.answered_by,
            "response": self.response,
        }


def _events(session: Session, subject: str, action: str) -> list[AuditEvent]:
    return list(
        session.exec(
            select(AuditEvent)
            .where(AuditEvent.subject == subject, AuditEvent.action == action)
            .order_by(col(AuditEvent.seq))
        ).all()
    )


def _number(event: AuditEvent) -> int:
    return int(json.loads(event.after)["challenge"])


def _message(session: Session, prefix: str, kind: str) -> dict[str, Any] | None:
    """The context of the first message of `kind` whose key starts with `prefix`."""
    row = session.exec(
        select(OutboxMessage)
        .where(OutboxMessage.kind == kind, col(OutboxMessage.key).startswith(prefix))
        .order_by(col(OutboxMessage.id))
    ).first()
    return None if row is None else dict(json.loads(row.context))


def _person(session: Session, pseudonym: str) -> Person | None:
    if pseudonym == _PUBLIC:
        return None
    return session.exec(select(Person).where(Person.pseudonym == pseudonym)).first()


def _challenge_stem(review: Review, number: int) -> str:
    return f"{review_key(review)}:challenge-{number}"


def _view(
    session: Session, review: Review, event: AuditEvent, answer: AuditEvent | None
) -> ChallengeView:
    number = _number(event)
    stem = _challenge_stem(review, number)
    sent = _message(session, f"{stem}:", ReviewChallenged.kind) or {}
    person = _person(session, event.actor)
    answered_by = None
    if answer is not None:
        by = _person(session, answer.actor)
        answered_by = by.name if by is not None else answer.actor
    reply = _message(session, f"{stem}:answer:", ChallengeAnswer.kind) or {}
    return ChallengeView(
        id=event.seq,
        review=review_key(review),
        number=number,
        received_at=event.at,
        challenger=person.name if person is not None else str(sent.get("challenger", "unknown")),
        member=person is not None,
        text=sent.get("challenge"),
        answered_at=answer.at if answer is not None else None,
        answered_by=answered_by,
        response=reply.get("response"),
    )


def _answers(session: Session, review: Review) -> dict[int, AuditEvent]:
    return {_number(a): a for a in _events(session, _subject(review), CHALLENGE_ANSWERED)}


def list_challenges(session: Session, *, kind: str, year: int) -> list[ChallengeView]:
    """7.2: the challenges to a year's review, oldest first, each with its answer if it has one."""
    review = session.exec(select(Review).where(Review.kind == kind, Review.year == year)).first()
    if review is None:
        raise NotFound(f"no {kind} review for {year} has been opened")
    answers = _answers(session, review)
    return [
        _view(session, review, event, answers.get(_number(event)))
        for event in _events(session, _subject(review), CHALLENGED)
    ]


def challenged_review(session: Session, challenge_id: int) -> Review:
    """The review challenge `challenge_id` is about; NotFound if there is no such challenge."""
    event = session.get(AuditEvent, challenge_id)
    if event is None or event.action != CHALLENGED:
        raise NotFound(f"no challenge #{challenge_id} (see `wct review challenges KIND YEAR`)")
    review = session.get(Review, int(event.subject.removeprefix("review:")))
    if review is None:
        raise NotFound(f"challenge #{challenge_id} is about no review")
    return review


@dataclass(frozen=True)
class ChallengeAnswered:
    """An answer recorded; whether the challenger could be told, and what to do if not."""

    challenge_id: int
    review: str
    number: int
    challenger: str
    told: bool
    queued: int
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "challenge_id": self.challenge_id,
            "review": self.review,
            "number": self.number,
            "challenger": self.challenger,
            "told": self.told,
            "queued": self.queued,
            "note": self.note,
        }


def answer_challenge(uow: UnitOfWork, *, challenge_id: int, response: str) -> ChallengeAnswered:
    """7.2: the owning body answers a challenge to its published review, once (who may: the
    constitution's `review.answer_challenge`, by default the owning body's chair or deputy, or a
    coordinator). A member who challenged is sent the answer; an outside party gave only a name,
    so nothing can be sent to them, and the result says so."""
    session, c = uow.session, current_constitution(uow.session)
    response = clean_text(response, what="response", limit=2000, multiline=True)
    review = lock(session, challenged_review(session, challenge_id).id or 0)
    event = session.get(AuditEvent, challenge_id)
    assert event is not None
    number = _number(event)
    answered = _answers(session, review).get(number)
    if answered is not None:
        raise c.refused(
            f"challenge #{challenge_id} to {review_key(review)} was answered on "
            f"{local_day(answered.at).isoformat()}",
            c.cite("challenge"),
        )
    view = _view(session, review, event, None)
    person = _person(session, event.actor)
    spec = spec_of(c, review.kind)
    queued = 0
    if person is not None and person.active:
        queued = notify(
            uow,
            ChallengeAnswer(
                clause=c.cite("challenge"),
                action="Nothing, unless you want to take it further: reply to the governance "
                "coordinator.",
                review=spec.title,
                year=review.year,
                owner_body=c.body(review.owner_body_id).name,
                challenge=view.text or "(the text of the challenge was not kept)",
                response=response,
                answered_on=local_day(uow.clock.now()),
            ),
            people=[person],
            key=f"{_challenge_stem(review, number)}:answer",
        )
    told = queued > 0
    if told:
        note = f"the answer was sent to {view.challenger}"
    elif person is None:
        anyone = ": ".join(filter(None, (c.cite("challenge"), "any interested party")))
        note = (
            f"{view.challenger} is not a member and gave only a name ({anyone}): nothing could "
            "be sent; pass the answer on yourself"
        )
    else:
        note = f"{view.challenger} is no longer reachable: nothing could be sent"
    uow.record(
        CHALLENGE_ANSWERED,
        _subject(review),
        before=None,
        after={"challenge": number, "event": challenge_id, "told": told},
    )
    return ChallengeAnswered(
        challenge_id, review_key(review), number, view.challenger, told, queued, note
    )


def open_reviews(session: Session) -> list[Review]:
    return list(
        session.exec(
            select(Review)
            .where(
                col(Review.status).in_(
                    (ReviewStatus.OPEN, ReviewStatus.OVERDUE, ReviewStatus.PUBLISHED)
                )
            )
            .order_by(col(Review.due_on))
        ).all()
    )


def next_due_year(c: Constitution, kind: str, today: date) -> int:
    """The year of the review's next due date on or after `today`."""
    spec = spec_of(c, kind)
    return today.year if due_date(spec, today.year) >= today else today.year + 1
