"""The partnership's time zone is used everywhere, not only to expand cadences: its notices at
09:00 and its deadlines at 17:00 are its own wall times, its "today" is its own, and times are
shown in it. Wirral (Europe/London, the default) is unchanged."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from models import instructions, meetings
from models.calendar import current_region, in_partnership, meeting_dates
from models.clock import LONDON, FixedClock, SystemClock, local, local_day, local_zone
from models.commands import partnership_of
from models.constitution import Constitution, parse_constitution
from models.db import make_engine
from models.meetings.kinds import AGENDA, CALL_FOR_ITEMS, ITEMS_DEADLINE, MINUTES_DUE, REMINDER
from models.permissions import SYSTEM_CYCLE
from models.steps import at_five, at_nine
from models.steps.engine import run_due
from models.tables import ConstitutionRecord, Meeting, Step
from models.upcoming import Due, upcoming
from notifications.config import NotificationSettings
from notifications.dispatch import drain

from .cases_support import act, install
from .conftest import Cli

DATA = Path(__file__).parent / "data"
ANYTOWN = DATA / "anytown.yaml"
#: Newfoundland: UTC-3:30 in winter, UTC-2:30 in summer; never London's offset.
ST_JOHNS = ZoneInfo("America/St_Johns")
MEMBERS = (DATA / "anytown-members.csv").read_text(encoding="utf-8")
BOARD = "partnership-board"
MEETING_DAY = date(2027, 1, 4)  # the first Monday of the quarter; the Board meets at 18:00


def newfoundland() -> Constitution:
    """Anytown's file (its Board meets at 18:00 on the first Monday of the quarter) in St John's."""
    data = yaml.safe_load(ANYTOWN.read_text(encoding="utf-8"))
    data["partnership"]["time_zone"] = "America/St_Johns"
    return parse_constitution(yaml.safe_dump(data), source="anytown.yaml in St John's")


@pytest.fixture
def st_johns(engine: Engine, clock: FixedClock) -> tuple[Engine, Constitution]:
    c = newfoundland()
    install(engine, clock, c, MEMBERS)
    return engine, c


def _plan_board(engine: Engine, clock: FixedClock) -> meetings.MeetingPlanned:
    """The cycle plans the Board's meeting through the one way in (as its flow does)."""
    return act(engine, clock, SYSTEM_CYCLE, instructions.PlanMeeting(body=BOARD, day=MEETING_DAY))


def _due(engine: Engine, meeting_id: int) -> dict[str, datetime]:
    with Session(engine) as session:
        steps = session.exec(
            select(Step).where(Step.subject == f"meeting:{meeting_id}").order_by(col(Step.id))
        ).all()
    return {s.kind: s.due_at for s in steps}


# --- the zone in force ------------------------------------------------------------------------


def test_london_is_the_zone_in_force_until_a_partnership_is_entered() -> None:
    c = newfoundland()
    assert local_zone() == LONDON and current_region() == "england"
    assert at_nine(MEETING_DAY) == datetime(2027, 1, 4, 9, 0, tzinfo=LONDON)
    with in_partnership(c.partnership):
        assert local_zone() == ST_JOHNS and current_region() == "england"
        assert at_nine(MEETING_DAY) == datetime(2027, 1, 4, 9, 0, tzinfo=ST_JOHNS)
        assert at_five(MEETING_DAY) == datetime(2027, 1, 4, 17, 0, tzinfo=ST_JOHNS)
        assert SystemClock().now().tzinfo == ST_JOHNS
    assert local_zone() == LONDON  # the block's zone ends with it
    assert at_five(MEETING_DAY) == datetime(2027, 1, 4, 17, 0, tzinfo=LONDON)


def test_the_partnerships_time_is_read_while_another_transaction_writes(
    st_johns: tuple[Engine, Constitution],
) -> None:
    """Every flow run and page reads the partnership's time first (`partnership_of`). A write in
    progress elsewhere (a sweep's batch, a member's command) neither holds that read up nor turns
    it into London's: on SQLite the read takes no write lock, it reads the last commit."""
    engine, _ = st_johns
    with engine.begin() as writer:  # SQLite: BEGIN IMMEDIATE, the database's write lock
        writer.execute(select(ConstitutionRecord.id).with_for_update())  # PostgreSQL: the row's
        with partnership_of(engine):
            assert local_zone() == ST_JOHNS
            assert at_nine(MEETING_DAY) == datetime(2027, 1, 4, 9, 0, tzinfo=ST_JOHNS)


