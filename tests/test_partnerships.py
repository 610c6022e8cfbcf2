"""Issue 13: two partnerships that differ from Wirral in every dimension their files carry run by
those files alone. Three months of each one's calendar are simulated against the Prefect harness
(meetings of every body, reports, reviews, and a case of every kind: risks, a dispute up its
whole ladder, a call to account, approvals), and what its members receive is read from the mail
folder: its own clauses (never one its file does not give), its own names and sender, its own
venues, its own local times, its own stages and reporting periods."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from deployments.cli import Runtime, app
from models.calendar import meetings_between
from models.clock import FixedClock
from models.config import Settings
from models.constitution import Constitution, load_constitution
from models.db import make_engine
from models.reports import period_end
from models.steps import body_members
from models.tables import AuditHead, DisputeStageRecord, Meeting, Report, Review

from .conftest import DATA, postgres_schema

PARTNERSHIPS = {"riverside": DATA / "riverside.yaml", "northmere": DATA / "northmere.yaml"}
#: Spring, so that Northmere's zone (no summer time) and London's part on 28 March.
START, END = date(2027, 3, 1), date(2027, 5, 31)
#: Something that looks like a clause number: 4.2, 20.4.1 (dates and times do not).
NUMBER = re.compile(r"(?<![\w.])\d{1,2}(?:\.\d{1,2}){1,3}(?![\w.]*\d)")
URL = re.compile(r"https?://\S+")
STYLE = re.compile(r"<style.*?</style>", re.DOTALL)  # a stylesheet's numbers are no clauses
WIRRAL_WORDS = ("Wirral", "Memorandum", "MoU", "WSCB", "Children's Trust", "Merseyside")


@dataclass(frozen=True)
class Mail:
    key: str
    to: str
    sender: str
    subject: str
    text: str  # the plain and HTML bodies, and papers attached as HTML
    calendar: str  # the invitation, if any


@dataclass
class Played:
    name: str
    c: Constitution
    summary: dict[str, Any]
    mail: list[Mail]
    engine: Engine

    def of(self, kind: str) -> list[Mail]:
        """The messages whose key has `:kind:` in it (a step's or a stage's name)."""
        return [m for m in self.mail if f":{kind}:" in m.key]


def _read(path: Path) -> Mail:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    text, calendar = "", ""
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        if part.get_content_type() == "text/calendar":
            calendar += part.get_content()
        else:  # the body, or the meeting's papers attached as HTML
            text += STYLE.sub(" ", part.get_content())
    return Mail(
        key=str(message["X-WCT-Key"]),
        to=str(message["To"]),
        sender=str(message["From"]),
        subject=str(message["Subject"]),
        text=text,
        calendar=calendar,
    )


def given_clauses(c: Constitution) -> set[str]:
    """Every clause number the constitution gives, for anything."""
    texts = [b.clause for b in c.bodies] + [b.quorum.clause for b in c.bodies if b.quorum]
    texts += [i.clause for i in c.standing_items]
    texts += [r.clause for r in c.reviews] + [q.clause for q in c.quarterly_reports]
    texts += [g.clause for g in c.approval_gates] + list(c.rules.values())
    texts += [str(v) for v in c.clauses.model_dump().values()]
    return {n for text in texts if text for n in NUMBER.findall(text)}


@pytest.fixture(scope="module")
def simulation_schema() -> Iterator[str]:
    """A new, empty PostgreSQL schema for a simulation (dropped afterwards), as its URL."""
    with postgres_schema("wct_sim") as url:
        yield url


#: Riverside is simulated on a SQLite file (the default), Northmere on PostgreSQL (`--database`).
BACKENDS = {"riverside": "sqlite", "northmere": "postgres"}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(n, marks=[pytest.mark.postgres] if BACKENDS[n] == "postgres" else [])
        for n in PARTNERSHIPS
    ],
)
def played(
    request: pytest.FixtureRequest,
    prefect_harness: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Played]:
    """Three spring months of the partnership's calendar, simulated by `wct simulate`."""
    name = request.param
    home = tmp_path_factory.mktemp(f"{name}-simulation")
    database: list[str] = []
    if BACKENDS[name] == "postgres":
        request.getfixturevalue("postgres_available")
        database = ["--database", request.getfixturevalue("simulation_schema")]
    runtime = Runtime(
        settings=Settings(home=home / "configured", database_url=f"sqlite:///{home / 'none.db'}"),
        clock=FixedClock(datetime(2027, 2, 20, 9, tzinfo=UTC)),
    )
    args = ["simulate", "--constitution", str(PARTNERSHIPS[name]), "--json"]
    args += ["--from", START.isoformat(), "--to", END.isoformat(), "--home", str(home / "sim")]
    args += database
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_URL", prefect_harness)
        result = CliRunner().invoke(app, args, obj=runtime)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    mail = [_read(p) for p in sorted(Path(summary["mail_folder"]).glob("*.eml"))]
    engine = make_engine(database[1] if database else summary["database"])
    yield Played(name, load_constitution(PARTNERSHIPS[name]), summary, mail, engine)
    engine.dispose()


