"""Meeting cycles (20.4.1, 21.4.1, 22.4.1): plan, steps, agenda, record, 6.2, minutes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import meetings
from models.clock import FixedClock
from models.commands import apply_constitution
from models.constitution import Inquorate, Quorum, load_constitution
from models.decision import Method, Outcome, Vote
from models.errors import Refused, WctError
from models.instructions import SendApologies, SubmitItem
from models.permissions import NotPermitted
from models.steps.engine import run_step
from models.tables import Meeting, OutboxMessage, VoteRecord
from models.uow import UnitOfWork

from .cases_support import act
from .cycles_support import fire, london, populate, recipients, run, state, step_status

BOARD_DAY = date(2027, 3, 9)  # 20.4.1: bi-monthly, second Tuesday
STEM = "meeting:board:2027-03-09"
BOARD = sorted(
    [
        "lead@council.example",
        "eve@council.example",
        "ed@council.example",
        "dcs@council.example",
        "chair@wscb.example",
        "nina@nhs.example",
        "pat@police.example",
    ]
)


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def plan(
    engine: Engine, clock: FixedClock, body: str = "board", day: date = BOARD_DAY
) -> meetings.MeetingPlanned:
    return run(engine, clock, lambda uow: meetings.plan_meeting(uow, body_id=body, day=day))


def test_plan_meeting_computes_each_step_in_working_days(people: Engine, clock: FixedClock) -> None:
    planned = plan(people, clock)
    assert planned.created and planned.starts_at == london(2027, 3, 9, 14, 0)
    due = {s.key: s.due_at for s in planned.steps}
    assert due == {
        f"{STEM}:call_for_items": london(2027, 2, 16, 9, 0),  # 15 working days before
        f"{STEM}:items_deadline": london(2027, 2, 25, 17, 0),  # 8
        f"{STEM}:agenda": london(2027, 3, 2, 9, 0),  # 5
        f"{STEM}:reminder": london(2027, 3, 8, 9, 0),  # 1
        f"{STEM}:minutes_due": london(2027, 3, 23, 17, 0),  # 10 after
    }
    assert [s.run_name for s in planned.steps][2] == "board-2027-03-09-agenda"
    assert planned.ical_uid == "board-20270309@wirral-childrens-trust.wct"


def test_steps_skip_bank_holidays(people: Engine, clock: FixedClock) -> None:
    # The Board of 2027-05-11: Early May bank holiday (3 May) is not a working day.
    planned = plan(people, clock, day=date(2027, 5, 11))
    deadline = next(s for s in planned.steps if s.kind == meetings.ITEMS_DEADLINE)
    assert deadline.due_at == london(2027, 4, 28, 17, 0)  # 8 working days back, skipping 3 May


def test_planning_twice_is_one_meeting(people: Engine, clock: FixedClock) -> None:
    first = plan(people, clock)
    before = state(people)
    again = plan(people, clock)
    assert not again.created and again.meeting_id == first.meeting_id
    assert again.ical_uid == first.ical_uid
    assert [s.key for s in again.steps] == [s.key for s in first.steps]
    assert state(people) == before


@pytest.mark.parametrize(
    ("body", "day", "message"),
    [
        ("nobody", BOARD_DAY, "no body 'nobody'"),
        (
            "board",
            date(2027, 3, 10),
            "board does not meet on 2027-03-10 by its cadence .next: 2027-05-11.",
        ),
        ("board", date(2026, 11, 10), "already started"),
    ],
)
def test_bad_plan_is_refused_and_changes_nothing(
    people: Engine, clock: FixedClock, body: str, day: date, message: str
) -> None:
    before = state(people)
    with pytest.raises(WctError, match=message):
        plan(people, clock, body, day)
    assert state(people) == before


def test_call_for_items_goes_to_every_board_member_once(people: Engine, clock: FixedClock) -> None:
    plan(people, clock)
    assert fire(people, clock, f"{STEM}:call_for_items") == "acted"
    assert recipients(people, "call_for_items") == BOARD
    assert run_step(people, clock, f"{STEM}:call_for_items").result == "done"
    assert recipients(people, "call_for_items") == BOARD
    with Session(people) as session:
        message = session.exec(
            select(OutboxMessage).where(OutboxMessage.kind == "call_for_items")
        ).first()
    assert message is not None
    context = json.loads(message.context)
    assert context["items_due"] == "2027-02-25T17:00:00+00:00"
    assert context["clause"] == "20.4.1" and context["action"]


def item(planned: meetings.MeetingPlanned, title: str) -> SubmitItem:
    return SubmitItem(meeting_id=planned.meeting_id, title=title)


def test_agenda_holds_standing_items_then_submitted_items(
    people: Engine, clock: FixedClock
) -> None:
    planned = plan(people, clock)
    fire(people, clock, f"{STEM}:call_for_items")
    act(people, clock, "nina@nhs.example", item(planned, "Youth offer"))
    with pytest.raises(NotPermitted, match="may not meeting.item for board"):
        act(people, clock, "olly@fire.example", item(planned, "Mine"))
    assert fire(people, clock, f"{STEM}:items_deadline") == "acted"
    before = state(people)
    with pytest.raises(WctError, match="items deadline .* passed"):
        act(people, clock, "nina@nhs.example", item(planned, "Late"))
    assert state(people) == before
    with Session(people) as session:
        titles = [line.title for line in meetings.agenda(session, planned.meeting_id)]
    assert titles == [
        "Apologies for absence",
        "Declarations of interest (18.1)",
        "Minutes of the last meeting",
        "WSCB quarterly safeguarding report (11.4.1)",
        "Performance reports (14.1)",
        "Risks escalated to the Board (16.1)",
        "Items awaiting approval",
        "Youth offer",
        "Any other business",
    ]
    assert fire(people, clock, f"{STEM}:agenda") == "acted"
    assert recipients(people, "meeting_notice") == BOARD
    assert recipients(people, "agenda") == BOARD
    with Session(people) as session:
        meeting = session.get(Meeting, planned.meeting_id)
        assert meeting is not None and meeting.status == meetings.PUBLISHED


def test_reminder_skips_members_who_sent_apologies(people: Engine, clock: FixedClock) -> None:
    planned = plan(people, clock)
    act(people, clock, "eve@council.example", SendApologies(meeting_id=planned.meeting_id))
    fire(people, clock, f"{STEM}:agenda")
    assert fire(people, clock, f"{STEM}:reminder") == "acted"
    assert recipients(people, "reminder") == [e for e in BOARD if e != "eve@council.example"]


def held(engine: Engine, clock: FixedClock, present: list[str]) -> int:
    planned = plan(engine, clock)
    fire(engine, clock, f"{STEM}:agenda")
    clock.set(planned.starts_at + timedelta(hours=2))
    run(
        engine,
        clock,
        lambda uow: meetings.record_attendance(
            uow, meeting_id=planned.meeting_id, present=present, apologies=["ed@council.example"]
        ),
    )
    return planned.meeting_id


def test_tie_is_decided_by_the_casting_vote_and_explained(
    people: Engine, clock: FixedClock
) -> None:
    meeting_id = held(
        people,
        clock,
        ["lead@council.example", "eve@council.example", "dcs@council.example", "nina@nhs.example"],
    )
    votes = {
        "lead@council.example": Vote.FOR,
        "eve@council.example": Vote.FOR,
        "dcs@council.example": Vote.AGAINST,
        "nina@nhs.example": Vote.AGAINST,
    }
    decided = run(
        people,
        clock,
        lambda uow: meetings.record_motion(
            uow,
            meeting_id=meeting_id,
            text="Adopt the youth offer",
            item=8,
            votes=votes,
            casting_vote=Vote.FOR,
        ),
    )
    assert decided.decision.outcome is Outcome.CARRIED
    assert decided.decision.method is Method.CASTING_VOTE
    assert "casting vote after a tie: 2 for, 2 against" in decided.decision.explanation
    assert decided.decision.explanation.endswith("(6.2).")  # the clause Wirral's file gives
    with Session(people) as session:
        casting = session.exec(
            select(VoteRecord).where(
                VoteRecord.motion_id == decided.motion_id, col(VoteRecord.casting).is_(True)
            )
        ).all()
        assert [v.vote for v in casting] == ["for"]
        draft = meetings.minutes_data(session, meeting_id)
    assert draft.motions[0]["explanation"] == decided.decision.explanation
    assert len(draft.attendance["present"]) == 4
    assert len(draft.attendance["apologies"]) == 1 and len(draft.attendance["absent"]) == 2


def test_record_refuses_bad_input_and_changes_nothing(people: Engine, clock: FixedClock) -> None:
    planned = plan(people, clock)
    before = state(people)
    with pytest.raises(WctError, match="has not started yet"):
        run(
            people,
            clock,
            lambda uow: meetings.record_attendance(
                uow, meeting_id=planned.meeting_id, present=["lead@council.example"]
            ),
        )
    clock.set(planned.starts_at)
    with pytest.raises(WctError, match="not members of board"):
        run(
            people,
            clock,
            lambda uow: meetings.record_attendance(
                uow, meeting_id=planned.meeting_id, present=["olly@fire.example"]
            ),
        )
    with pytest.raises(WctError, match="no active member 'nobody@x.example'"):
        run(
            people,
            clock,
            lambda uow: meetings.record_attendance(
                uow, meeting_id=planned.meeting_id, present=["nobody@x.example"]
            ),
        )
    with pytest.raises(WctError, match="no meeting #999"):
        run(
            people,
            clock,
            lambda uow: meetings.record_attendance(
                uow, meeting_id=999, present=["lead@council.example"]
            ),
        )
    with pytest.raises(WctError, match="no attendance recorded"):
        run(
            people,
            clock,
            lambda uow: meetings.record_motion(
                uow, meeting_id=planned.meeting_id, text="x", consensus=True
            ),
        )
    assert state(people) == before
    run(
        people,
        clock,
        lambda uow: meetings.record_attendance(
            uow,
            meeting_id=planned.meeting_id,
            present=["eve@council.example", "ed@council.example"],
        ),
    )
    before = state(people)
    with pytest.raises(WctError, match="votes recorded for people not present"):
        run(
            people,
            clock,
            lambda uow: meetings.record_motion(
                uow,
                meeting_id=planned.meeting_id,
                text="x",
                votes={"lead@council.example": Vote.FOR},
                chaired_by="eve@council.example",
            ),
        )
    with pytest.raises(WctError, match="neither the chair nor a deputy"):
        run(
            people,
            clock,
            lambda uow: meetings.record_motion(
                uow, meeting_id=planned.meeting_id, text="x", consensus=True
            ),
        )
    with pytest.raises(WctError, match="was not present"):
        run(
            people,
            clock,
            lambda uow: meetings.declare_interest(
                uow,
                meeting_id=planned.meeting_id,
                who="lead@council.example",
                item=1,
                nature="Employer",
            ),
        )
    assert state(people) == before


def test_declarations_and_minutes_stop_the_minutes_chase(people: Engine, clock: FixedClock) -> None:
    meeting_id = held(people, clock, ["lead@council.example", "nina@nhs.example"])
    run(
        people,
        clock,
        lambda uow: meetings.declare_interest(
            uow,
            meeting_id=meeting_id,
            who="nina@nhs.example",
            item=3,
            nature="Employed by a provider",
        ),
    )
    run(
        people,
        clock,
        lambda uow: meetings.record_motion(
            uow, meeting_id=meeting_id, text="Note the report", consensus=True
        ),
    )
    draft = run(people, clock, lambda uow: meetings.draft_minutes(uow, meeting_id=meeting_id))
    assert draft.declarations and "Employed by a provider" in draft.declarations[0]
    assert draft.motions[0]["method"] == "consensus"
    assert step_status(people, f"{STEM}:minutes_due") == "settled"
    assert run_step(people, clock, f"{STEM}:minutes_due").result == "settled"
    assert recipients(people, "reminder", f"{STEM}:minutes") == []


def test_minutes_not_drafted_are_chased(people: Engine, clock: FixedClock) -> None:
    held(people, clock, ["lead@council.example"])
    assert fire(people, clock, f"{STEM}:minutes_due") == "acted"
    assert recipients(people, "reminder", f"{STEM}:minutes-overdue") == [
        "coord@council.example",
        "lead@council.example",
    ]


def test_overdue_minutes_appear_on_the_overdue_list_only_after_their_day(
    people: Engine, clock: FixedClock
) -> None:
    from models.queries import overdue_items

    held(people, clock, ["lead@council.example"])
    with Session(people) as session:
        assert [i.what for i in overdue_items(session, clock.now())] == []
        due = london(2027, 3, 23, 17, 0)  # minutes due 10 working days after 9 March
        assert overdue_items(session, due - timedelta(minutes=1)) == []
        [item] = overdue_items(session, due)
    assert (item.what, item.key, item.due) == ("minutes", STEM, date(2027, 3, 23))


def test_minutes_are_approved_at_the_next_meeting_only(people: Engine, clock: FixedClock) -> None:
    first = held(people, clock, ["lead@council.example"])
    run(people, clock, lambda uow: meetings.draft_minutes(uow, meeting_id=first))
    second = plan(people, clock, day=date(2027, 5, 11))
    third = plan(people, clock, day=date(2027, 7, 13))
    with pytest.raises(WctError, match="no attendance recorded yet"):
        run(
            people,
            clock,
            lambda uow: meetings.approve_minutes(
                uow, meeting_id=first, at_meeting_id=second.meeting_id
            ),
        )
    with Session(people) as session:
        titles = [line.title for line in meetings.agenda(session, second.meeting_id)]
    assert titles == []  # composed only when its items deadline passes
    clock.set(second.starts_at)
    run(
        people,
        clock,
        lambda uow: meetings.publish_agenda(
            uow, meetings.load_meeting(uow.session, second.meeting_id)
        ),
    )
    with Session(people) as session:
        titles = [line.title for line in meetings.agenda(session, second.meeting_id)]
    assert "Minutes of the meeting of 2027-03-09" in titles
    run(
        people,
        clock,
        lambda uow: meetings.record_attendance(
            uow, meeting_id=second.meeting_id, present=["lead@council.example"]
        ),
    )
    with pytest.raises(WctError, match="approved at board's next meeting"):
        run(
            people,
            clock,
            lambda uow: meetings.approve_minutes(
                uow, meeting_id=first, at_meeting_id=third.meeting_id
            ),
        )
    run(
        people,
        clock,
        lambda uow: meetings.approve_minutes(
            uow, meeting_id=first, at_meeting_id=second.meeting_id
        ),
    )
    with Session(people) as session:
        meeting = session.get(Meeting, first)
        assert meeting is not None
        assert meeting.status == meetings.APPROVED
        assert meeting.minutes_approved_at_meeting_id == second.meeting_id


def test_cancelling_a_meeting_stops_its_steps_and_sends_a_calendar_cancel(
    people: Engine, clock: FixedClock
) -> None:
    planned = plan(people, clock)
    before = state(people)
    with pytest.raises(WctError, match="reason is empty"):
        run(
            people,
            clock,
            lambda uow: meetings.cancel_meeting(uow, meeting_id=planned.meeting_id, reason=" "),
        )
    assert state(people) == before
    assert run(
        people,
        clock,
        lambda uow: meetings.cancel_meeting(uow, meeting_id=planned.meeting_id, reason="Snow"),
    )
    assert not run(
        people,
        clock,
        lambda uow: meetings.cancel_meeting(uow, meeting_id=planned.meeting_id, reason="Snow"),
    )
    told = recipients(people, "meeting_cancelled", f"{STEM}:cancelled")
    assert "lead@council.example" in told and len(told) == len(set(told))
    with Session(people) as session:
        meeting = session.get(Meeting, planned.meeting_id)
        assert meeting is not None and (meeting.status, meeting.ical_sequence) == ("cancelled", 1)
        sent = session.exec(
            select(OutboxMessage).where(OutboxMessage.kind == "meeting_cancelled")
        ).first()
        assert sent is not None and json.loads(sent.context)["ical_sequence"] == 1
    assert fire(people, clock, f"{STEM}:reminder") != "acted"  # the timers stop


def test_a_held_meeting_cannot_be_cancelled(people: Engine, clock: FixedClock) -> None:
    meeting_id = held(people, clock, ["lead@council.example"])
    before = state(people)
    with pytest.raises(WctError, match="cannot be cancelled"):
        run(
            people,
            clock,
            lambda uow: meetings.cancel_meeting(uow, meeting_id=meeting_id, reason="x"),
        )
    assert state(people) == before


def test_a_declared_interest_decides_the_vote_that_would_have_tied(
    people: Engine, clock: FixedClock
) -> None:
    """18.1 in the vote: Nina declared an interest in item 8; her vote against would have made
    a 2-2 tie, so it is set aside, the motion carries 2-1, and the minutes say why."""
    present = [
        "lead@council.example",
        "eve@council.example",
        "dcs@council.example",
        "nina@nhs.example",
    ]
    meeting_id = held(people, clock, present)
    run(
        people,
        clock,
        lambda uow: meetings.declare_interest(
            uow,
            meeting_id=meeting_id,
            who="nina@nhs.example",
            item=8,
            nature="Her employer provides the service",
        ),
    )
    votes = {
        "lead@council.example": Vote.FOR,
        "eve@council.example": Vote.FOR,
        "dcs@council.example": Vote.AGAINST,
        "nina@nhs.example": Vote.AGAINST,
    }
    decided = run(
        people,
        clock,
        lambda uow: meetings.record_motion(
            uow, meeting_id=meeting_id, text="Adopt the youth offer", item=8, votes=votes
        ),
    )
    assert (decided.decision.outcome, decided.decision.method) == (
        Outcome.CARRIED,
        Method.MAJORITY,
    )
    assert (decided.decision.votes_for, decided.decision.votes_against) == (2, 1)
    assert "declared an interest in this item (18.1)" in decided.decision.explanation
    with Session(people) as session:
        draft = meetings.minutes_data(session, meeting_id)
    assert draft.motions[0]["explanation"] == decided.decision.explanation


def _with_board_quorum(engine: Engine, clock: FixedClock, quorum: Quorum) -> None:
    """Amend the constitution in force: the Board has a quorum (Wirral's MoU sets none)."""
    c = load_constitution()
    bodies = [b.model_copy(update={"quorum": quorum}) if b.id == "board" else b for b in c.bodies]
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        apply_constitution(
            uow, constitution=c.model_copy(update={"bodies": bodies}), source="with quorum"
        )
        uow.commit()


FOUR = ["lead@council.example", "eve@council.example", "dcs@council.example", "nina@nhs.example"]
SPLIT = {
    "lead@council.example": Vote.FOR,
    "eve@council.example": Vote.FOR,
    "dcs@council.example": Vote.FOR,
    "nina@nhs.example": Vote.AGAINST,
}


def test_a_decision_at_an_inquorate_meeting_is_refused_citing_the_quorum_and_writes_nothing(
    people: Engine, clock: FixedClock
) -> None:
    _with_board_quorum(people, clock, Quorum(present=5, clause="9.9"))
    meeting_id = held(people, clock, FOUR)
    before = state(people)
    with pytest.raises(Refused, match=r"inquorate: 4 present, the quorum is 5 \(9\.9\)"):
        run(
            people,
            clock,
            lambda uow: meetings.record_motion(
                uow, meeting_id=meeting_id, text="Adopt the youth offer", item=8, votes=SPLIT
            ),
        )
    assert state(people) == before


def test_a_constitution_may_record_an_inquorate_decision_as_no_decision(
    people: Engine, clock: FixedClock
) -> None:
    _with_board_quorum(people, clock, Quorum(present=5, clause="9.9", inquorate=Inquorate.RECORD))
    meeting_id = held(people, clock, FOUR)
    decided = run(
        people,
        clock,
        lambda uow: meetings.record_motion(
            uow, meeting_id=meeting_id, text="Adopt the youth offer", item=8, votes=SPLIT
        ),
    )
    assert (decided.decision.outcome, decided.decision.method) == (
        Outcome.NO_DECISION,
        Method.INQUORATE,
    )
    assert "inquorate, 4 present, the quorum is 5 (9.9)" in decided.decision.explanation
    with Session(people) as session:
        draft = meetings.minutes_data(session, meeting_id)
    assert draft.motions[0]["explanation"] == decided.decision.explanation


def test_a_quorate_meeting_decides_as_6_2_says(people: Engine, clock: FixedClock) -> None:
    _with_board_quorum(people, clock, Quorum(present=4, clause="9.9"))
    meeting_id = held(people, clock, FOUR)
    decided = run(
        people,
        clock,
        lambda uow: meetings.record_motion(
            uow, meeting_id=meeting_id, text="Adopt the youth offer", item=8, votes=SPLIT
        ),
    )
    assert (decided.decision.outcome, decided.decision.method) == (
        Outcome.CARRIED,
        Method.MAJORITY,
    )


def test_a_motion_reads_its_voters_at_once_and_names_the_first_unknown(
    people: Engine, clock: FixedClock
) -> None:
    present = ["lead@council.example", "eve@council.example", "dcs@council.example"]
    meeting_id = held(people, clock, [*present, "nina@nhs.example"])
    with pytest.raises(WctError, match="no active member 'nobody@x.example'"):
        run(
            people,
            clock,
            lambda uow: meetings.record_motion(
                uow,
                meeting_id=meeting_id,
                text="Adopt the plan",
                votes={present[0]: Vote.FOR, "nobody@x.example": Vote.FOR, "x@y.example": Vote.FOR},
            ),
        )
    reads: list[str] = []

    def person_reads(*event_args: object) -> None:  # before_cursor_execute: its statement
        statement = str(event_args[2])
        if statement.lstrip().upper().startswith("SELECT") and "FROM person" in statement:
            reads.append(statement)

    def motion(votes: dict[str, Vote]) -> Callable[[UnitOfWork], meetings.MotionDecided]:
        return lambda uow: meetings.record_motion(
            uow, meeting_id=meeting_id, text="Adopt the plan", votes=votes
        )

    counts = []
    for voters in (present[:1], present):
        reads.clear()
        event.listen(people, "before_cursor_execute", person_reads)
        try:
            run(people, clock, motion(dict.fromkeys(voters, Vote.FOR)))
        finally:
            event.remove(people, "before_cursor_execute", person_reads)
        counts.append(len(reads))
    assert counts[0] == counts[1]  # one read of the voters, however many
