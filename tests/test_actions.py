"""The action tracker and the decision log (12.1, 21.2.1; 6.2): an action agreed at one Board
meeting returns as matters arising on the next agenda, is reminded, and escalates when overdue;
closing it stops its reminders; a bad action in a record writes nothing."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import meetings
from models.clock import FixedClock
from models.decision import Vote
from models.errors import InvalidInput, Refused
from models.instructions import RecordMeeting, UpdateAction
from models.meetings.actions import OVERDUE, REMINDER, overdue_at
from models.messages import Agenda
from models.permissions import NotPermitted
from models.steps.engine import run_due
from models.tables import AuditEvent, Meeting, MeetingAction, OutboxMessage, Person, Step

from .cases_support import act
from .conftest import DATA, Cli
from .cycles_support import london, populate, run, state

FIRST, NEXT = date(2027, 3, 9), date(2027, 5, 11)  # the Board's bi-monthly meetings (20.4.1)
DUE = date(2027, 4, 30)
CHAIR, OWNER = "lead@council.example", "dcs@council.example"  # the Lead Member chairs (20.3.1)
PERFORMANCE = 5  # "Performance reports (14.1)" on the first agenda


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def plan(engine: Engine, clock: FixedClock, day: date) -> int:
    planned = run(engine, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=day))
    return planned.meeting_id


def advance(engine: Engine, clock: FixedClock, until: datetime) -> None:
    """Move the clock to `until`, firing each step when it comes due, as its timer would."""
    while True:
        with Session(engine) as session:
            due = session.exec(
                select(Step.due_at)
                .where(Step.status == "pending", col(Step.due_at) <= until)
                .order_by(col(Step.due_at))
            ).first()
        if due is None:
            break
        clock.set(max(clock.now(), due))
        run_due(engine, clock)
    clock.set(until)


def record(
    engine: Engine, clock: FixedClock, meeting_id: int, *actions: meetings.ActionInput
) -> meetings.MinutesDraft:
    return act(
        engine,
        clock,
        CHAIR,
        RecordMeeting(
            meeting_id=meeting_id,
            present=[CHAIR, OWNER, "eve@council.example"],
            motions=[
                meetings.MotionInput(
                    text="Ask for a costed youth offer",
                    item=PERFORMANCE,
                    votes={OWNER: Vote.FOR, "eve@council.example": Vote.FOR},
                )
            ],
            actions=actions,
        ),
    )


YOUTH_OFFER = meetings.ActionInput(
    text="Bring a costed youth offer to the Board", owner=OWNER, due=DUE, item=PERFORMANCE
)


def agreed(engine: Engine, clock: FixedClock) -> tuple[int, int, int]:
    """The Board's meetings of 9 March and 11 May planned; the first held at which the action
    was agreed. Returns (first meeting, next meeting, action)."""
    first, following = plan(engine, clock, FIRST), plan(engine, clock, NEXT)
    advance(engine, clock, london(2027, 3, 9, 16, 0))
    draft = record(engine, clock, first, YOUTH_OFFER)
    [action] = draft.actions
    return first, following, action["id"]


def per_recipient(engine: Engine, kind: str) -> Counter[str]:
    """How many messages of `kind` went to each person (email channel)."""
    with Session(engine) as session:
        rows = session.exec(
            select(Person.email)
            .join(OutboxMessage, col(OutboxMessage.person_id) == col(Person.id))
            .where(OutboxMessage.kind == kind)
        ).all()
    return Counter(rows)


def agenda_titles(engine: Engine, meeting_id: int) -> list[str]:
    with Session(engine) as session:
        return [line.title for line in meetings.agenda(session, meeting_id)]


def test_an_action_agreed_at_one_board_meeting_comes_back_is_reminded_and_escalates(
    people: Engine, clock: FixedClock
) -> None:
    _, following, action_id = agreed(people, clock)
    with Session(people) as session:
        steps = session.exec(
            select(Step.kind, Step.due_at).where(Step.subject == f"action:{action_id}")
        ).all()
    assert sorted((k, d) for k, d in steps) == [
        (OVERDUE, london(2027, 5, 4, 9, 0)),  # 3 May 2027 is a bank holiday
        (REMINDER, london(2027, 4, 16, 9, 0)),  # 10, 5 and 1 working days before
        (REMINDER, london(2027, 4, 23, 9, 0)),
        (REMINDER, london(2027, 4, 29, 9, 0)),
    ]

    advance(people, clock, london(2027, 5, 12, 9, 0))

    assert per_recipient(people, "action_reminder") == {OWNER: 3}
    assert per_recipient(people, "action_overdue") == {CHAIR: 1, OWNER: 1}
    titles = agenda_titles(people, following)
    arising = titles.index("Matters arising")
    assert titles[arising - 1] == "Minutes of the meeting of 2027-03-09"
    assert titles[arising + 1] == (
        f"Action #{action_id} of 2027-03-09: Bring a costed youth offer to the Board "
        "(Dee Director, due 2027-04-30)"
    )
    # The agenda the members received says it too, and the audit trail holds no name.
    with Session(people) as session:
        sent = session.exec(
            select(OutboxMessage.context).where(
                OutboxMessage.kind == "agenda", col(OutboxMessage.key).contains("2027-05-11")
            )
        ).first()
        assert sent is not None
        items = [i.title for i in Agenda.model_validate(json.loads(sent)).items]
        assert titles[arising + 1] in items
        trail = " ".join(e.after for e in session.exec(select(AuditEvent)).all())
    assert "Dee Director" not in trail and "dcs@council.example" not in trail
    with Session(people) as session:
        events = [
            e.action
            for e in session.exec(
                select(AuditEvent).where(AuditEvent.subject == f"action:{action_id}")
            )
        ]
    assert events == [
        "action.agreed",
        "action.reminded",
        "action.reminded",
        "action.reminded",
        "action.overdue",
    ]


def test_an_action_done_stops_its_reminders_and_leaves_the_agenda(
    people: Engine, clock: FixedClock
) -> None:
    _, following, action_id = agreed(people, clock)
    advance(people, clock, london(2027, 4, 16, 10, 0))
    assert per_recipient(people, "action_reminder") == {OWNER: 1}
    before = state(people)
    for stranger in ("nina@nhs.example", "olly@fire.example"):  # not its owner, nor the chair
        with pytest.raises(NotPermitted, match="may not action.update for board"):
            act(
                people,
                clock,
                stranger,
                UpdateAction(action_id=action_id, status=meetings.ActionStatus.DONE),
            )
    assert state(people) == before

    done = act(
        people,
        clock,
        OWNER,
        UpdateAction(action_id=action_id, status=meetings.ActionStatus.DONE, note="Costed."),
    )
    assert (done.status, done.note) == ("done", "Costed.")
    with pytest.raises(Refused, match=f"action #{action_id} is already done"):
        act(people, clock, CHAIR, UpdateAction(action_id=action_id, due=date(2027, 6, 1)))

    advance(people, clock, london(2027, 5, 12, 9, 0))
    assert per_recipient(people, "action_reminder") == {OWNER: 1}
    assert per_recipient(people, "action_overdue") == {}
    with Session(people) as session:
        left = session.exec(select(Step.status).where(Step.subject == f"action:{action_id}")).all()
    assert sorted(left) == ["done", "settled", "settled", "settled"]
    assert "Matters arising" not in agenda_titles(people, following)


def test_a_new_due_date_plans_the_reminders_again(people: Engine, clock: FixedClock) -> None:
    _, following, action_id = agreed(people, clock)
    with pytest.raises(InvalidInput, match="say why the action is dropped"):
        act(
            people,
            clock,
            OWNER,
            UpdateAction(action_id=action_id, status=meetings.ActionStatus.DROPPED),
        )
    act(people, clock, OWNER, UpdateAction(action_id=action_id, due=date(2027, 5, 28)))
    with Session(people) as session:
        pending = session.exec(
            select(Step.key, Step.due_at).where(
                Step.subject == f"action:{action_id}", Step.status == "pending"
            )
        ).all()
    assert sorted(d for _, d in pending) == [
        london(2027, 5, 14, 9, 0),
        london(2027, 5, 21, 9, 0),
        london(2027, 5, 27, 9, 0),
        london(2027, 6, 1, 9, 0),  # 31 May 2027 is a bank holiday
    ]
    assert all(f"action:{action_id}:r2:" in key for key, _ in pending)

    advance(people, clock, london(2027, 5, 12, 9, 0))
    assert per_recipient(people, "action_reminder") == {}
    assert "(Dee Director, due 2027-05-28)" in agenda_titles(people, following)[4]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (meetings.ActionInput(text=" ", owner=OWNER, due=DUE), "action 2: text is empty"),
        (
            meetings.ActionInput(text="Report", owner="nobody@x.example", due=DUE),
            "action 2: owner: no active member 'nobody@x.example'",
        ),
        (
            meetings.ActionInput(text="Report", owner=OWNER, due="30/04/2027"),
            "action 2: due: '30/04/2027' is not a date",
        ),
        (
            meetings.ActionInput(text="Report", owner=OWNER, due="2027-03-09"),
            r"action 2: due: 2027-03-09 is not after the meeting \(2027-03-09\)",
        ),
        (
            meetings.ActionInput(text="Report", owner=OWNER, due=DUE, item=99),
            "action 2: item: the meeting has no agenda item 99",
        ),
    ],
)
def test_a_bad_action_in_the_record_names_it_and_writes_nothing(
    people: Engine, clock: FixedClock, bad: meetings.ActionInput, problem: str
) -> None:
    first = plan(people, clock, FIRST)
    advance(people, clock, london(2027, 3, 9, 16, 0))
    before = state(people)
    with pytest.raises(InvalidInput, match=problem):
        record(people, clock, first, YOUTH_OFFER, bad)
    assert state(people) == before
    with Session(people) as session:
        assert session.exec(select(MeetingAction)).all() == []
        meeting = session.get(Meeting, first)
        assert meeting is not None and meeting.status == meetings.PUBLISHED


def test_an_action_escalates_on_the_next_working_day() -> None:
    assert overdue_at(date(2027, 4, 30)) == london(2027, 5, 4, 9, 0)
    assert overdue_at(date(2027, 4, 28)) == london(2027, 4, 29, 9, 0)


# --- the command line ------------------------------------------------------------------------


PSEUDONYM = re.compile(r"\bp-[0-9a-f]{6,}\b")


def test_actions_and_decisions_from_the_command_line(
    cli: Cli, clock: FixedClock, tmp_path: Path
) -> None:
    assert cli("init").exit_code == 0
    assert cli("members", "import", DATA / "cycles-members.csv").exit_code == 0
    assert cli("meeting", "plan", "board", "2027-03-09").exit_code == 0
    clock.set(london(2027, 3, 9, 16, 0))
    assert cli("steps", "--reconcile").exit_code == 0
    body = {
        "present": [CHAIR, OWNER, "eve@council.example"],
        "motions": [
            {
                "text": "Ask for a costed youth offer",
                "item": PERFORMANCE,
                "votes_for": [OWNER, "eve@council.example"],
            }
        ],
    }
    action = {"item": PERFORMANCE, "text": "Cost the youth offer", "owner": OWNER}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**body, "actions": [{**action, "due": "soon"}]}))
    refused = cli("meeting", "record", "board", "2027-03-09", "--file", bad, "--as", CHAIR)
    assert refused.exit_code == 2, refused.output
    assert "action 1: due: 'soon' is not a date" in refused.stderr
    assert json.loads(cli("actions", "--json").stdout) == []
    good = tmp_path / "record.json"
    good.write_text(json.dumps({**body, "actions": [{**action, "due": "2027-04-30"}]}))
    recorded = cli("meeting", "record", "board", "2027-03-09", "--file", good, "--as", CHAIR)
    assert recorded.exit_code == 0, recorded.output

    out = tmp_path / "actions.csv"
    exported = cli("actions", "--body", "board", "--csv", out)
    assert exported.exit_code == 0, exported.output
    text = out.read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert text.splitlines()[0].startswith("id,body,meeting,item,item_title,text,owner,due_on")
    assert [(r["text"], r["owner"], r["due_on"], r["status"]) for r in rows] == [
        ("Cost the youth offer", "Dee Director", "2027-04-30", "open")
    ]
    assert rows[0]["item_title"] == "Performance reports (14.1)"
    assert not PSEUDONYM.search(text)

    decided = cli("decisions", "--body", "board", "--from", "2027-03-01", "--json")
    assert decided.exit_code == 0, decided.output
    [decision] = json.loads(decided.stdout)
    assert decision["motion"] == "Ask for a costed youth offer"
    assert (decision["meeting"], decision["item"]) == ("2027-03-09", PERFORMANCE)
    assert decision["outcome"] == "carried" and decision["method"] and decision["explanation"]
    assert json.loads(cli("decisions", "--to", "2027-03-08", "--json").stdout) == []
    assert cli("decisions", "--from", "March").exit_code == 2

    action_id = str(rows[0]["id"])
    refused = cli("action", "done", action_id, "--as", "olly@fire.example")
    assert refused.exit_code == 4 and "may not action.update" in refused.stderr
    assert cli("action", "drop", action_id, "--as", OWNER).exit_code == 2  # --note is required
    assert cli("action", "done", "999", "--as", OWNER).exit_code == 3
    moved = cli("action", "move", action_id, "--due", "2027-05-07", "--as", CHAIR)
    assert moved.exit_code == 0, moved.output
    done = cli("action", "done", action_id, "--as", OWNER, "--note", "Costed and tabled.")
    assert done.exit_code == 0 and "done" in done.stdout
    assert json.loads(cli("actions", "--open", "--json").stdout) == []
    [closed] = json.loads(cli("actions", "--json").stdout)
    assert (closed["status"], closed["due_on"], closed["note"]) == (
        "done",
        "2027-05-07",
        "Costed and tabled.",
    )