def test_the_test_partnerships_differ_from_wirral_in_every_dimension() -> None:
    """The two files are worth testing against: each differs from Wirral's in each dimension."""
    wirral = load_constitution()
    for path in PARTNERSHIPS.values():
        c = load_constitution(path)
        p, w = c.partnership, wirral.partnership
        assert (p.agreement_name, p.region, p.time_zone) != (
            w.agreement_name,
            w.region,
            w.time_zone,
        )
        assert p.region != w.region and p.time_zone != w.time_zone
        assert p.sender_email and p.coordinator and p.logo_url
        assert [s.name for s in c.disputes.stages] != [s.name for s in wirral.disputes.stages]
        assert len(c.disputes.stages) != len(wirral.disputes.stages)
        assert all(q.months != [3, 6, 9, 12] for q in c.quarterly_reports)
        assert c.planning != wirral.planning and c.reminders != wirral.reminders
        assert c.standing_items != wirral.standing_items
        assert {r.opens_before_days for r in c.reviews} != {45}
        assert any(r.challenge_window for r in c.reviews)
        assert any(r.representation_check for r in c.reviews)
        clauses = c.clauses.model_dump()
        assert all(clauses.values()), f"{path.name} gives every process a clause"
        assert not set(clauses.values()) & set(wirral.clauses.model_dump().values())
        assert not {b.id for b in c.bodies} & {b.id for b in wirral.bodies}
        assert all(b.cadence is None or b.cadence.location for b in c.bodies)


@pytest.mark.parametrize("name", list(PARTNERSHIPS))
def test_wct_check_passes_each_test_partnership(name: str, tmp_path: Path) -> None:
    runtime = Runtime(
        settings=Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'wct.db'}"),
        clock=FixedClock(datetime(2027, 1, 4, 9, tzinfo=UTC)),
    )
    result = CliRunner().invoke(app, ["check", str(PARTNERSHIPS[name])], obj=runtime)
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_no_message_cites_a_clause_the_file_does_not_give(played: Played) -> None:
    given = given_clauses(played.c)
    foreign: dict[str, set[str]] = {}
    for mail in played.mail:
        cited = set(NUMBER.findall(URL.sub(" ", mail.subject + mail.text))) - given
        if cited:
            foreign[mail.key] = cited
    assert not foreign, sorted(foreign.items())[:10]
    cited = {n for m in played.mail for n in NUMBER.findall(URL.sub(" ", m.subject + m.text))}
    # Its own clauses are cited: the bodies', the processes' (risks, disputes, calls to account,
    # approvals) and the decision rule's in the minutes.
    c = played.c
    expected = {c.cite("risk"), c.cite("call_to_account"), c.cite("decisions")}
    expected |= {b.clause for b in c.bodies if b.cadence and b.clause}
    assert expected <= cited, expected - cited
    ladder = [m for s in c.disputes.stages for m in played.of(s.name)]
    assert ladder and all(f"clause {c.cite('disputes')} " in m.text for m in ladder)


def test_messages_name_the_partnership_its_agreement_and_its_sender(played: Played) -> None:
    p = played.c.partnership
    assert played.mail
    for word in WIRRAL_WORDS:
        found = [m.key for m in played.mail if word in URL.sub(" ", m.subject + m.text)]
        assert not found, (word, found[:5])
    assert {m.sender for m in played.mail} == {f"{p.sender_name} <{p.sender_email}>"}
    assert p.coordinator is not None
    assert all(p.coordinator.email in m.text for m in played.mail)
    assert all(p.logo_url and p.logo_url in m.text for m in played.mail)
    assert any(p.agreement_name in m.text for m in played.mail)


def test_each_body_meets_by_its_cadence_at_its_venue_in_its_own_time_zone(
    played: Played,
) -> None:
    c, zone = played.c, played.c.partnership.zone
    with Session(played.engine) as session:
        meetings = session.exec(select(Meeting).where(col(Meeting.extraordinary).is_(False))).all()
    start = datetime.combine(START, time(), tzinfo=zone)
    end = datetime.combine(END + timedelta(days=1), time(), tzinfo=zone)
    for body in c.bodies:
        if body.cadence is None:
            continue
        first = body.cadence.first.replace(tzinfo=zone)
        expected = meetings_between(body.cadence.rrule, first, start, end, zone=zone)
        held = sorted(
            m.starts_at for m in meetings if m.body_id == body.id and start <= m.starts_at < end
        )
        assert held == expected, body.id
        wall = first.strftime("%H:%M")
        assert all(m.astimezone(zone).strftime("%H:%M") == wall for m in held), body.id
        notices = [m for m in played.of("notice") if m.key.startswith(f"meeting:{body.id}:")]
        assert notices, body.id
        for notice in notices:
            assert body.cadence.location and body.cadence.location in notice.text
            assert wall in notice.text, (body.id, notice.key)  # its local time, not London's
            assert f"TZID:{c.partnership.time_zone}" in notice.calendar


