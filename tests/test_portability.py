"""Issue 13: another partnership's mail cites its own agreement, by its own name, with its own
clauses (none where its file gives none), never Wirral's; and Wirral's mail cites as before."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import partial
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models import meetings, reports, reviews, risks
from models.clock import FixedClock
from models.constitution import Constitution, load_constitution, parse_constitution
from models.decision import Vote
from models.errors import Refused
from models.instructions import OpenDispute, RaiseRisk
from models.permissions import NotPermitted
from models.steps.engine import run_due
from models.tables import Meeting, OutboxMessage
from notifications.config import NotificationSettings
from notifications.contexts import validate_context
from notifications.dispatch import drain
from notifications.render import render
from notifications.samples import sample_for

from .cases_support import act, import_members_file, install, run
from .conftest import DATA, Cli
from .cycles_support import fire
from .notifications_fixtures import SmtpServer, smtp_server

__all__ = ["smtp_server"]  # the fixture, used by name

ANYTOWN = DATA / "anytown.yaml"
MEMBERS = (DATA / "anytown-members.csv").read_text(encoding="utf-8")
#: Something that looks like a clause number: 4.2, 20.4.1 (dates and times do not).
NUMBER = re.compile(r"(?<![\w.])\d{1,2}(?:\.\d{1,2}){1,3}(?![\w.]*\d)")
URL = re.compile(r"https?://\S+")


def given_clauses(c: Constitution) -> set[str]:
    """Every clause number the constitution gives, for anything."""
    found: set[str] = set()
    texts = [b.clause for b in c.bodies]
    texts += [i.clause for i in c.standing_items]
    texts += [r.clause for r in c.reviews] + [q.clause for q in c.quarterly_reports]
    texts += [g.clause for g in c.approval_gates] + list(c.rules.values())
    texts += list(c.clauses.model_dump().values())
    for text in texts:
        if text:
            found.update(NUMBER.findall(text))
    return found


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(URL.sub(" ", text)))


def anytown_with_reports() -> Constitution:
    """Anytown's file, with an Executive (to which an overdue report is escalated) and its
    safeguarding partnership's quarterly report to the Board, under its own clauses."""
    data = yaml.safe_load(ANYTOWN.read_text(encoding="utf-8"))
    data["bodies"].append(
        {
            "id": "partnership-executive",
            "name": "Anytown Partnership Executive",
            "kind": "executive",
            "chair": "director",
            "clause": "4.3",
            "members": [{"role": "director"}, {"role": "rep", "organisation": "anytown-police"}],
        }
    )
    data["quarterly_reports"] = [
        {
            "id": "safeguarding-quarterly",
            "title": "Quarterly safeguarding report",
            "clause": "5.3",
            "from_body": "safeguarding-partnership",
            "to_body": "partnership-board",
        }
    ]
    return parse_constitution(yaml.safe_dump(data), source="anytown.yaml + reports")


@pytest.fixture
def anytown(engine: Engine, clock: FixedClock) -> tuple[Engine, Constitution]:
    c = anytown_with_reports()
    install(engine, clock, c, MEMBERS)
    return engine, c


def _decoded(path: Path) -> tuple[str, str, str]:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    parts = {p.get_content_type(): p for p in message.walk() if not p.is_attachment()}
    return (
        str(message["X-WCT-Key"]),
        str(message["Subject"]),
        parts["text/plain"].get_content() + parts["text/html"].get_content(),
    )


def _anytown_season(engine: Engine, clock: FixedClock, home: Path) -> list[tuple[str, str, str]]:
    """A meeting cycle of the Board, the quarter's reports, a review and an escalated risk, their
    steps fired day by day (as the sweep would), drained to the mail folder."""
    run(
        engine,
        clock,
        lambda uow: meetings.plan_meeting(uow, body_id="partnership-board", day=date(2027, 1, 4)),
    )
    run(engine, clock, lambda uow: reports.open_reports(uow, period="2026-Q4"))
    run(engine, clock, lambda uow: reviews.open_review(uow, kind="agreement-review", year=2027))
    run(
        engine,
        clock,
        lambda uow: risks.raise_risk(
            uow, title="Placements", owner="dan@anytown.example", likelihood=5, impact=5
        ),
    )
    for _ in range(70):  # past the review's due date, 29 January
        clock.advance(timedelta(days=1))
        run_due(engine, clock)
    settings = NotificationSettings(home=home)
    result = drain(engine, clock=clock, settings=settings)
    assert (result.failed, result.dead, result.errors) == (0, 0, [])
    return [_decoded(path) for path in sorted(settings.mail_dir.glob("*.eml"))]


