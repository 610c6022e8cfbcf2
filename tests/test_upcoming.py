"""The forward look (`wct upcoming`, the sweep's `BODY-forward-look` artifacts), 7.2 challenges
listed and answered, and due dates on working days."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from flows.forward_look import artifact_key
from flows.steps import sweep
from models import meetings, reports, reviews
from models.calendar import bank_holiday, is_working_day
from models.clock import FixedClock
from models.constitution import Constitution
from models.errors import InvalidInput, NotFound, Refused
from models.instructions import (
    AnswerChallenge,
    ChallengeReview,
    CompleteReview,
    OpenCallToAccount,
    OpenDispute,
)
from models.permissions import NotPermitted
from models.tables import AuditEvent, MeetingAction, OutboxMessage, Person
from models.upcoming import Due, Upcoming, display_day, upcoming

from .cases_support import act
from .conftest import DATA, Cli
from .cycles_support import artifact, london, populate, run, state
from .flows_harness import CycleDb

MONDAY = london(2027, 2, 22, 9, 0)


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def person_id(engine: Engine, email: str) -> int:
    with Session(engine) as session:
        return session.exec(select(Person.id).where(Person.email == email)).one() or 0


def look(engine: Engine, clock: FixedClock, **kw: object) -> list[Upcoming]:
    with Session(engine) as session:
        return upcoming(session, now=clock.now(), **kw)  # type: ignore[arg-type]


def add_action(
    engine: Engine,
    clock: FixedClock,
    meeting_id: int,
    *,
    text: str,
    owner: int,
    due_on: date,
    status: str = "open",
) -> None:
    """An action as the tracker records it (the tracker's commands are another module's)."""
    row = MeetingAction(
        meeting_id=meeting_id,
        text=text,
        owner_id=owner,
        due_on=due_on,
        status=status,
        created_at=clock.now(),
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()


def calendar_of(engine: Engine, clock: FixedClock) -> int:
    """The Board's 9 March 2027 meeting, the MoU review opened, a dispute, and two actions."""
    clock.set(MONDAY)
    planned = run(
        engine, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=date(2027, 3, 9))
    )
    run(engine, clock, lambda uow: reviews.open_review(uow, kind="mou-review", year=2027))
    act(
        engine,
        clock,
        "pat@police.example",
        OpenDispute(title="Front door", parties=["merseyside-police", "nhs-wirral"]),
    )
    call = OpenCallToAccount(
        organisation="merseyside-police",
        evidence="Section 11 audit",
        proposed_deadline=date(2027, 3, 31),
    )
    act(engine, clock, "chair@wscb.example", call)
    eve = person_id(engine, "eve@council.example")
    add_action(
        engine,
        clock,
        planned.meeting_id,
        text="Map youth provision",
        owner=eve,
        due_on=date(2027, 3, 20),
    )
    add_action(
        engine,
        clock,
        planned.meeting_id,
        text="Done already",
        owner=eve,
        due_on=date(2027, 3, 10),
        status="done",
    )
    add_action(
        engine, clock, planned.meeting_id, text="Far off", owner=eve, due_on=date(2027, 6, 1)
    )
    return planned.meeting_id


# --- dates shown and due on working days (unit) ----------------------------------------------


def test_a_day_is_shown_short_and_says_when_it_is_not_a_working_day() -> None:
    assert display_day(date(2027, 3, 9)) == "Tue 9 Mar 2027"
    assert display_day(date(2027, 11, 27)) == "Sat 27 Nov 2027, weekend"
    may_day = date(2027, 5, 3)
    assert display_day(may_day) == f"Mon 3 May 2027, {bank_holiday(may_day)}"


def test_the_2027_commissioning_review_is_due_on_the_friday_before_its_sunday(
    wirral: Constitution,
) -> None:
    spec = reviews.spec_of(wirral, "commissioning-review")
    assert (spec.due_month, spec.due_day) == (11, 28)  # Sunday 28 November 2027
    assert reviews.due_date(spec, 2027) == date(2027, 11, 26)
    assert reviews.due_date(spec, 2028) == date(2028, 11, 28)  # a Tuesday stays


def test_no_review_or_report_in_2027_2028_falls_due_on_a_non_working_day(
    wirral: Constitution,
) -> None:
    review_days = [reviews.due_date(s, y) for s in wirral.reviews for y in (2027, 2028)]
    periods = [f"{y}-Q{q}" for y in (2027, 2028) for q in (1, 2, 3, 4)]
    report_days = [reports.due_date(s, p) for s in wirral.quarterly_reports for p in periods]
    assert len(review_days) == 2 * len(wirral.reviews) and len(report_days) == 8 * 2
    assert [d for d in review_days + report_days if not is_working_day(d)] == []
    assert date(2027, 11, 28) not in review_days


def test_an_opened_review_is_due_on_its_working_day(people: Engine, clock: FixedClock) -> None:
    opened = run(
        people, clock, lambda uow: reviews.open_review(uow, kind="commissioning-review", year=2027)
    )
    assert opened.due_on == date(2027, 11, 26)


# --- the forward look ------------------------------------------------------------------------


