"""The members' pages (deployments/web/): a signed link opens one form; the form changes state
through `execute` as that member, once; everything else is refused and changes nothing."""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select
from starlette.testclient import TestClient

from deployments.web.app import SESSION_COOKIE, WebApp, create_app
from deployments.web.security import TokenBuckets
from deployments.web.serve import start
from models import meetings
from models.clock import FixedClock
from models.commands import apply_constitution
from models.constitution import load_constitution
from models.db import make_engine, migrate
from models.errors import Refused
from models.instructions import (
    AnswerDeadline,
    CompleteReview,
    DecideApproval,
    DeclareMeetingInterest,
    OpenCallToAccount,
    OpenDispute,
    OpenReports,
    OpenReview,
    PlanMeeting,
    RaiseRisk,
    RecordDisputeOutcome,
    RecordMeeting,
    RequestApproval,
    RespondToCall,
    ReviewRisk,
    SubmitItem,
    SubmitReport,
)
from models.links import action_url, link_key, personal_url, verify
from models.permissions import OPERATOR, SYSTEM_CYCLE, NotPermitted
from models.service import Command, execute
from models.tables import (
    AgendaItem,
    ApprovalRequest,
    Attendance,
    AuditEvent,
    AuditHead,
    CallToAccount,
    Declaration,
    Dispute,
    OutboxMessage,
    Person,
    Report,
    Risk,
    UsedLink,
)
from models.uow import UnitOfWork

from .cases_support import act
from .cycles_support import london, populate

KEY = b"w" * 32
BASE = "http://testserver"


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


@pytest.fixture
def web(people: Engine, clock: FixedClock, tmp_path: Path) -> WebApp:
    return WebApp(engine=people, clock=clock, key=KEY, home=tmp_path / "home", max_body=64_000)


@pytest.fixture
def client(web: WebApp) -> Iterator[TestClient]:
    with TestClient(create_app(web), base_url=BASE, follow_redirects=False) as c:
        yield c


def pseudonym(engine: Engine, email: str) -> str:
    with Session(engine) as session:
        return session.exec(select(Person.pseudonym).where(Person.email == email)).one()


def link(web: WebApp, email: str, action: str, subject: str, **kw: object) -> str:
    url = action_url(
        BASE,
        KEY,
        person=pseudonym(web.engine, email),
        action=action,
        subject=subject,
        now=web.clock.now(),
        **kw,  # type: ignore[arg-type]
    )
    return url.removeprefix(BASE)


def snapshot(engine: Engine) -> tuple[object, ...]:
    """The audit head and the row count of every table: equal means nothing changed."""
    with Session(engine) as session:
        head = session.get(AuditHead, 1)
        assert head is not None
        counts = tuple(
            session.exec(select(func.count()).select_from(t)).one()
            for t in SQLModel.metadata.sorted_tables
        )
        return (head.seq, head.hash, counts)


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def board_meeting(engine: Engine, clock: FixedClock) -> int:
    return act(
        engine, clock, SYSTEM_CYCLE, PlanMeeting(body="board", day=date(2027, 3, 9))
    ).meeting_id


def open_form(client: TestClient, path: str, form: str) -> str:
    opened = client.get(path)
    assert opened.status_code == 303, opened.text
    assert opened.headers["location"] == f"/act/{form}"  # token-free
    page = client.get(f"/act/{form}")
    assert page.status_code == 200, page.text
    return csrf(page.text)


# --- the link key and URLs (the contract the messages use) --------------------------------


def test_the_link_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = link_key(home, None)
    path = home / "secrets" / "link.key"
    assert len(key) >= 32 and link_key(home, None) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert link_key(home, SecretStr((b"a" * 32).hex())) == b"a" * 32
    with pytest.raises(ValueError, match="at least 32"):
        link_key(home, SecretStr("abcd"))


def test_action_and_personal_urls_carry_a_token_bound_to_their_person(clock: FixedClock) -> None:
    now = clock.now()
    url = action_url(
        "https://w.example/",
        KEY,
        person="p-1",
        action="meeting.apologies",
        subject="meeting:3",
        now=now,
    )
    assert url.startswith("https://w.example/l/")
    got = verify(KEY, url.rsplit("/", 1)[1], now=now)
    assert (got.person, got.action, got.subject) == ("p-1", "meeting.apologies", "meeting:3")
    me = verify(
        KEY,
        personal_url("https://w.example", KEY, person="p-1", now=now).rsplit("/", 1)[1],
        now=now + timedelta(days=179),
    )
    assert (me.action, me.subject) == ("me", "person:p-1")


