"""A message that asks for an action carries a button that does exactly that, for exactly its
recipient; every message links to the member's own page; and what members read is written for
a council audience: no wct commands, no pseudonyms, organisations by name."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.clock import LONDON, FixedClock
from models.instructions import (
    AnswerDeadline,
    OpenCallToAccount,
    OpenDispute,
    OpenReports,
    OpenReview,
    PlanMeeting,
    RaiseRisk,
    RequestApproval,
)
from models.links import PERSONAL_ACTION, Link, LinkRefused, new_key, verify
from models.steps.engine import run_due
from models.tables import Organisation, Person
from notifications.config import NotificationSettings
from notifications.contexts import CONTEXTS, validate_context
from notifications.dispatch import Recipient, drain, prepare
from notifications.links import LABELS, LinkMinter
from notifications.render import TEAMS_LIMIT, render
from notifications.samples import SAMPLES, sample

from .cases_support import act, import_members_file
from .conftest import DATA

WEB = "https://members.wirral.example"
PERSON = "p-1a2b3c4d5e6f"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=LONDON)
KEY = new_key()

#: What each kind asks of its recipient (the sample's subject); the other kinds inform.
ASKS = {
    "meeting_notice": ("meeting.apologies", "meeting:12", "Send apologies"),
    "agenda": ("meeting.apologies", "meeting:12", "Send apologies"),
    "call_for_items": ("meeting.item", "meeting:12", "Submit an agenda item"),
    "reminder": ("report.submit", "report:7", "Submit the report"),
    "report_request": ("report.submit", "report:7", "Submit the report"),
    "report_overdue": ("report.submit", "report:7", "Submit the report"),
    "risk_review_overdue": ("risk.review", "risk:7", "Review the risk"),
    "dispute_stage": ("dispute.outcome", "dispute:3", "Record the outcome"),
    "call_to_account": ("account.agree_for_partner", "account:2", "Agree or propose a deadline"),
    "approval_request": ("approval.decide", "approval:4", "Record the decision"),
}
INFORMS = {
    "meeting_cancelled",
    "review_due",
    "risk_escalated",
    "challenge_answer",
    "action_reminder",
    "action_overdue",
    "minutes",
}
CLI = re.compile(r"\bwct [a-z]")
PSEUDONYM = re.compile(r"\bp-[0-9a-f]{6,}\b")


def minter(home: Path) -> LinkMinter:
    return LinkMinter(WEB, home=home, configured=SecretStr(KEY.hex()))


def token_of(url: str) -> str:
    assert url.startswith(f"{WEB}/l/"), url
    return url.removeprefix(f"{WEB}/l/")


def test_every_kind_either_asks_for_an_action_with_a_button_text_or_informs() -> None:
    assert set(ASKS) | INFORMS == set(CONTEXTS) == set(SAMPLES)
    asking = {kind for kind in SAMPLES if sample(kind).get("ask")}
    assert asking == set(ASKS)
    assert {label for _, _, label in ASKS.values()} <= set(LABELS.values())


@pytest.mark.parametrize("kind", sorted(ASKS))
def test_a_message_that_asks_has_a_button_for_exactly_its_recipient(
    kind: str, tmp_path: Path
) -> None:
    action, subject, label = ASKS[kind]
    context = validate_context(kind, sample(kind, "Pat Doe"))
    links = minter(tmp_path).links(context, person=PERSON, now=NOW)
    out = render(kind, context, links=links)

    [button] = re.findall(rf'<a href="([^"]+)"[^>]*>{re.escape(label)}</a>', out.html)
    assert button.startswith(f"{WEB}/l/")
    assert f"{label}:\n{button}\n" in out.text  # the text part has the same URL
    assert f"[{label}]({button})" in out.teams  # and Teams a link action
    link = verify(KEY, token_of(button), now=NOW)
    assert (link.person, link.action, link.subject) == (PERSON, action, subject)
    assert link.expires > NOW + timedelta(days=7)  # a member may answer a week or more later
    with pytest.raises(LinkRefused):  # signed with the partnership's key, no other
        verify(new_key(), token_of(button), now=NOW)
    assert "with the button below" in out.text or "use the button below" in out.text


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_message_links_to_the_members_own_page(kind: str, tmp_path: Path) -> None:
    context = validate_context(kind, sample(kind, "Pat Doe"))
    out = render(kind, context, links=minter(tmp_path).links(context, person=PERSON, now=NOW))

    [page] = re.findall(r'<a href="([^"]+)"[^>]*>What is due from me</a>', out.html)
    assert page in out.text and f"[What is due from me]({page})" in out.teams
    link = verify(KEY, token_of(page), now=NOW)
    assert (link.person, link.action) == (PERSON, PERSONAL_ACTION)
    buttons = 2 if kind in ASKS else 1
    assert out.html.count(f'href="{WEB}/l/') == buttons  # information only: no action button
    assert out.text.count(f"{WEB}/l/") == buttons


def test_two_recipients_get_two_links_neither_works_as_the_other(tmp_path: Path) -> None:
    context = validate_context("meeting_notice", sample("meeting_notice"))
    mint = minter(tmp_path)
    mine = mint.links(context, person=PERSON, now=NOW)
    theirs = mint.links(context, person="p-ffffffffffff", now=NOW)
    assert mine.action is not None and theirs.action is not None
    assert mine.action.url != theirs.action.url
    assert verify(KEY, token_of(mine.action.url), now=NOW).person == PERSON
    assert verify(KEY, token_of(theirs.action.url), now=NOW).person == "p-ffffffffffff"


def test_the_links_survive_the_teams_cut(tmp_path: Path) -> None:
    long = {**sample("risk_review_overdue"), "title": "Vacancies " * 150}
    context = validate_context("risk_review_overdue", long)
    links = minter(tmp_path).links(context, person=PERSON, now=NOW)
    out = render("risk_review_overdue", context, channel="teams", links=links)
    assert len(out.teams) <= TEAMS_LIMIT
    assert links.action is not None
    assert out.teams.endswith(f"[What is due from me]({links.personal.url})")
    assert f"**[Review the risk]({links.action.url})**" in out.teams
    assert "…" in out.teams  # the body was cut, not the links


def test_without_links_a_message_renders_with_none() -> None:
    """`wct preview` renders a sample without minting: no URL, and nothing else is missing."""
    out = render("meeting_notice", validate_context("meeting_notice", sample("meeting_notice")))
    assert "/l/" not in out.text + out.html + out.teams
    assert "What to do: Please attend." in out.text


def test_the_link_key_is_made_once_under_wct_home_and_kept(tmp_path: Path) -> None:
    context = validate_context("meeting_notice", sample("meeting_notice"))
    first = LinkMinter(WEB, home=tmp_path, configured=None)
    url = first.links(context, person=PERSON, now=NOW).personal.url
    again = LinkMinter(WEB, home=tmp_path, configured=None)  # another process, the same home
    assert verify(again.key, token_of(url), now=NOW).person == PERSON
    assert (tmp_path / "secrets" / "link.key").stat().st_mode & 0o077 == 0


# --- A cycle's worth of messages, delivered to the mail folder -------------------------------


def _decoded(path: Path) -> tuple[EmailMessage, str, str]:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    parts = {p.get_content_type(): p for p in message.walk() if not p.is_attachment()}
    return message, parts["text/plain"].get_content(), parts["text/html"].get_content()


def _season(engine: Engine, clock: FixedClock) -> None:
    """Meetings of three bodies, the quarter's reports, a review, and one case of each kind,
    with their steps fired day by day for nine weeks (as the timers and the sweep would)."""
    coordinator = "coord@council.example"
    for body, day in (
        ("executive", date(2026, 12, 16)),
        ("board", date(2027, 1, 12)),
        ("wscb", date(2027, 1, 28)),
    ):
        act(engine, clock, coordinator, PlanMeeting(body=body, day=day))
    act(engine, clock, coordinator, OpenReports(period="2026-Q4"))
    act(engine, clock, coordinator, OpenReview(kind="commissioning-review", year=2026))
    act(
        engine,
        clock,
        coordinator,
        OpenDispute(title="Funding of the hub", parties=["merseyside-police", "nhs-wirral"]),
    )
    opened = act(
        engine,
        clock,
        "chair@wscb.example",
        OpenCallToAccount(
            organisation="merseyside-police",
            evidence="Three late strategy discussions",
            proposed_deadline=date(2027, 1, 15),
        ),
    )
    act(
        engine,
        clock,
        "pat@police.example",
        AnswerDeadline(case_id=opened.case_id, accept=False, counter=date(2027, 1, 22)),
    )
    act(
        engine,
        clock,
        "chair@wscb.example",
        AnswerDeadline(case_id=opened.case_id, accept=True, counter=None),
    )
    for title, score in (("Vacancies", 5), ("Placements", 2)):
        act(
            engine,
            clock,
            coordinator,
            RaiseRisk(title=title, owner="sally@council.example", likelihood=score, impact=5),
        )
    act(
        engine,
        clock,
        coordinator,
        RequestApproval(gate="strategic-development", title="Revised CYPP"),
    )
    for _ in range(63):
        clock.advance(timedelta(days=1))
        run_due(engine, clock)


@pytest.fixture
def season(loaded: Engine, clock: FixedClock, tmp_path: Path) -> tuple[Engine, Path]:
    import_members_file(loaded, clock, DATA / "cycles-members.csv")
    import_members_file(loaded, clock, DATA / "cases-members.csv")
    _season(loaded, clock)
    settings = NotificationSettings(home=tmp_path / "home", link_key=SecretStr(KEY.hex()))
    result = drain(loaded, clock=clock, settings=settings)
    assert (result.failed, result.dead, result.errors) == (0, 0, [])
    assert result.sent > 100
    return loaded, settings.mail_dir


def test_a_seasons_mail_has_no_command_no_pseudonym_and_links_for_its_reader(
    season: tuple[Engine, Path], clock: FixedClock
) -> None:
    engine, folder = season
    with Session(engine) as session:
        pseudonyms = {p.email: p.pseudonym for p in session.exec(select(Person))}
        organisations = {o.id: o.name for o in session.exec(select(Organisation))}
    kinds: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    mail = sorted(folder.glob("*.eml"))
    assert mail
    for path in mail:
        message, text, html = _decoded(path)
        reader = message["To"].addresses[0].addr_spec
        subject = str(message["Subject"])
        kinds[str(message["X-WCT-Key"]).split(":")[0]] += 1
        for part in (subject, text, html):
            assert not CLI.search(part), f"{path.name} ({subject}): {CLI.search(part)}"
            assert not PSEUDONYM.search(part), f"{path.name} ({subject}) names a pseudonym"
        assert not re.search(r"#\d", subject), subject
        assert not any(org_id in subject for org_id in organisations if "-" in org_id), subject
        urls = re.findall(r"http://127\.0\.0\.1:4300/l/[A-Za-z0-9_.-]+", text)
        links: list[Link] = [verify(KEY, url.rsplit("/", 1)[1], now=clock.now()) for url in urls]
        assert {link.person for link in links} == {pseudonyms[reader]}  # only for the reader
        assert PERSONAL_ACTION in {link.action for link in links}  # every message
        for link in links:
            if link.action != PERSONAL_ACTION:
                actions[link.action] += 1
                assert f'href="{urls[links.index(link)]}"' in html  # the button
    assert {"meeting", "report", "review", "dispute", "account", "risk", "approval"} <= set(kinds)
    assert {
        "meeting.apologies",
        "meeting.item",
        "report.submit",
        "dispute.outcome",
        "account.agree_for_partner",
        "account.agree_for_wscb",
        "account.respond",
        "approval.decide",
        "risk.review",
    } <= set(actions)


def test_subjects_name_organisations_and_only_those_permitted_get_the_button(
    season: tuple[Engine, Path],
) -> None:
    engine, folder = season
    by_reader: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(folder.glob("*.eml")):
        message, text, _ = _decoded(path)
        reader = message["To"].addresses[0].addr_spec
        by_reader.setdefault(reader, []).append((str(message["Subject"]), text))
    disputes = [s for s, _ in by_reader["pat@police.example"] if s.startswith("Dispute")]
    assert disputes and all("Merseyside Police and NHS Wirral" in s for s in disputes)
    agreed = "Call to account of Merseyside Police: deadline agreed"
    # The partner answers the call (account.respond: a party); the WSCB's chair is told only.
    [(_, partner)] = [(s, t) for s, t in by_reader["pat@police.example"] if s == agreed]
    [(_, wscb)] = [(s, t) for s, t in by_reader["chair@wscb.example"] if s == agreed]
    assert "Send the formal response:\nhttp" in partner
    assert "Send the formal response" not in wscb and "What is due from me" in wscb
    # A meeting's apologies come from its members; a WSCB notice reaches its members only.
    wscb_notices = [
        r
        for r, msgs in by_reader.items()
        for s, t in msgs
        if s.startswith("Wirral Safeguarding Children Board meeting") and "Send apologies" in t
    ]
    assert sorted(wscb_notices) == sorted(set(wscb_notices))
    assert "clause 11.2.1 of the Memorandum" in next(
        t for r in wscb_notices for s, t in by_reader[r] if s.startswith("Wirral Safeguarding")
    )


def test_the_invitation_in_the_calendar_carries_the_apologies_link(tmp_path: Path) -> None:
    context = validate_context("meeting_notice", sample("meeting_notice", "Pat Doe"))
    links = minter(tmp_path).links(context, person=PERSON, now=NOW)
    recipient = Recipient(1, "Pat Doe", "pat@example.org", None, True, PERSON)
    prepared = prepare(
        key="meeting:12:notice:p-1a2b3c4d5e6f:email",
        kind="meeting_notice",
        channel="email",
        context=context,
        recipient=recipient,
        settings=NotificationSettings(home=tmp_path, mail_from="wct@example.org"),
        now=NOW,
        links=links,
    )
    assert prepared.email_wire is not None and links.action is not None
    message = message_from_bytes(prepared.email_wire.encode(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    [calendar] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    [event] = list(icalendar.Calendar.from_ical(calendar.get_content()).walk("VEVENT"))
    assert f"Send apologies: {links.action.url}" in str(event["DESCRIPTION"])
