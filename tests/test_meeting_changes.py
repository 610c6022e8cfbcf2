"""Meetings change (issue 11): a meeting moved to a new time, an extraordinary meeting called off
the cadence, and a meeting held before wct ran entered to be recorded. What members receive is
counted from the mail the dispatcher delivers, invitation included."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import meetings
from models.clock import FixedClock
from models.commands import current_constitution
from models.errors import InvalidInput, Refused
from models.tables import Meeting, OutboxMessage, Step
from notifications.config import NotificationSettings
from notifications.dispatch import drain

from .conftest import DATA, Cli
from .cycles_support import fire, london, populate, run, state
from .test_meetings import BOARD, plan
from .web_support import KEY

NEW_TIME = london(2027, 3, 16, 10, 0)


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def delivered(engine: Engine, clock: FixedClock, home: Path) -> list[EmailMessage]:
    """Drain the outbox to the mail folder; the messages delivered by this drain, as read."""
    settings = NotificationSettings(home=home, link_key=SecretStr(KEY.hex()))
    seen = set(settings.mail_dir.rglob("*.eml")) if settings.mail_dir.exists() else set()
    result = drain(engine, clock=clock, settings=settings)
    assert (result.failed, result.dead, result.errors) == (0, 0, [])
    mail = []
    for path in sorted(set(settings.mail_dir.rglob("*.eml")) - seen):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        mail.append(message)
    return mail


def invite_of(message: EmailMessage) -> icalendar.cal.Component:
    parts = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1, message["Subject"]
    calendar = icalendar.Calendar.from_ical(parts[0].get_content())
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 1
    return events[0]


def pending(engine: Engine, meeting_id: int) -> dict[str, datetime]:
    with Session(engine) as session:
        rows = session.exec(
            select(Step).where(Step.subject == f"meeting:{meeting_id}", Step.status == "pending")
        ).all()
    return {row.kind: row.due_at for row in rows}


def move(
    engine: Engine, clock: FixedClock, meeting_id: int, to: datetime = NEW_TIME
) -> meetings.MeetingMoved:
    return run(
        engine,
        clock,
        lambda uow: meetings.move_meeting(
            uow, meeting_id=meeting_id, starts_at=to, reason="Clash with full council"
        ),
    )


def test_moving_a_meeting_updates_every_invite_and_moves_every_pending_step(
    people: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    planned = plan(people, clock)
    stem = "meeting:board:2027-03-09"
    assert fire(people, clock, f"{stem}:call_for_items") == "acted"
    assert fire(people, clock, f"{stem}:agenda") == "acted"  # the notice and agenda went out
    first = delivered(people, clock, tmp_path)
    notices = [m for m in first if m["Subject"].startswith("Wirral Children's Trust Board meet")]
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in notices) == BOARD
    uid = str(invite_of(notices[0])["UID"])

    moved = move(people, clock, planned.meeting_id)
    assert (moved.starts_at, moved.ical_sequence) == (NEW_TIME, 1)
    mail = delivered(people, clock, tmp_path)
    assert Counter(str(m["To"].addresses[0].addr_spec) for m in mail) == Counter(BOARD)
    for message in mail:  # one updated invite each: the same event, SEQUENCE raised
        event = invite_of(message)
        assert (str(event["UID"]), int(str(event["SEQUENCE"]))) == (uid, 1)
        assert event.decoded("DTSTART") == NEW_TIME
        assert message["Subject"].startswith("Moved: ")
        text = message.get_body(("plain",))
        assert text is not None and "moved from Tuesday 9 March 2027" in text.get_content()

    with Session(people) as session:
        c = current_constitution(session)
    remaining = pending(people, planned.meeting_id)
    times = meetings.step_times(c, NEW_TIME)
    # Every step still to come is planned again for the new date: the agenda goes out again.
    assert remaining == {k: t for k, t in times.items() if t > clock.now()}
    assert remaining["meeting.agenda"] == london(2027, 3, 9, 9, 0)
    assert fire(people, clock, f"{stem}:reminder") != "acted"  # the old timers act on nothing
    # The cadence still plans 9 March: it is this meeting, moved, not a second one.
    again = plan(people, clock)
    assert (again.meeting_id, again.created) == (planned.meeting_id, False)

    assert fire(people, clock, "meeting:board:2027-03-16:v1:agenda") == "acted"
    after = delivered(people, clock, tmp_path)
    renotices = [m for m in after if m["Subject"].startswith("Updated: ")]
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in renotices) == BOARD
    assert {int(str(invite_of(m)["SEQUENCE"])) for m in renotices} == {1}


def test_a_meeting_moves_back_to_its_first_date_and_members_are_told_again(
    people: Engine, clock: FixedClock
) -> None:
    planned = plan(people, clock)
    first_time = planned.starts_at
    move(people, clock, planned.meeting_id)
    back = move(people, clock, planned.meeting_id, to=first_time)
    assert back.ical_sequence == 2
    with Session(people) as session:
        keys = session.exec(
            select(OutboxMessage.key).where(col(OutboxMessage.key).contains(":moved"))
        ).all()
    assert len(keys) == 2 * len(BOARD)  # each move told everyone, once


@pytest.mark.parametrize(
    ("to", "error", "words"),
    [
        (london(2026, 11, 20, 10, 0), InvalidInput, "has passed"),
        (datetime(2027, 3, 16, 10, 0), InvalidInput, "no time zone"),
        (london(2027, 3, 9, 14, 0), InvalidInput, "already at that time"),
    ],
)
def test_a_bad_move_is_refused_and_changes_nothing(
    people: Engine, clock: FixedClock, to: datetime, error: type[Exception], words: str
) -> None:
    planned = plan(people, clock)
    before = state(people)
    with pytest.raises(error, match=words):
        move(people, clock, planned.meeting_id, to=to)
    assert state(people) == before


def test_a_meeting_cannot_move_onto_another_of_its_body(people: Engine, clock: FixedClock) -> None:
    march = plan(people, clock)
    may = plan(people, clock, day=date(2027, 5, 11))
    before = state(people)
    with pytest.raises(Refused, match="already has a meeting"):
        move(people, clock, march.meeting_id, to=may.starts_at)
    assert state(people) == before


def test_an_extraordinary_meeting_at_short_notice_sends_its_notice_at_once(
    people: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    at = clock.now() + timedelta(days=4)
    called = run(
        people,
        clock,
        lambda uow: meetings.call_meeting(
            uow, body_id="board", starts_at=at.replace(hour=10), reason="Ofsted letter"
        ),
    )
    assert called.created
    kinds = {s.kind: s.due_at for s in called.steps}
    # No call for items whose deadline has passed; the notice due now; minutes after.
    assert "meeting.call_for_items" not in kinds and "meeting.items_deadline" not in kinds
    assert kinds["meeting.agenda"] == clock.now()
    with Session(people) as session:
        meeting = session.get(Meeting, called.meeting_id)
        assert meeting is not None and meeting.extraordinary and meeting.cadence_on is None
    key = next(s.key for s in called.steps if s.kind == "meeting.agenda")
    assert fire(people, clock, key) == "acted"
    mail = delivered(people, clock, tmp_path)
    notices = [m for m in mail if m["Subject"].startswith("Extraordinary ")]
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in notices) == BOARD
    again = run(
        people,
        clock,
        lambda uow: meetings.call_meeting(
            uow, body_id="board", starts_at=at.replace(hour=10), reason="Ofsted letter"
        ),
    )
    assert (again.meeting_id, again.created) == (called.meeting_id, False)


def test_a_past_meeting_is_entered_without_messages_and_recorded_as_any_other(
    people: Engine, clock: FixedClock
) -> None:
    held_at = london(2026, 9, 8, 14, 0)
    before = state(people)
    entered = run(
        people,
        clock,
        lambda uow: meetings.enter_past_meeting(uow, body_id="board", starts_at=held_at),
    )
    assert entered.created and entered.steps == []
    with Session(people) as session:
        assert session.exec(select(OutboxMessage)).all() == []
    assert pending(people, entered.meeting_id) == {}
    attended = run(
        people,
        clock,
        lambda uow: meetings.record_attendance(
            uow, meeting_id=entered.meeting_id, present=["lead@council.example"]
        ),
    )
    assert attended["present"]
    with pytest.raises(InvalidInput, match="still to come"):
        run(
            people,
            clock,
            lambda uow: meetings.enter_past_meeting(
                uow, body_id="board", starts_at=london(2027, 1, 1, 10, 0)
            ),
        )
    assert state(people) != before


def test_move_call_and_enter_from_the_cli(cli: Cli) -> None:
    assert cli("init").exit_code == 0
    assert cli("members", "import", DATA / "cycles-members.csv").exit_code == 0
    assert cli("meeting", "plan", "board", "2027-03-09").exit_code == 0
    coordinator = ["--as", "coord@council.example"]
    moved = cli(
        "meeting",
        "move",
        "board",
        "2027-03-09",
        "--to",
        "2027-03-16 10:00",
        "--reason",
        "Clash",
        *coordinator,
    )
    assert moved.exit_code == 0, moved.output
    assert "moved to 2027-03-16 10:00; members told" in moved.output
    bad = cli("meeting", "move", "board", "2027-03-16", "--to", "soon", "--reason", "x")
    assert bad.exit_code == 2 and "'soon' is not a date and time" in bad.output
    member = cli(
        "meeting",
        "move",
        "board",
        "2027-03-16",
        "--to",
        "2027-03-23 10:00",
        "--reason",
        "x",
        "--as",
        "nina@nhs.example",
    )
    assert member.exit_code == 4 and "may not meeting.move" in member.output
    called = cli(
        "meeting", "call", "board", "--at", "2027-02-02 10:00", "--reason", "Ofsted", *coordinator
    )
    assert called.exit_code == 0 and "extraordinary (called)" in called.output
    entered = cli("meeting", "enter", "board", "--at", "2026-09-08 14:00", *coordinator)
    assert entered.exit_code == 0 and "entered" in entered.output
