"""Annual reviews (19.1, 11.4.2, 7.2 + 11.3.4, 17.2, 20.3.5, 13.3, 11.2.4)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import reviews
from models.clock import FixedClock
from models.errors import WctError
from models.instructions import ChallengeReview, CompleteReview
from models.permissions import NotPermitted
from models.tables import Review

from .cases_support import act
from .cycles_support import fire, london, populate, recipients, run, state, step_status

MOU = "review:mou-review:2027"
CYPP = "review:cypp-review:2027"


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def open_review(engine: Engine, clock: FixedClock, kind: str) -> reviews.ReviewOpened:
    return run(engine, clock, lambda uow: reviews.open_review(uow, kind=kind, year=2027))


def complete(engine: Engine, clock: FixedClock, kind: str, by: str) -> reviews.ReviewCompleted:
    outcome = CompleteReview(kind=kind, year=2027, outcome="Reviewed; no change needed.")
    return act(engine, clock, by, outcome)


def challenge(engine: Engine, clock: FixedClock, kind: str, by: str, text: str) -> int:
    return act(engine, clock, by, ChallengeReview(kind=kind, year=2027, text=text))


def test_a_review_is_opened_once_with_owner_due_date_and_steps(
    people: Engine, clock: FixedClock
) -> None:
    opened = open_review(people, clock, "mou-review")
    assert opened.created and opened.due_on == date(2027, 3, 31) and opened.key == MOU
    assert [s.key.rsplit(":", 1)[1] for s in opened.steps] == [
        "notice",
        "reminder-10",
        "reminder-5",
        "reminder-1",
        "overdue",
    ]
    assert opened.steps[-1].due_at == london(2027, 4, 5, 17, 0)  # 3 working days after
    before = state(people)
    again = open_review(people, clock, "mou-review")
    assert not again.created and again.review_id == opened.review_id
    assert state(people) == before
    with Session(people) as session:
        review = session.get(Review, opened.review_id)
        assert review is not None and review.owner_body_id == "board"


@pytest.mark.parametrize(
    ("kind", "year", "message"),
    [("nope", 2027, "no annual review 'nope'"), ("mou-review", 1850, "out of range")],
)
def test_bad_review_is_refused(
    people: Engine, clock: FixedClock, kind: str, year: int, message: str
) -> None:
    before = state(people)
    with pytest.raises(WctError, match=message):
        run(people, clock, lambda uow: reviews.open_review(uow, kind=kind, year=year))
    assert state(people) == before


def test_reminders_stop_once_the_outcome_is_recorded(people: Engine, clock: FixedClock) -> None:
    open_review(people, clock, "mou-review")
    assert fire(people, clock, f"{MOU}:notice") == "acted"
    assert recipients(people, "review_due", MOU) == ["lead@council.example"]
    before = state(people)
    with pytest.raises(NotPermitted, match="may not review.complete for board"):
        complete(people, clock, "mou-review", "olly@fire.example")
    assert state(people) == before
    done = complete(people, clock, "mou-review", "lead@council.example")
    assert done.status == reviews.COMPLETED
    assert step_status(people, f"{MOU}:reminder-1") == "settled"
    assert fire(people, clock, f"{MOU}:overdue") == "settled"
    assert recipients(people, "reminder", MOU) == []
    with pytest.raises(WctError, match="already has an outcome"):
        complete(people, clock, "mou-review", "lead@council.example")


def test_a_review_without_outcome_is_escalated(people: Engine, clock: FixedClock) -> None:
    opened = open_review(people, clock, "wscb-annual-report")
    assert fire(people, clock, "review:wscb-annual-report:2027:overdue") == "acted"
    assert recipients(people, "reminder", "review:wscb-annual-report:2027:overdue") == [
        "chair@wscb.example",
        "coord@council.example",
        "lead@council.example",
    ]
    with Session(people) as session:
        review = session.get(Review, opened.review_id)
        assert review is not None and review.status == reviews.OVERDUE_STATUS


def test_cypp_review_is_published_then_open_to_challenge(people: Engine, clock: FixedClock) -> None:
    open_review(people, clock, "cypp-review")
    clock.set(london(2027, 6, 1, 10, 0))
    published = complete(people, clock, "cypp-review", "dcs@council.example")
    assert published.status == reviews.PUBLISHED
    assert published.challenge_closes_on == date(2027, 6, 29)  # 20 working days (7.2)
    assert [s.key for s in published.steps] == [f"{CYPP}:challenge-closes"]
    count = challenge(people, clock, "cypp-review", "A parent", "Youth services are thin.")
    assert count == 1
    assert "dcs@council.example" in recipients(people, "reminder", f"{CYPP}:challenge-1")
    before = state(people)
    with pytest.raises(WctError, match="not open to public challenge"):
        challenge(people, clock, "mou-review", "x", "y")
    with pytest.raises(WctError, match="challenge is empty"):
        challenge(people, clock, "cypp-review", "x", "  ")
    assert state(people) == before
    assert fire(people, clock, f"{CYPP}:challenge-closes") == "acted"
    with Session(people) as session:
        review = reviews.find_review(session, kind="cypp-review", year=2027)
        assert review.status == reviews.COMPLETED and review.challenges == 1
    clock.advance(timedelta(days=1))
    with pytest.raises(WctError, match="not open to challenge"):
        challenge(people, clock, "cypp-review", "x", "late")


def test_membership_review_checks_statutory_representation(
    people: Engine, clock: FixedClock
) -> None:
    open_review(people, clock, "membership-review")
    done = complete(people, clock, "membership-review", "lead@council.example")
    # The test partnership seats only the council, NHS Wirral and the police on the Board.
    assert any("'merseyside-fire'" in gap for gap in done.representation_gaps)
    assert not any("'nhs-wirral'" in gap for gap in done.representation_gaps)
    assert recipients(people, "reminder", "review:membership-review:2027:representation-gap") == [
        "coord@council.example",
        "lead@council.example",
    ]
    with Session(people) as session:
        review = reviews.find_review(session, kind="membership-review", year=2027)
        assert review.outcome is not None and "Statutory representation gaps" in review.outcome