def test_another_partnerships_mail_cites_only_its_own_agreement_and_clauses(
    anytown: tuple[Engine, Constitution], clock: FixedClock, tmp_path: Path
) -> None:
    engine, c = anytown
    mail = _anytown_season(engine, clock, tmp_path / "home")
    kinds = {key.split(":")[0] for key, _, _ in mail}
    assert {"meeting", "report", "review", "risk"} <= kinds, kinds
    allowed = given_clauses(c)
    assert {"4.2", "5.3", "9.1", "7.1"} <= allowed
    cited: set[str] = set()
    for key, subject, body in mail:
        text = f"{subject}\n{body}"
        assert "Wirral" not in text, key
        assert "Memorandum of Understanding" not in text, key
        assert " MoU " not in text, key
        found = numbers(text)
        cited |= found
        assert found <= allowed, (key, found - allowed)
    assert {"4.2", "5.3", "9.1", "7.1"} <= cited
    notices = [body for key, _, body in mail if key.startswith("meeting:")]
    assert notices
    assert any("clause 4.2 of the Anytown Children's Partnership Agreement" in b for b in notices)
    assert all("on behalf of Anytown Children's Partnership" in b for _, _, b in mail)
    assert all("casey@anytown.example" in b for _, _, b in mail)
    assert all(
        '<img src="https://anytown.example/logo.png" alt="Anytown Children&#39;s Partnership"' in b
        for _, _, b in mail
    )


def test_a_message_the_file_gives_no_clause_for_shows_no_clause_line() -> None:
    c = load_constitution(ANYTOWN)
    assert c.clauses.disputes is None
    data = sample_for(c, "dispute_stage")
    assert data["clause"] == ""
    out = render("dispute_stage", validate_context("dispute_stage", data))
    assert "clause" not in out.text + out.html + out.teams
    assert "on behalf of Anytown Children's Partnership" in out.text


def test_the_agenda_cites_no_clause_the_file_does_not_give(
    anytown: tuple[Engine, Constitution], clock: FixedClock, tmp_path: Path
) -> None:
    engine, c = anytown
    mail = _anytown_season(engine, clock, tmp_path / "home")
    agendas = [f"{s}\n{b}" for key, s, b in mail if ":agenda" in key]
    assert agendas
    assert all(numbers(text) <= given_clauses(c) for text in agendas)


def test_the_agenda_lists_the_files_standing_items_with_its_clauses(
    anytown: tuple[Engine, Constitution], clock: FixedClock
) -> None:
    engine, c = anytown
    planned = run(
        engine,
        clock,
        lambda uow: meetings.plan_meeting(uow, body_id="partnership-board", day=date(2027, 1, 4)),
    )
    with Session(engine) as session:
        meeting = session.get(Meeting, planned.meeting_id)
        assert meeting is not None
        titles = [t for t, _, _ in meetings.standing_items(session, c, meeting)]
    assert titles == [
        "Apologies",
        "Declarations of interest (4.5)",
        "Minutes of the last meeting",
        "Safeguarding partnership quarterly report",
        "Risks escalated to the Board (7.1)",
        "Items awaiting approval",
    ]