def test_a_database_that_fails_is_an_error_and_one_not_initialised_is_londons_time(
    tmp_path: Path,
) -> None:
    """Only a database without a constitution yet runs in London's time: one that cannot be
    reached fails the flow run (which Prefect retries) or the page, instead of running it in the
    wrong zone with the wrong bank holidays."""
    unreachable = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/test")  # refused
    with pytest.raises(OperationalError), partnership_of(unreachable):
        pass
    failing = make_engine(f"sqlite:///{tmp_path / 'failing.db'}")  # its table, but the read fails
    with failing.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE constitution (id INTEGER PRIMARY KEY)")
    with pytest.raises(OperationalError, match="current"), partnership_of(failing):
        pass
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with partnership_of(empty):
        assert local_zone() == LONDON and current_region() == "england"


def test_a_clock_reads_the_partnerships_day_and_advances_by_its_wall_time() -> None:
    # 01:00 in London on 5 January is still the evening of the 4th in St John's.
    clock = FixedClock(datetime(2027, 1, 5, 1, 0, tzinfo=LONDON))
    assert clock.now().date() == date(2027, 1, 5)
    with in_partnership(newfoundland().partnership):
        assert clock.now() == datetime(2027, 1, 4, 21, 30, tzinfo=ST_JOHNS)
        assert local_day(clock.now()) == date(2027, 1, 4)
        # St John's goes on summer time on 14 March 2027: a day later is the same wall time.
        clock.set(datetime(2027, 3, 13, 9, 0, tzinfo=ST_JOHNS))
        clock.advance(timedelta(days=1))
        assert clock.now() == datetime(2027, 3, 14, 9, 0, tzinfo=ST_JOHNS)
        assert clock.now().utcoffset() == timedelta(hours=-2, minutes=-30)
    assert local(datetime(2027, 1, 4, 18, 0, tzinfo=ST_JOHNS)).hour == 21  # London again


def test_a_cadence_not_told_a_zone_expands_in_the_zone_in_force() -> None:
    rule, first = "FREQ=MONTHLY;INTERVAL=3;BYDAY=1MO", datetime(2026, 1, 5, 18, 0)
    after = datetime(2027, 1, 1, tzinfo=ST_JOHNS)
    with in_partnership(newfoundland().partnership):
        [meeting] = meeting_dates(rule, first, after=after, count=1)
    assert meeting == datetime(2027, 1, 4, 18, 0, tzinfo=ST_JOHNS)
    [wirral] = meeting_dates(rule, first, after=after, count=1)
    assert wirral == datetime(2027, 1, 4, 18, 0, tzinfo=LONDON)


# --- a meeting's steps fall at the partnership's 09:00 and 17:00 -------------------------------


def test_a_meetings_steps_fall_at_nine_and_five_in_the_partnerships_zone(
    st_johns: tuple[Engine, Constitution], clock: FixedClock
) -> None:
    engine, c = st_johns
    planned = _plan_board(engine, clock)
    assert planned.starts_at == datetime(2027, 1, 4, 18, 0, tzinfo=ST_JOHNS)
    due = _due(engine, planned.meeting_id)
    for kind in (CALL_FOR_ITEMS, AGENDA, REMINDER):
        assert local_at(due[kind]) == (9, 0), kind
    for kind in (ITEMS_DEADLINE, MINUTES_DUE):
        assert local_at(due[kind]) == (17, 0), kind
    # 09:00 in St John's in winter is 12:30 in London (UTC): not London's 09:00.
    assert due[REMINDER].astimezone(LONDON).time().isoformat() == "12:30:00"
    with in_partnership(c.partnership):
        assert due[REMINDER] == at_nine(meetings.step_times(c, planned.starts_at)[REMINDER].date())
    assert due[REMINDER].astimezone(ST_JOHNS).date() < MEETING_DAY
    with Session(engine) as session:
        meeting = session.get(Meeting, planned.meeting_id)
        assert meeting is not None
        assert meeting.minutes_due_on == due[MINUTES_DUE].astimezone(ST_JOHNS).date()