def test_the_forward_look_lists_what_is_due_per_body_in_date_order(
    people: Engine, clock: FixedClock
) -> None:
    calendar_of(people, clock)
    rows = look(people, clock)
    assert [r.on for r in rows] == sorted(r.on for r in rows)
    assert all(MONDAY.date() <= r.on <= date(2027, 4, 5) for r in rows)
    board = [(r.day, r.due, r.waits_on) for r in rows if r.body == "board"]
    assert ("Tue 9 Mar 2027", Due.MEETING, "Lee Lead") in board
    assert ("Wed 31 Mar 2027", Due.REVIEW, "Lee Lead") in board
    assert ("Sat 20 Mar 2027, weekend", Due.ACTION, "Eve Elected") in board
    deadline = [r for r in rows if r.due == Due.ITEMS_DEADLINE and r.body == "board"]
    assert len(deadline) == 1 and deadline[0].on < date(2027, 3, 9)
    dispute = [r for r in rows if r.due == Due.CASE and r.body == "board"]
    assert len(dispute) == 1
    assert dispute[0].on == date(2027, 3, 22)  # 20 working days of informal discussion (18.2)
    assert dispute[0].waits_on == "Merseyside Police, NHS Wirral"
    wscb = [r for r in rows if r.body == "wscb"]
    assert wscb and all(r.due == Due.CASE and "call to account" in r.what for r in wscb)
    assert {r.waits_on for r in wscb} == {"Merseyside Police"}  # the partner's move (11.5.1)
    actions = [r.what for r in rows if r.due == Due.ACTION]
    assert actions == [a for a in actions if "Map youth provision" in a] and len(actions) == 1
    # Who it waits on is a name or an organisation, never a pseudonym or an id.
    with Session(people) as session:
        pseudonyms = set(session.exec(select(Person.pseudonym)).all())
    assert not any(p in r.what or p in r.waits_on for r in rows for p in pseudonyms)
    # A review not yet opened is still in the look, by its working-day due date.
    clock.set(london(2027, 11, 1, 9, 0))
    later = look(people, clock, body="board")
    assert any(
        r.on == date(2027, 11, 26) and "commissioning" in r.what and "not yet opened" in r.what
        for r in later
    )


def test_the_forward_look_of_one_body_and_a_short_window(people: Engine, clock: FixedClock) -> None:
    calendar_of(people, clock)
    board = look(people, clock, body="board")
    assert board and {r.body for r in board} == {"board"}
    assert len(board) < len(look(people, clock))
    assert look(people, clock, body="board", days=7) == [
        r for r in board if r.on <= date(2027, 3, 1)
    ]
    with pytest.raises(NotFound):
        look(people, clock, body="no-such-body")
    with pytest.raises(InvalidInput):
        look(people, clock, days=-1)


# --- 7.2 challenges listed and answered --------------------------------------------------------

CYPP = "cypp-review"


def published_and_challenged(engine: Engine, clock: FixedClock) -> list[reviews.ChallengeView]:
    run(engine, clock, lambda uow: reviews.open_review(uow, kind=CYPP, year=2027))
    clock.set(london(2027, 6, 1, 10, 0))
    outcome = CompleteReview(kind=CYPP, year=2027, outcome="Reviewed; published.")
    act(engine, clock, "dcs@council.example", outcome)
    act(engine, clock, "eve@council.example", ChallengeReview(kind=CYPP, year=2027, text="Thin."))
    act(engine, clock, "A parent", ChallengeReview(kind=CYPP, year=2027, text="Too late."))
    with Session(engine) as session:
        return reviews.list_challenges(session, kind=CYPP, year=2027)


def answers_to(engine: Engine) -> dict[str, int]:
    """Messages of the answer kind per recipient."""
    with Session(engine) as session:
        rows = session.exec(
            select(Person.email, func.count())
            .join(OutboxMessage, col(OutboxMessage.person_id) == col(Person.id))
            .where(OutboxMessage.kind == "challenge_answer")
            .group_by(col(Person.email))
        ).all()
    return dict(rows)


def test_challenges_are_listed_with_who_made_them_and_what_they_say(
    people: Engine, clock: FixedClock
) -> None:
    found = published_and_challenged(people, clock)
    assert [(v.number, v.challenger, v.member, v.text) for v in found] == [
        (1, "Eve Elected", True, "Thin."),
        (2, "A parent", False, "Too late."),
    ]
    assert all(v.answered_at is None and v.review == "review:cypp-review:2027" for v in found)
    with Session(people) as session:
        assert session.get(AuditEvent, found[0].id) is not None
        with pytest.raises(NotFound):
            reviews.list_challenges(session, kind=CYPP, year=2030)