def test_wirral_mail_cites_each_bodys_clause_from_its_file(
    loaded: Engine, clock: FixedClock
) -> None:
    import_members_file(loaded, clock, DATA / "cycles-members.csv")
    for body, day in (("board", date(2027, 1, 12)), ("wscb", date(2027, 1, 28))):
        run(loaded, clock, partial(meetings.plan_meeting, body_id=body, day=day))
    run(
        loaded,
        clock,
        lambda uow: risks.raise_risk(
            uow, title="Vacancies", owner="sally@council.example", likelihood=5, impact=5
        ),
    )
    for _ in range(60):
        clock.advance(timedelta(days=1))
        run_due(loaded, clock)
    with Session(loaded) as session:
        rows = session.exec(select(OutboxMessage)).all()
        cited = {(m.key.split(":")[1], m.kind, json.loads(m.context)["clause"]) for m in rows}
        brands = {json.loads(m.context)["brand"]["agreement"] for m in rows}
    meeting_kinds = {"call_for_items", "meeting_notice", "agenda", "reminder"}
    notices = {(subject, clause) for subject, kind, clause in cited if kind in meeting_kinds}
    assert notices == {("board", "20.4.1"), ("wscb", "11.2.1")}
    assert ("wscb", "meeting_notice", "11.2.1") in cited
    assert {clause for _, kind, clause in cited if kind == "risk_escalated"} == {"16.1"}
    assert brands == {"Memorandum of Understanding"}


def test_preview_sample_for_another_partnership_uses_its_names_and_clauses() -> None:
    c = load_constitution(ANYTOWN)
    for kind in ("meeting_notice", "agenda", "risk_escalated", "dispute_stage", "review_due"):
        data = sample_for(c, kind)
        out = render(kind, validate_context(kind, data))
        text = "\n".join((out.subject, out.text, out.html, out.teams))
        assert "Wirral" not in text and "Memorandum of Understanding" not in text, kind
        assert numbers(text) <= given_clauses(c), kind
    notice = sample_for(c, "meeting_notice")
    assert notice["body"] == "Anytown Partnership Board" and notice["clause"] == "4.2"
    assert notice["location"] == "Anytown Civic Centre"
    assert sample_for(c, "dispute_stage")["clause"] == ""


def test_wct_preview_shows_the_loaded_partnership_and_before_init_the_built_in_sample(
    cli: Cli,
) -> None:
    before = cli("preview", "meeting_notice")
    assert before.exit_code == 0 and "Wirral Children's Trust Board" in before.output
    assert cli("init", "--constitution", ANYTOWN).exit_code == 0
    after = cli("preview", "meeting_notice")
    assert after.exit_code == 0, after.output
    assert "Anytown Partnership Board" in after.output
    assert "clause 4.2 of the Anytown Children's Partnership Agreement" in after.output
    assert "Wirral" not in after.output and "Memorandum of Understanding" not in after.output


def test_another_partnerships_decisions_and_refusals_cite_only_its_clauses(
    anytown: tuple[Engine, Constitution], clock: FixedClock
) -> None:
    """Anytown gives no clause for decisions (Wirral's 6.2) and cites declarations of interest
    under its declarations heading (4.5, not Wirral's 18.1); its refusals name its agreement."""
    engine, c = anytown
    assert c.cite("decisions") == "" and c.cite("interests") == "4.5"
    planned = run(
        engine,
        clock,
        lambda uow: meetings.plan_meeting(uow, body_id="partnership-board", day=date(2027, 1, 4)),
    )
    fire(engine, clock, "meeting:partnership-board:2027-01-04:agenda")
    clock.set(planned.starts_at + timedelta(hours=1))
    present = ["polly@anytown.example", "dan@anytown.example", "rob@police.example"]
    mid = planned.meeting_id
    run(engine, clock, lambda uow: meetings.record_attendance(uow, meeting_id=mid, present=present))
    run(
        engine,
        clock,
        lambda uow: meetings.declare_interest(
            uow, meeting_id=mid, who="rob@police.example", item=2, nature="Police funding"
        ),
    )
    votes = {present[0]: Vote.FOR, present[1]: Vote.AGAINST, present[2]: Vote.FOR}
    decided = run(
        engine,
        clock,
        lambda uow: meetings.record_motion(
            uow, meeting_id=mid, text="Adopt it", item=2, votes=votes
        ),
    )
    assert decided.decision.explanation == (
        "No decision: tied 1 for, 1 against, 0 abstaining, and the chair gave no casting vote. "
        "Not counted: 1 vote of members who declared an interest in this item (4.5)."
    )
    raised = run(
        engine,
        clock,
        lambda uow: risks.raise_risk(
            uow, title="Placements", owner="dan@anytown.example", likelihood=1, impact=1
        ),
    )
    run(engine, clock, lambda uow: risks.close_risk(uow, risk_id=raised.risk_id))
    with pytest.raises(Refused) as refused:
        run(engine, clock, lambda uow: risks.close_risk(uow, risk_id=raised.risk_id))
    assert str(refused.value) == (
        f"risk #{raised.risk_id} is already closed (Partnership Agreement 7.1)"
    )