@pytest.mark.usefixtures("st_johns")
def test_the_cli_shows_the_meeting_and_its_steps_in_the_partnerships_time(cli: Cli) -> None:
    result = cli("meeting", "plan", BOARD, MEETING_DAY.isoformat())
    assert result.exit_code == 0, result.output
    first, *steps = result.output.splitlines()
    assert first.startswith(f"{BOARD} 2027-01-04 18:00")
    times = {line.split()[1] for line in steps}
    assert times == {"09:00", "17:00"}, result.output


@pytest.mark.usefixtures("st_johns")
def test_a_meeting_called_at_a_time_is_that_time_in_the_partnerships_zone(cli: Cli) -> None:
    result = cli(
        "meeting", "call", BOARD, "--at", "2027-02-10 14:00", "--reason", "Budget",
        "--as", "polly@anytown.example", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    called = json.loads(result.output)
    assert datetime.fromisoformat(called["starts_at"]) == datetime(
        2027, 2, 10, 14, 0, tzinfo=ST_JOHNS
    )


# --- "today" is the partnership's ----------------------------------------------------------


def test_upcoming_today_is_the_partnerships_day(
    st_johns: tuple[Engine, Constitution], clock: FixedClock, cli: Cli
) -> None:
    engine, _ = st_johns
    _plan_board(engine, clock)
    # 00:30 on 5 January in London: still 21:00 on the 4th, the Board's meeting day, in St John's.
    clock.set(datetime(2027, 1, 5, 0, 30, tzinfo=LONDON))
    with Session(engine) as session:
        rows = upcoming(session, now=clock.now(), days=0)
    assert [(r.on, r.due) for r in rows] == [(MEETING_DAY, Due.MEETING)]
    assert "at 18:00" in rows[0].what
    result = cli("upcoming", "--days", "0", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["on"], row["due"]) == ("2027-01-04", "meeting")


def test_the_minutes_are_overdue_after_five_in_the_partnerships_zone(
    st_johns: tuple[Engine, Constitution], clock: FixedClock
) -> None:
    engine, c = st_johns
    planned = _plan_board(engine, clock)
    minutes_due = _due(engine, planned.meeting_id)[MINUTES_DUE]
    with Session(engine) as session:
        meeting = session.get(Meeting, planned.meeting_id)
        assert meeting is not None
        with in_partnership(c.partnership):
            before = minutes_due - timedelta(minutes=1)
            assert not meetings.minutes_overdue(meeting, before)
            assert meetings.minutes_overdue(meeting, minutes_due)
        # Read in London's time (no partnership entered) they would be overdue at London's
        # 17:00, when it is only 13:30 in St John's.
        assert meetings.minutes_overdue(meeting, minutes_due - timedelta(hours=3, minutes=30))


# --- times in the mail -------------------------------------------------------------------------


def test_the_notice_gives_the_meetings_time_in_the_partnerships_zone(
    st_johns: tuple[Engine, Constitution], clock: FixedClock, tmp_path: Path
) -> None:
    engine, c = st_johns
    planned = _plan_board(engine, clock)
    clock.set(_due(engine, planned.meeting_id)[AGENDA])
    run_due(engine, clock)
    settings = NotificationSettings(home=tmp_path / "home")
    with in_partnership(c.partnership):  # as the dispatch flow runs: in its partnership's time
        result = drain(engine, clock=clock, settings=settings)
    assert (result.failed, result.dead, result.errors) == (0, 0, [])
    texts = [_text(p) for p in sorted(settings.mail_dir.glob("*.eml"))]
    notices = [t for t in texts if "Monday 4 January 2027" in t]
    assert notices, texts[:1]
    assert all("at 18:00" in t and "21:30" not in t for t in notices)


def _text(path: Path) -> str:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def local_at(moment: datetime) -> tuple[int, int]:
    at = moment.astimezone(ST_JOHNS)
    return at.hour, at.minute


# --- Prefect schedules ---------------------------------------------------------------------------


def test_the_cycle_schedules_run_in_the_partnerships_zone() -> None:
    from deployments.serve import cycle_deployments

    for made in cycle_deployments(newfoundland()):
        for schedule in made.schedules or []:
            assert getattr(schedule.schedule, "timezone", None) == "America/St_Johns", made.name