# --- sending apologies: the whole path ----------------------------------------------------


def test_apologies_through_the_link_are_recorded_as_the_member_once(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    meeting = board_meeting(web.engine, clock)
    path = link(web, "eve@council.example", "meeting.apologies", f"meeting:{meeting}")
    token = path.removeprefix("/l/")
    opened = client.get(path)
    cookie = opened.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert token not in cookie and token not in opened.headers["location"]
    page = client.get("/act/apologies")
    assert "Board on Tuesday 9 March 2027" in page.text
    assert pseudonym(web.engine, "eve@council.example") not in page.text
    sent = client.post("/act/apologies", data={"csrf": csrf(page.text)})
    assert sent.status_code == 303 and sent.headers["location"] == "/act/apologies"
    assert "Thank you" in client.get("/act/apologies").text
    eve = pseudonym(web.engine, "eve@council.example")
    with Session(web.engine) as session:
        row = session.exec(select(Attendance).where(Attendance.meeting_id == meeting)).one()
        assert row.status == "apologies"
        last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()  # type: ignore[attr-defined]
        assert last is not None and (last.action, last.actor) == ("meeting.apologies", eve)
        assert session.exec(select(func.count()).select_from(UsedLink)).one() == 1
    before = snapshot(web.engine)
    replay = client.get(path)
    assert replay.status_code == 409 and "Monday 23 November 2026" in replay.text
    again = client.post("/act/apologies", data={"csrf": csrf(page.text)})
    assert again.status_code == 409 and "already been done" in again.text
    assert snapshot(web.engine) == before


@pytest.mark.parametrize(
    ("mangle", "status", "words"),
    [
        (lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"), 403, "does not work"),
        (lambda t: t.split(".")[0], 400, "not complete"),
    ],
)
def test_a_tampered_or_broken_link_is_refused_and_changes_nothing(
    client: TestClient, web: WebApp, clock: FixedClock, mangle: object, status: int, words: str
) -> None:
    meeting = board_meeting(web.engine, clock)
    token = link(web, "eve@council.example", "meeting.apologies", f"meeting:{meeting}")[3:]
    before = snapshot(web.engine)
    refused = client.get(f"/l/{mangle(token)}")  # type: ignore[operator]
    assert refused.status_code == status and words in refused.text
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    assert snapshot(web.engine) == before


def test_an_expired_link_is_refused(client: TestClient, web: WebApp, clock: FixedClock) -> None:
    meeting = board_meeting(web.engine, clock)
    path = link(
        web,
        "eve@council.example",
        "meeting.apologies",
        f"meeting:{meeting}",
        lifetime=timedelta(hours=1),
    )
    clock.advance(timedelta(hours=2))
    before = snapshot(web.engine)
    refused = client.get(path)
    assert refused.status_code == 410 and "expired" in refused.text
    assert snapshot(web.engine) == before


def test_a_link_opened_in_another_members_browser_is_refused(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    meeting = board_meeting(web.engine, clock)
    open_form(
        client,
        link(web, "eve@council.example", "meeting.apologies", f"meeting:{meeting}"),
        "apologies",
    )
    before = snapshot(web.engine)
    other = client.get(link(web, "ed@council.example", "meeting.apologies", f"meeting:{meeting}"))
    assert other.status_code == 403 and "sent to someone else" in other.text
    assert snapshot(web.engine) == before


def test_a_member_the_constitution_does_not_permit_is_refused_and_the_link_stays_unused(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    meeting = board_meeting(web.engine, clock)
    token = open_form(
        client,
        link(web, "fran@community.example", "meeting.apologies", f"meeting:{meeting}"),
        "apologies",
    )
    before = snapshot(web.engine)
    refused = client.post("/act/apologies", data={"csrf": token})
    assert refused.status_code == 403 and "cannot be done" in refused.text
    assert pseudonym(web.engine, "fran@community.example") not in refused.text
    assert snapshot(web.engine) == before


def test_a_post_without_the_csrf_token_is_refused(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    meeting = board_meeting(web.engine, clock)
    open_form(
        client,
        link(web, "eve@council.example", "meeting.apologies", f"meeting:{meeting}"),
        "apologies",
    )
    before = snapshot(web.engine)
    assert client.post("/act/apologies", data={}).status_code == 403
    assert client.post("/act/apologies", data={"csrf": "x" * 43}).status_code == 403
    assert snapshot(web.engine) == before


# --- reports, deadlines -------------------------------------------------------------------


def healthy_report(engine: Engine, clock: FixedClock) -> int:
    act(engine, clock, OPERATOR, OpenReports(period="2027-Q1"))
    with Session(engine) as session:
        report = session.exec(
            select(Report).where(Report.from_body_id == "be-healthy", Report.period == "2027-Q1")
        ).one()
        assert report.id is not None
        return report.id


def outbox_rows(engine: Engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage.kind, Person.email, OutboxMessage.key).join(
                Person,
                OutboxMessage.person_id == Person.id,  # type: ignore[arg-type]
            )
        ).all()
    return sorted((k, e, key) for k, e, key in rows)


def test_a_report_uploaded_through_the_form_is_stored_and_submitted_as_the_chair(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    report_id = healthy_report(web.engine, clock)
    token = open_form(
        client, link(web, "hana@nhs.example", "report.submit", f"report:{report_id}"), "report"
    )
    pdf = b"%PDF-1.4\n% Q1 report\n"
    bad = client.post(
        "/act/report",
        data={"csrf": token},
        files={"document": ("q1.exe", io.BytesIO(b"MZ"), "application/pdf")},
    )
    assert bad.status_code == 400 and "must be one of" in bad.text
    assert (
        not list((web.home / "uploads").rglob("*.*")) if (web.home / "uploads").exists() else True
    )
    sent = client.post(
        "/act/report",
        data={"csrf": token},
        files={"document": ("Q1 report.pdf", io.BytesIO(pdf), "application/pdf")},
    )
    assert sent.status_code == 303, sent.text
    hana = pseudonym(web.engine, "hana@nhs.example")
    with Session(web.engine) as session:
        report = session.get(Report, report_id)
        assert report is not None and report.status == "submitted"
        assert report.submitted_by == hana
        assert report.document is not None and report.document.startswith("uploads/report-")
    assert (web.home / report.document).read_bytes() == pdf
    paper = client.get("/papers/" + report.document.removeprefix("uploads/"))
    assert paper.content == pdf
    assert paper.headers["content-disposition"].startswith("attachment")
    assert paper.headers["content-type"] == "application/octet-stream"
    assert client.get("/papers/../secrets/link.key").status_code == 404


def test_the_web_queues_the_same_messages_as_the_cli(
    client: TestClient, web: WebApp, clock: FixedClock, tmp_path: Path
) -> None:
    """The same submission, by the form and by `execute` as the CLI does, on twin databases."""
    report_id = healthy_report(web.engine, clock)
    token = open_form(
        client, link(web, "hana@nhs.example", "report.submit", f"report:{report_id}"), "report"
    )
    before = outbox_rows(web.engine)
    sent = client.post("/act/report", data={"csrf": token, "link": "https://x.example/q1.pdf"})
    assert sent.status_code == 303
    by_web = sorted(set(outbox_rows(web.engine)) - set(before))
    # The CLI's path on a fresh twin of the database.
    twin = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
    migrate(twin)
    with UnitOfWork(twin, clock=clock, actor="test") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        uow.commit()
    populate(twin, clock)
    healthy_report(twin, clock)
    twin_before = outbox_rows(twin)
    execute(
        twin,
        clock,
        "hana@nhs.example",
        SubmitReport(
            kind="strategy-group-performance",
            from_body="be-healthy",
            period="2027-Q1",
            document="https://x.example/q1.pdf",
        ),
    )
    by_cli = sorted(set(outbox_rows(twin)) - set(twin_before))
    assert [(k, e) for k, e, _ in by_web] == [(k, e) for k, e, _ in by_cli]
    twin.dispose()


def test_a_deadline_agreed_through_the_form_is_the_partners_answer(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    case = act(
        web.engine,
        clock,
        "chair@wscb.example",
        OpenCallToAccount(
            organisation="merseyside-police",
            evidence="Section 11 audit",
            proposed_deadline=date(2027, 1, 29),
        ),
    )
    token = open_form(
        client,
        link(web, "pat@police.example", "account.agree_for_partner", f"account:{case.case_id}"),
        "deadline",
    )
    sent = client.post("/act/deadline", data={"csrf": token, "answer": "agree"})
    assert sent.status_code == 303, sent.text
    with Session(web.engine) as session:
        row = session.get(CallToAccount, case.case_id)
        assert row is not None and row.agreed_deadline == date(2027, 1, 29)
        actors = session.exec(
            select(AuditEvent.actor).where(AuditEvent.subject == f"account:{case.case_id}")
        ).all()
    assert actors[-1] == pseudonym(web.engine, "pat@police.example")


# --- the personal page --------------------------------------------------------------------


def test_the_personal_page_lists_what_is_due_with_dates_and_no_ids(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    board_meeting(web.engine, clock)
    eve = pseudonym(web.engine, "eve@council.example")
    path = personal_url(BASE, KEY, person=eve, now=clock.now()).removeprefix(BASE)
    opened = client.get(path)
    assert opened.status_code == 303 and opened.headers["location"] == "/me"
    page = client.get("/me")
    assert page.status_code == 200 and "Eve Elected" in page.text, page.text
    assert "Apologies, if you cannot attend the Wirral Children&#39;s Trust Board" in page.text
    assert "Tuesday 9 March 2027" in page.text and eve not in page.text
    assert page.headers["cache-control"] == "no-store"
    ics = client.get("/me/calendar.ics")
    assert ics.headers["content-type"].startswith("text/calendar")
    assert ics.text.count("BEGIN:VEVENT") >= 2 and "Due: Apologies" in ics.text
    assert client.get("/me", cookies={SESSION_COOKIE: ""}).status_code in (200, 401)


# --- what a council's IT checks -------------------------------------------------------------


def test_every_response_has_the_security_headers(client: TestClient) -> None:
    for path in ("/", "/l/nonsense", "/me", "/nowhere"):
        r = client.get(path)
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in client.get("/").text


def test_a_request_over_the_size_limit_gets_413(client: TestClient) -> None:
    assert client.post("/act/report", content=b"x" * 70_000).status_code == 413


def test_token_checks_are_rate_limited_per_client(web: WebApp) -> None:
    web.buckets = TokenBuckets(capacity=3, rate=0.0)
    with TestClient(create_app(web), base_url=BASE, follow_redirects=False) as c:
        codes = [c.get("/l/x.y").status_code for _ in range(5)]
    assert codes == [403, 403, 403, 429, 429]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_over_real_http_the_token_is_never_logged(
    web: WebApp,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    meeting = board_meeting(web.engine, clock)
    path = link(web, "eve@council.example", "meeting.apologies", f"meeting:{meeting}")
    token = path.removeprefix("/l/")
    port = free_port()
    caplog.set_level(logging.DEBUG)
    # The test's own HTTP client logs its requests at DEBUG (the URL, the Set-Cookie it got); a
    # handler an earlier test left on the root logger would echo them. Only the server is judged.
    caplog.set_level(logging.WARNING, logger="httpx")
    caplog.set_level(logging.WARNING, logger="httpcore")
    running = start(web, "127.0.0.1", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as h:
            r = h.get(path)
            assert r.status_code == 303
            assert h.get(path.replace(token, token[:-2] + "zz")).status_code == 403
    finally:
        running.stop()
    out, err = capfd.readouterr()
    server_side = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "/l/" not in server_side and token[:20] not in server_side + out + err


# --- the public 7.2 challenge ---------------------------------------------------------------


def test_the_public_challenge_is_recorded_as_an_outside_party_never_as_a_member(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    act(web.engine, clock, OPERATOR, OpenReview(kind="cypp-review", year=2027))
    clock.set(london(2027, 6, 1, 10, 0))
    act(
        web.engine,
        clock,
        "dcs@council.example",
        CompleteReview(kind="cypp-review", year=2027, outcome="Done"),
    )
    form = client.get("/challenge/cypp-review/2027")
    assert form.status_code == 200 and "7.2" in form.text
    before = snapshot(web.engine)
    assert (
        client.post("/challenge/cypp-review/2027", data={"name": "x", "text": "y"}).status_code
        == 403
    )  # no CSRF token
    assert snapshot(web.engine) == before
    # Typing a member's email as the name does not act as that member.
    sent = client.post(
        "/challenge/cypp-review/2027",
        data={"csrf": csrf(form.text), "name": "olly@fire.example", "text": "Youth work is thin."},
    )
    assert sent.status_code == 200 and "recorded" in sent.text
    with Session(web.engine) as session:
        last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()  # type: ignore[attr-defined]
    assert last is not None and last.action == "review.challenged"
    assert last.actor != pseudonym(web.engine, "olly@fire.example")


def test_wct_up_starts_the_pages_at_the_web_url_and_stops_them(
    people: Engine, clock: FixedClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deployments.cli_base import Runtime
    from deployments.cli_up import _start_members_pages
    from models.config import Settings

    url = f"http://127.0.0.1:{free_port()}"
    rt = Runtime(settings=Settings(home=tmp_path / "home", web_url=url), clock=clock)
    running = _start_members_pages(rt, people)
    assert running is not None
    try:
        assert httpx.get(f"{url}/healthz").text == "ok"
        assert f"Members' pages: {url}" in capsys.readouterr().out
    finally:
        running.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


# --- every form, through the app: the right person changes it as themselves; no one else -----


def twin_engine(path: Path, clock: FixedClock) -> Engine:
    """A fresh database like the app's (the constitution and the members): the CLI's twin."""
    twin = make_engine(f"sqlite:///{path}")
    migrate(twin)
    with UnitOfWork(twin, clock=clock, actor="test") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        uow.commit()
    populate(twin, clock)
    return twin


def _item_meeting(engine: Engine, clock: FixedClock) -> str:
    return f"meeting:{board_meeting(engine, clock)}"


def _item_meeting_with_an_item(engine: Engine, clock: FixedClock) -> str:
    meeting = board_meeting(engine, clock)
    act(engine, clock, "eve@council.example", SubmitItem(meeting_id=meeting, title="Youth voice"))
    return f"meeting:{meeting}"


def _agreed_call(engine: Engine, clock: FixedClock) -> str:
    case = act(
        engine,
        clock,
        "chair@wscb.example",
        OpenCallToAccount(
            organisation="merseyside-police",
            evidence="Section 11 audit",
            proposed_deadline=date(2027, 1, 29),
        ),
    )
    act(engine, clock, "pat@police.example", AnswerDeadline(case_id=case.case_id, accept=True))
    return f"account:{case.case_id}"


def _dispute(engine: Engine, clock: FixedClock) -> str:
    opened = act(
        engine,
        clock,
        "pat@police.example",
        OpenDispute(
            title="Information sharing at the front door",
            parties=["merseyside-police", "nhs-wirral"],
        ),
    )
    return f"dispute:{opened.dispute_id}"


def _approval(engine: Engine, clock: FixedClock) -> str:
    asked = act(
        engine,
        clock,
        "dcs@council.example",
        RequestApproval(gate="strategic-development", title="Early help strategy"),
    )
    return f"approval:{asked.request_id}"


def _risk(engine: Engine, clock: FixedClock) -> str:
    raised = act(
        engine,
        clock,
        "dcs@council.example",
        RaiseRisk(
            title="Placement sufficiency", owner="sally@council.example", likelihood=3, impact=4
        ),
    )
    return f"risk:{raised.risk_id}"


def _state_of(engine: Engine, subject: str) -> object:
    """What the form changes, read back from the database."""
    kind, _, ref = subject.partition(":")
    with Session(engine) as session:
        match kind:
            case "meeting":
                items = session.exec(
                    select(AgendaItem.title, AgendaItem.submitted_by).where(
                        AgendaItem.meeting_id == int(ref)
                    )
                ).all()
                declared = session.exec(
                    select(Declaration.person_id, Declaration.nature).where(
                        Declaration.meeting_id == int(ref)
                    )
                ).all()
                return sorted(items), sorted(declared)
            case "account":
                call = session.get(CallToAccount, int(ref))
                assert call is not None
                return call.status, call.response
            case "dispute":
                dispute = session.get(Dispute, int(ref))
                assert dispute is not None
                return dispute.stage, dispute.outcome
            case "approval":
                request = session.get(ApprovalRequest, int(ref))
                assert request is not None
                return request.status, request.decision_note
            case "risk":
                risk = session.get(Risk, int(ref))
                assert risk is not None
                return risk.likelihood, risk.impact
    raise AssertionError(subject)


@dataclass(frozen=True)
class Scenario:
    """One form: how its subject comes about, who may act on it and who may not, what they
    answer, the command the CLI gives for the same, and the state and audit that follow."""

    form: str
    action: str
    setup: Callable[[Engine, FixedClock], str]
    member: str
    stranger: str
    answers: dict[str, str]
    cli: Callable[[int], Command[Any]]
    after: Callable[[str], object]  # the member's pseudonym -> the expected state
    audited: str


SCENARIOS = [
    Scenario(
        "item",
        "meeting.item",
        _item_meeting,
        "eve@council.example",
        "fran@community.example",
        {"title": "Youth voice"},
        lambda ref: SubmitItem(meeting_id=ref, title="Youth voice"),
        lambda eve: ([("Youth voice", eve)], []),
        "meeting.item_submitted",
    ),
    Scenario(
        "response",
        "account.respond",
        _agreed_call,
        "pat@police.example",
        "nina@nhs.example",
        {"response": "Action plan attached."},
        lambda ref: RespondToCall(case_id=ref, response="Action plan attached."),
        lambda _: ("responded", "Action plan attached."),
        "account.responded",
    ),
    Scenario(
        "dispute",
        "dispute.outcome",
        _dispute,
        "nina@nhs.example",
        "eve@council.example",
        {"resolved": "yes", "note": "A protocol is agreed."},
        lambda ref: RecordDisputeOutcome(
            dispute_id=ref, stage=None, resolved=True, note="A protocol is agreed."
        ),
        lambda _: ("closed", "resolved_informal"),
        "dispute.closed",
    ),
    Scenario(
        "approval",
        "approval.decide",
        _approval,
        "lead@council.example",
        "eve@council.example",
        {"decision": "approve", "note": ""},
        lambda ref: DecideApproval(request_id=ref, approve=True, note="Approved."),
        lambda _: ("approved", "Approved."),
        "approval.decided",
    ),
    Scenario(
        "approval",
        "approval.decide",
        _approval,
        "lead@council.example",
        "dcs@council.example",
        {"decision": "refuse", "note": "Not costed yet."},
        lambda ref: DecideApproval(request_id=ref, approve=False, note="Not costed yet."),
        lambda _: ("refused", "Not costed yet."),
        "approval.decided",
    ),
    Scenario(
        "risk",
        "risk.review",
        _risk,
        "sally@council.example",
        "eve@council.example",
        {"likelihood": "2", "impact": "3"},
        lambda ref: ReviewRisk(risk_id=ref, likelihood=2, impact=3),
        lambda _: (2, 3),
        "risk.reviewed",
    ),
]
IDS = ["item", "response", "dispute", "approve", "refuse", "risk"]


def seq_of(snap: tuple[object, ...]) -> int:
    """The audit head's sequence number in a `snapshot`."""
    seq = snap[0]
    assert isinstance(seq, int)
    return seq


def new_events(engine: Engine, after_seq: int) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(AuditEvent.action, AuditEvent.actor).where(AuditEvent.seq > after_seq)
        ).all()
    return [(a, b) for a, b in rows]


@pytest.mark.parametrize("case", SCENARIOS, ids=IDS)
def test_each_form_changes_state_as_the_member_with_the_clis_messages(
    client: TestClient, web: WebApp, clock: FixedClock, tmp_path: Path, case: Scenario
) -> None:
    subject = case.setup(web.engine, clock)
    who = pseudonym(web.engine, case.member)
    token = open_form(client, link(web, case.member, case.action, subject), case.form)
    before, outbox_before = snapshot(web.engine), outbox_rows(web.engine)
    sent = client.post(f"/act/{case.form}", data={"csrf": token, **case.answers})
    assert sent.status_code == 303, sent.text
    assert _state_of(web.engine, subject) == case.after(who)
    events = new_events(web.engine, seq_of(before))
    assert case.audited in [a for a, _ in events]
    assert {actor for _, actor in events} == {who}  # every event names the member, no one else
    assert "Thank you" in client.get(f"/act/{case.form}").text
    by_web = sorted(set(outbox_rows(web.engine)) - set(outbox_before))
    # The CLI's path, `execute` as that member, on a twin database: the same messages.
    twin = twin_engine(tmp_path / "twin.db", clock)
    try:
        assert case.setup(twin, clock) == subject
        twin_before = outbox_rows(twin)
        execute(twin, clock, case.member, case.cli(int(subject.split(":")[1])))
        by_cli = sorted(set(outbox_rows(twin)) - set(twin_before))
        assert _state_of(twin, subject) == case.after(pseudonym(twin, case.member))
    finally:
        twin.dispose()
    assert [(k, e) for k, e, _ in by_web] == [(k, e) for k, e, _ in by_cli]


@pytest.mark.parametrize("case", SCENARIOS, ids=IDS)
def test_each_form_refuses_the_wrong_person_and_changes_nothing(
    client: TestClient, web: WebApp, clock: FixedClock, case: Scenario
) -> None:
    subject = case.setup(web.engine, clock)
    unchanged = _state_of(web.engine, subject)
    token = open_form(client, link(web, case.stranger, case.action, subject), case.form)
    before = snapshot(web.engine)
    refused = client.post(f"/act/{case.form}", data={"csrf": token, **case.answers})
    assert refused.status_code == 403 and "cannot be done" in refused.text, refused.text
    assert pseudonym(web.engine, case.stranger) not in refused.text
    assert snapshot(web.engine) == before
    assert _state_of(web.engine, subject) == unchanged


def test_a_refusal_without_a_note_is_asked_again_and_changes_nothing(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    subject = _approval(web.engine, clock)
    token = open_form(
        client, link(web, "lead@council.example", "approval.decide", subject), "approval"
    )
    before = snapshot(web.engine)
    again = client.post("/act/approval", data={"csrf": token, "decision": "refuse", "note": " "})
    assert again.status_code == 400 and "a note of the decision" in again.text
    assert 'value="refuse" checked' in again.text  # the answer is kept
    assert snapshot(web.engine) == before


# --- 18.1: declaring an interest ahead of the meeting ----------------------------------------


def test_an_interest_declared_through_the_form_is_in_the_minutes_once(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    subject = _item_meeting_with_an_item(web.engine, clock)
    meeting = int(subject.split(":")[1])
    ed = pseudonym(web.engine, "ed@council.example")
    token = open_form(
        client, link(web, "ed@council.example", "meeting.declare", subject), "declare"
    )
    page = client.get("/act/declare").text
    assert "Youth voice" in page and "Apologies for absence" not in page
    assert 'name="item" value="1000"' in page
    before = snapshot(web.engine)
    wrong = client.post("/act/declare", data={"csrf": token, "item": "7", "nature": "x"})
    assert wrong.status_code == 400 and "choose the item" in wrong.text
    assert snapshot(web.engine) == before
    nature = "My partner chairs the youth forum."
    sent = client.post("/act/declare", data={"csrf": token, "item": "1000", "nature": nature})
    assert sent.status_code == 303, sent.text
    assert new_events(web.engine, int(before[0])) == [("meeting.interest_declared", ed)]  # type: ignore[call-overload]
    # The agenda is composed, the meeting held and recorded with the same declaration: the
    # minutes show it once, against the item's place on the agenda.
    with UnitOfWork(web.engine, clock=clock, actor="test") as uow:
        lines = meetings.compose_agenda(uow, meeting_id=meeting)
        uow.commit()
    position = next(line.position for line in lines if line.title == "Youth voice")
    clock.set(london(2027, 3, 9, 14, 30))
    draft = act(
        web.engine,
        clock,
        "coord@council.example",
        RecordMeeting(
            meeting_id=meeting,
            present=["lead@council.example", "ed@council.example"],
            declarations=[
                meetings.DeclarationInput(who="ed@council.example", item=position, nature=nature)
            ],
        ),
    )
    assert draft.declarations == [f"{ed} on item {position}: {nature}"]


def test_an_interest_is_declared_ahead_only_by_a_member_of_the_body_before_the_meeting(
    web: WebApp, clock: FixedClock
) -> None:
    subject = _item_meeting_with_an_item(web.engine, clock)
    meeting = int(subject.split(":")[1])
    declare = DeclareMeetingInterest(meeting_id=meeting, item=1000, nature="A grant")
    before = snapshot(web.engine)
    with pytest.raises(NotPermitted):  # not a member of the Board
        act(web.engine, clock, "fran@community.example", declare)
    clock.set(london(2027, 3, 9, 14, 0))
    with pytest.raises(Refused, match="has started"):
        act(web.engine, clock, "ed@council.example", declare)
    assert snapshot(web.engine) == before
    clock.set(london(2027, 3, 1, 9, 0))
    first = act(web.engine, clock, "ed@council.example", declare)
    assert act(web.engine, clock, "ed@council.example", declare) == first  # once


# --- the personal page: a link to do each thing now ------------------------------------------


def open_me(client: TestClient, web: WebApp, email: str) -> str:
    person = pseudonym(web.engine, email)
    opened = client.get(personal_url(BASE, KEY, person=person, now=web.clock.now())[len(BASE) :])
    assert opened.status_code == 303
    page = client.get("/me")
    assert page.status_code == 200, page.text
    return str(page.text)


def hrefs(page: str, words: str) -> list[str]:
    return re.findall(rf'<a href="(/l/[^"]+)">{re.escape(words)}</a>', page)


def test_the_personal_page_links_each_thing_due_to_its_form(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    meeting = board_meeting(web.engine, clock)
    page = open_me(client, web, "eve@council.example")
    [apologies] = hrefs(page, "Send apologies")
    [item] = hrefs(page, "Put forward an item")
    [declare] = hrefs(page, "Declare an interest")
    eve = pseudonym(web.engine, "eve@council.example")
    for href, action in (
        (apologies, "meeting.apologies"),
        (item, "meeting.item"),
        (declare, "meeting.declare"),
    ):
        got = verify(KEY, href.removeprefix("/l/"), now=clock.now())
        assert (got.person, got.action, got.subject) == (eve, action, f"meeting:{meeting}")
        assert got.expires <= clock.now() + timedelta(hours=8)  # no longer than the session
    followed = client.get(apologies)
    assert followed.status_code == 303 and followed.headers["location"] == "/act/apologies"
    page = client.get("/act/apologies")
    assert client.post("/act/apologies", data={"csrf": csrf(page.text)}).status_code == 303
    with Session(web.engine) as session:
        row = session.exec(select(Attendance).where(Attendance.meeting_id == meeting)).one()
    assert row.status == "apologies"
    after = client.get("/me").text  # the session goes on: the page, without what was done
    assert hrefs(after, "Send apologies") == [] and "You: apologies" in after


def test_an_approval_waiting_is_due_by_the_approving_bodys_next_meeting_or_no_date(
    client: TestClient, web: WebApp, clock: FixedClock
) -> None:
    _approval(web.engine, clock)
    page = open_me(client, web, "lead@council.example")
    line = re.search(
        r"<li><strong>The Wirral Children[^<]*Early help strategy[^<]*</strong>[^\n]*", page
    )
    assert line is not None, page
    assert ", by" not in line.group(0) and "Record the decision" in line.group(0)
    ics = client.get("/me/calendar.ics").text
    assert "Early help" not in ics
    board_meeting(web.engine, clock)
    page = client.get("/me").text
    line = re.search(r"<li><strong>The Wirral Children[^<]*Early help strategy[^\n]*", page)
    assert line is not None
    assert "at its next meeting</strong>, by Tuesday 9 March 2027 at 14:00" in line.group(0)
    assert "Early help" in client.get("/me/calendar.ics").text


def test_a_change_made_on_the_served_pages_talks_to_the_prefect_server_wct_up_chose(
    web: WebApp, clock: FixedClock
) -> None:
    """`wct up` points Prefect at its server with a context setting; the pages' thread must see
    it, or a member's change would wake no case run and start a temporary Prefect server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.web.serve import start

    seen: list[str | None] = []

    async def on_change(subjects: Sequence[str]) -> None:  # noqa: ARG001
        seen.append(PREFECT_API_URL.value())

    chosen = "http://127.0.0.1:9/api"
    served = dataclasses.replace(web, on_change=on_change)
    port = free_port()
    with temporary_settings(updates={PREFECT_API_URL: chosen}):
        running = start(served, "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    try:
        meeting = board_meeting(web.engine, clock)
        path = link(web, "eve@council.example", "meeting.apologies", f"meeting:{meeting}")
        with httpx.Client(base_url=base, follow_redirects=True) as browser:
            page = browser.get(path)
            assert page.status_code == 200, page.text
            done = browser.post("/act/apologies", data={"csrf": csrf(page.text)})
            assert done.status_code == 200 and "Thank you" in done.text
    finally:
        running.stop()
    assert seen == [chosen]


def test_a_page_says_so_when_the_database_does_not_answer(web: WebApp) -> None:
    """Not a bare server error: a 503 page that asks to try again, with the usual headers."""
    down = replace(web, engine=make_engine("postgresql+psycopg://postgres@127.0.0.1:1/test"))
    with TestClient(create_app(down), base_url=BASE, follow_redirects=False) as c:
        r = c.get("/")
    assert r.status_code == 503 and r.headers["retry-after"] == "60"
    assert "Not available just now" in r.text
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_the_health_check_and_stylesheet_read_nothing_a_page_reads_the_partnership(
    client: TestClient, web: WebApp
) -> None:
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(web.engine, "before_cursor_execute", seen)
    try:
        assert client.get("/healthz").status_code == 200
        assert client.get("/static/site.css").status_code == 200
        assert statements == []
        client.get("/")
        assert any("constitution" in s for s in statements)  # a page shows local times
    finally:
        event.remove(web.engine, "before_cursor_execute", seen)