def test_another_partnerships_permission_refusals_cite_its_clause_under_its_agreements_name(
    anytown: tuple[Engine, Constitution], clock: FixedClock
) -> None:
    """A command refused for who gives it cites the partnership's own clause for the process
    (Anytown's risks: 7.1, not Wirral's 16.1) after its own agreement's short name, and no
    clause for a process its file gives none for (disputes: not Wirral's 18.2)."""
    engine, c = anytown
    assert c.cite("risk") == "7.1" and c.cite("disputes") == ""
    outsider = "sam@safeguarding.example"  # not on the Executive, not a party to the dispute
    raise_risk = RaiseRisk(title="Placements", owner="dan@anytown.example", likelihood=1, impact=1)
    with pytest.raises(NotPermitted) as refused:
        act(engine, clock, outsider, raise_risk)
    assert refused.value.clause == "7.1"
    assert str(refused.value).endswith(
        " may not risk.raise for partnership-executive: allowed are body-member, "
        "kind:coordinator (Partnership Agreement 7.1)"
    )
    dispute = OpenDispute(title="Funding", parties=["anytown-council", "anytown-police"])
    with pytest.raises(NotPermitted) as refused:
        act(engine, clock, outsider, dispute)
    assert refused.value.clause is None
    text = str(refused.value)
    assert text.endswith(" may not dispute.open: allowed are party, kind:coordinator")
    assert "(" not in text and "MoU" not in text and "18.2" not in text


def test_the_from_header_is_the_partnerships_sender_and_the_settings_mailbox_sends_it(
    engine: Engine, clock: FixedClock, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """`partnership.sender_name` / `sender_email`: every message arrives with one From header,
    the partnership's; the configured mailbox sends it (Sender: and the SMTP envelope)."""
    data = yaml.safe_load(ANYTOWN.read_text(encoding="utf-8"))
    data["partnership"] |= {
        "sender_name": "Anytown Partnership",
        "sender_email": "hello@anytown.example",
    }
    c = parse_constitution(yaml.safe_dump(data), source="anytown.yaml + sender")
    install(engine, clock, c, MEMBERS)
    run(
        engine,
        clock,
        lambda uow: meetings.plan_meeting(uow, body_id="partnership-board", day=date(2027, 1, 4)),
    )
    fire(engine, clock, "meeting:partnership-board:2027-01-04:call_for_items")
    settings = smtp_server.settings(tmp_path / "home")
    result = drain(engine, clock=clock, settings=settings)
    assert (result.failed, result.dead, result.errors) == (0, 0, [])
    got = smtp_server.received
    assert len(got) == 3  # the call for items, to each member of the Board
    for received in got:
        froms = received.message.get_all("From")
        assert froms is not None and [str(f) for f in froms] == [
            "Anytown Partnership <hello@anytown.example>"
        ]
        assert str(received.message["Sender"]) == "wct <wct@example.org>"
        assert received.sender == "wct@example.org"


def test_without_a_partnership_sender_mail_comes_from_the_settings(
    loaded: Engine, clock: FixedClock, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    import_members_file(loaded, clock, DATA / "cycles-members.csv")
    run(loaded, clock, partial(meetings.plan_meeting, body_id="board", day=date(2027, 1, 12)))
    fire(loaded, clock, "meeting:board:2027-01-12:call_for_items")
    result = drain(loaded, clock=clock, settings=smtp_server.settings(tmp_path / "home"))
    assert result.errors == [] and smtp_server.received
    for received in smtp_server.received:
        froms = received.message.get_all("From")
        assert froms is not None and [str(f) for f in froms] == ["wct <wct@example.org>"]
        assert received.message["Sender"] is None
        assert received.sender == "wct@example.org"