def test_every_member_of_a_body_gets_one_notice_of_each_of_its_meetings(played: Played) -> None:
    c = played.c
    with Session(played.engine) as session:
        seats = {b.id: {p.email for p in body_members(session, c, b.id)} for b in c.bodies}
    notices = Counter(
        (m.key.split(":notice:")[0], m.to.split("<")[-1].rstrip(">"))
        for m in played.of("notice")
        if m.key.startswith("meeting:")
    )
    assert notices
    assert set(notices.values()) == {1}  # nobody twice
    meetings: dict[str, set[str]] = {}
    for (meeting, email), _ in notices.items():
        meetings.setdefault(meeting, set()).add(email)
    for meeting, emails in meetings.items():
        body = meeting.split(":")[1]
        assert emails == seats[body], meeting


def test_the_dispute_climbs_the_files_own_ladder(played: Played) -> None:
    stages = [s.name for s in played.c.disputes.stages]
    with Session(played.engine) as session:
        climbed = session.exec(
            select(DisputeStageRecord.stage)
            .where(DisputeStageRecord.dispute_id == 1)
            .order_by(col(DisputeStageRecord.id))
        ).all()
    assert list(climbed) == stages
    assert played.summary["cases"]["dispute"]["reached_adr"] == 1
    for stage in stages:  # each stage told its audience, by the stage's own name
        assert played.of(stage), stage


def test_reports_close_in_the_files_months_and_every_case_kind_ran(played: Played) -> None:
    with Session(played.engine) as session:
        reports = session.exec(select(Report)).all()
        reviews = session.exec(select(Review)).all()
    months = {q.id: q.months for q in played.c.quarterly_reports}
    assert reports
    for report in reports:
        assert re.fullmatch(r"\d{4}-P\d", report.period), report.period
        assert period_end(report.period, months[report.kind]).month in months[report.kind]
    assert {r.kind for r in reviews} == {r.id for r in played.c.reviews}
    cases = played.summary["cases"]
    assert cases["risk"]["escalated"] >= 1 and cases["call_to_account"]["opened"] >= 1
    assert cases["approval"]["requested"] >= 1 and cases["dispute"]["opened"] >= 1
    assert played.summary["messages_failed"] == 0


def test_the_simulation_ran_on_the_database_named_and_never_on_one_in_use(
    played: Played, tmp_path: Path
) -> None:
    """`--database` (PostgreSQL for Northmere) holds the simulated records; simulating into a
    database that holds records is refused, naming it, and changes nothing."""
    backend = played.engine.url.get_backend_name()
    assert backend == ("postgresql" if BACKENDS[played.name] == "postgres" else "sqlite")
    with Session(played.engine) as session:
        before = session.exec(select(AuditHead.seq)).one()
    assert before > 0
    url = played.engine.url.render_as_string(hide_password=False)
    args = ["simulate", "--constitution", str(PARTNERSHIPS[played.name]), "--database", url]
    args += ["--from", "2027-06-01", "--to", "2027-06-02", "--home", str(tmp_path)]
    runtime = Runtime(
        settings=Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'none.db'}"),
        clock=FixedClock(datetime(2027, 6, 1, 9, tzinfo=UTC)),
    )
    result = CliRunner().invoke(app, args, obj=runtime)
    assert result.exit_code != 0
    assert "already holds wct records" in result.output and "--database" in result.output
    with Session(played.engine) as session:
        assert session.exec(select(AuditHead.seq)).one() == before


@pytest.mark.parametrize(
    ("database", "words"),
    [
        ("not a url", "--database: not a database URL"),
        ("sqlite:////nonexistent-dir/x/wct.db", "cannot open sqlite:////nonexistent-dir/x/wct.db"),
    ],
)
def test_simulate_refuses_a_database_it_cannot_use_and_writes_nothing(
    database: str, words: str, tmp_path: Path
) -> None:
    args = ["simulate", "--constitution", str(PARTNERSHIPS["riverside"]), "--database", database]
    args += ["--from", "2027-06-01", "--to", "2027-06-02", "--home", str(tmp_path / "sim")]
    runtime = Runtime(
        settings=Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'none.db'}"),
        clock=FixedClock(datetime(2027, 6, 1, 9, tzinfo=UTC)),
    )
    result = CliRunner().invoke(app, args, obj=runtime)
    assert result.exit_code != 0
    assert words in result.output, result.output
    assert not (tmp_path / "sim" / "wct.db").exists() and not (tmp_path / "none.db").exists()