def test_a_member_who_challenged_is_sent_the_answer_once(people: Engine, clock: FixedClock) -> None:
    member, _ = published_and_challenged(people, clock)
    answer = AnswerChallenge(challenge_id=member.id, response="Youth services are in year two.")
    done = act(people, clock, "dcs@council.example", answer)
    assert done.told and done.queued == 1 and done.number == 1
    assert answers_to(people) == {"eve@council.example": 1}
    with Session(people) as session:
        (view, _) = reviews.list_challenges(session, kind=CYPP, year=2027)
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == reviews.CHALLENGE_ANSWERED)
        ).all()
    assert view.answered_by == "Dee Director" and view.response == "Youth services are in year two."
    assert len(events) == 1 and json.loads(events[0].after)["told"] is True
    assert "Youth" not in events[0].after  # the answer's text stays out of the audit chain
    before = state(people)
    with pytest.raises(Refused, match="was answered on 2027-06-01"):
        act(people, clock, "dcs@council.example", answer)
    assert state(people) == before and answers_to(people) == {"eve@council.example": 1}


def test_an_outsider_cannot_be_sent_the_answer_and_the_result_says_so(
    people: Engine, clock: FixedClock
) -> None:
    _, outsider = published_and_challenged(people, clock)
    answer = AnswerChallenge(challenge_id=outsider.id, response="Thank you; noted.")
    done = act(people, clock, "coord@council.example", answer)
    assert not done.told and done.queued == 0
    assert "A parent is not a member" in done.note and "nothing could be sent" in done.note
    assert answers_to(people) == {}
    with Session(people) as session:
        answered = reviews.list_challenges(session, kind=CYPP, year=2027)[1]
    assert answered.answered_by == "Cora Coordinator" and answered.response is None


def test_only_the_owning_body_answers_and_bad_answers_change_nothing(
    people: Engine, clock: FixedClock
) -> None:
    member, _ = published_and_challenged(people, clock)
    before = state(people)
    with pytest.raises(NotPermitted):
        act(
            people,
            clock,
            "eve@council.example",
            AnswerChallenge(challenge_id=member.id, response="x"),
        )
    with pytest.raises(InvalidInput):
        act(
            people,
            clock,
            "dcs@council.example",
            AnswerChallenge(challenge_id=member.id, response=" "),
        )
    with pytest.raises(NotFound):
        act(people, clock, "dcs@council.example", AnswerChallenge(challenge_id=1, response="x"))
    assert state(people) == before and answers_to(people) == {}


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_upcoming_and_review_challenges(cli: Cli, clock: FixedClock) -> None:
    assert cli("init").exit_code == 0
    assert cli("members", "import", DATA / "cycles-members.csv").exit_code == 0
    clock.set(MONDAY)
    assert cli("meeting", "plan", "board", "2027-03-09").exit_code == 0
    shown = cli("upcoming", "--body", "board")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0] == "Wirral Children's Trust Board (board)"
    assert "Tue 9 Mar 2027" in shown.stdout and "waits on Lee Lead" in shown.stdout
    as_json = json.loads(cli("upcoming", "--days", "7", "--json").stdout)
    assert as_json and all(r["on"] <= "2027-03-01" for r in as_json)
    assert cli("upcoming", "--body", "nope").exit_code == 3
    assert cli("review", "open", "cypp-review", "2027").exit_code == 0
    clock.set(london(2027, 6, 1, 10, 0))
    outcome = ("--outcome", "Published.", "--as", "dcs@council.example")
    assert cli("review", "complete", "cypp-review", "2027", *outcome).exit_code == 0
    challenge = ("--text", "Thin on youth.", "--as", "A parent")
    assert cli("review", "challenge", "cypp-review", "2027", *challenge).exit_code == 0
    listed = json.loads(cli("review", "challenges", "cypp-review", "2027", "--json").stdout)
    assert [(c["challenger"], c["text"]) for c in listed] == [("A parent", "Thin on youth.")]
    answered = cli(
        "review",
        "answer",
        str(listed[0]["id"]),
        "--response",
        "Noted.",
        "--as",
        "dcs@council.example",
    )
    assert answered.exit_code == 0, answered.output
    assert "nothing could be sent" in answered.stdout
    again = cli("review", "challenges", "cypp-review", "2027")
    assert "answered 2027-06-01 by Dee Director" in again.stdout
    refused = cli(
        "review", "answer", str(listed[0]["id"]), "--response", "x", "--as", "dcs@council.example"
    )
    assert refused.exit_code == 4


# --- the artifact the sweep publishes --------------------------------------------------------


def test_the_sweep_publishes_each_bodys_forward_look(cycle_db: CycleDb) -> None:  # noqa: ARG001
    done = asyncio.run(sweep(as_of=MONDAY, timers=False))
    assert artifact_key("board") == "board-forward-look"
    assert done["ahead"]["board-forward-look"] > 0
    rows = json.loads(asyncio.run(artifact("board-forward-look")))
    assert len(rows) == done["ahead"]["board-forward-look"]
    meeting = "meeting: Wirral Children's Trust Board meeting at 14:00"
    assert [r["Waits on"] for r in rows if r["What"].startswith(meeting)] == ["Lee Lead"]
    assert any(r["Date"] == "Tue 9 Mar 2027" and r["What"].startswith(meeting) for r in rows)
    assert all(set(r) == {"Date", "What", "Waits on"} for r in rows)
    executive = json.loads(asyncio.run(artifact("executive-forward-look")))
    assert executive and all(
        "Wirral Children's Trust Board meeting" not in r["What"] for r in executive
    )
