"""The members' pages in a real browser (issue 10, "Done means"): Debian's Chromium driven by
Playwright, against a real uvicorn serving the app on a real SQLite database, with the mail the
real dispatcher delivers to the mail folder. A member acts from the link in a delivered `.eml`;
refused links change nothing; every page passes axe-core and works at phone width (390 px);
and no member's mail tells them to run a `wct` command."""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import pytest
from prefect.client.schemas.objects import StateType
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from deployments.web.app import WebApp
from deployments.web.security import TokenBuckets
from models.clock import LONDON, FixedClock, SystemClock
from models.commands import apply_constitution, current_constitution
from models.constitution import Constitution, load_constitution
from models.db import make_engine, migrate
from models.instructions import (
    AnswerDeadline,
    CompleteReview,
    OpenCallToAccount,
    OpenDispute,
    OpenReports,
    OpenReview,
    PlanMeeting,
    RaiseRisk,
    RequestApproval,
)
from models.links import action_url
from models.meetings.kinds import AGENDA, REMINDER
from models.meetings.plan import next_meeting_days, step_times
from models.permissions import OPERATOR, SYSTEM_CYCLE
from models.steps.engine import run_due
from models.tables import AgendaItem, AuditEvent, CallToAccount, Meeting, Report, Step
from models.uow import UnitOfWork
from notifications.config import NotificationSettings
from notifications.contexts import validate_context
from notifications.dispatch import drain
from notifications.render import render
from notifications.samples import SAMPLES, sample

from .cases_support import act, import_members_file
from .conftest import DATA
from .cycles_support import london, populate
from .test_web import pseudonym, snapshot
from .web_support import KEY, Mail, Site, read_mail, serving, site_on

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

T = TypeVar("T")
#: `WCT_DOCS_SCREENSHOT=1 pytest -m browser -k phone_width` writes the README's screenshot.
DOCS_PAGE = "me"
DOCS_SHOT = Path(__file__).resolve().parents[1] / "docs" / "members-page.png"
CLI = re.compile(r"\bwct [a-z]")


# --- helpers ---------------------------------------------------------------------------------


def expect_heading(page: Page, words: str) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", level=1)).to_have_text(words)


def plan(site: Site, body: str, day: date) -> Meeting:
    planned = act(site.engine, site.clock, SYSTEM_CYCLE, PlanMeeting(body=body, day=day))
    with Session(site.engine) as session:
        meeting = session.get(Meeting, planned.meeting_id)
        assert meeting is not None
        return meeting


def when(site: Site, meeting: Meeting, step: str) -> None:
    """Move the clock to the moment a meeting's step is due and fire what is due, as the
    step timers and the sweep do."""
    with Session(site.engine) as session:
        times = step_times(current_constitution(session), meeting.starts_at)
    site.clock.set(times[step])
    run_due(site.engine, site.clock)


def per_recipient(mail: list[Mail], part: str) -> Counter[str]:
    """How many messages whose outbox key contains `part` each member received."""
    return Counter(m.to for m in mail if f":{part}:" in m.key or m.key.endswith(f":{part}"))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, WebApp]]:
    with serving() as running:
        yield running


@pytest.fixture
def site(
    served: tuple[str, WebApp],
    migrated_sqlite: Path,
    wirral: Constitution,
    clock: FixedClock,
    tmp_path: Path,
) -> Iterator[Site]:
    with site_on(served, migrated_sqlite, wirral, clock, tmp_path) as on:
        yield on


@pytest.fixture
def phone(page_context: BrowserContext) -> Iterator[Page]:
    page = page_context.new_page()
    yield page
    page.close()


def other_browser(browser: Browser) -> BrowserContext:
    return browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")


# --- 3. a deadline agreed through the form wakes the waiting case run (first in the module:
# the harness must start before Playwright's sync API holds this thread's event loop) ---------


def off_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end on its own event loop in another thread (Playwright's sync API
    holds this thread's loop), with this thread's context (the harness's Prefect settings)."""
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(context.run, asyncio.run, work).result()


@pytest.fixture(scope="module")
def case_runs(prefect_harness: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's Prefect harness and a real serving process for the case flows (as in
    tests/test_case_flows.py): a suspended run needs its deployment to resume."""
    from .test_case_flows import CaseServer

    workdir = tmp_path_factory.mktemp("case-runs")
    database_url = f"sqlite:///{workdir / 'wct.db'}"
    engine = make_engine(database_url)
    migrate(engine)
    with UnitOfWork(engine, clock=SystemClock(), actor="test") as uow:
        apply_constitution(uow, constitution=load_constitution(), source="wirral.yaml")
        uow.commit()
    import_members_file(engine, FixedClock(datetime.now(LONDON)), DATA / "cases-members.csv")
    engine.dispose()
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_harness,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "WCT_DATABASE_URL": database_url,
        "WCT_HOME": str(workdir),
    }
    server = CaseServer(prefect_harness, database_url, workdir, env=env)
    off_loop(server.start())
    try:
        yield server
    finally:
        if server.process is not None:
            server.stop()


def test_a_deadline_agreed_through_the_form_resumes_the_waiting_case_run(
    prefect_harness: str,  # noqa: ARG001 -- first: Prefect's sync calls need no running loop
    case_runs: Any,
    served: tuple[str, WebApp],
    page_context: BrowserContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deployments.web.serve import prefect_follow_up
    from models.config import get_settings

    from .test_case_flows import until

    base, web = served
    monkeypatch.setenv("WCT_DATABASE_URL", case_runs.database_url)
    monkeypatch.setenv("WCT_HOME", str(case_runs.workdir))
    get_settings.cache_clear()
    engine = make_engine(case_runs.database_url)
    harness = contextvars.copy_context()  # the harness's Prefect settings, for the app's thread

    async def on_change(subjects: Sequence[str]) -> None:
        """What `wct up` wires (deployments/cli_up.py): relay, and wake the waiting runs."""
        await asyncio.get_running_loop().create_task(prefect_follow_up(subjects), context=harness)

    web.engine, web.clock, web.home = engine, SystemClock(), case_runs.workdir
    web.buckets, web.on_change = TokenBuckets(), on_change
    try:
        started = off_loop(_open_call(engine))
        run_id, case_id = started
        link = action_url(
            base,
            KEY,
            person=pseudonym(engine, "pat@police.example"),
            action="account.agree_for_partner",
            subject=f"account:{case_id}",
            now=datetime.now(LONDON),
        )
        page = page_context.new_page()
        page.goto(link)
        expect_heading(page, "Agree the deadline, or propose another")
        page.get_by_label("Agree the proposed deadline").check()
        page.get_by_role("button", name="Send my answer").click()
        expect_heading(page, "Thank you: this is done")
        # The run was woken, re-read the case, and now waits on its next revision.
        woken = off_loop(until(run_id, {StateType.PAUSED}, key_part="-r2-a0"))
        assert woken.state is not None and woken.state.state_details.pause_key
        with Session(engine) as session:
            case = session.get(CallToAccount, case_id)
            assert case is not None and case.agreed_deadline is not None
            actions = session.exec(
                select(AuditEvent.action).where(AuditEvent.subject == f"account:{case_id}")
            ).all()
        assert list(actions) == ["account.opened", "account.deadline_agreed"]
    finally:
        web.on_change = None
        engine.dispose()
        get_settings.cache_clear()


async def _open_call(engine: Engine) -> tuple[UUID, int]:
    """A call to account opened as a run of its deployment, waiting (suspended) on the partner."""
    from prefect.client.orchestration import get_client
    from prefect.deployments.flow_runs import arun_deployment
    from prefect.exceptions import ObjectNotFound

    from .test_case_flows import until

    async with get_client() as client:  # `serve()` registers its deployments one by one
        deadline = time.monotonic() + 90
        while True:
            try:
                await client.read_deployment_by_name("call-to-account/call-to-account")
                break
            except ObjectNotFound:
                assert time.monotonic() < deadline, "call-to-account was never registered"
                await asyncio.sleep(0.25)
    started = await arun_deployment(
        "call-to-account/call-to-account",
        parameters={
            "request": {
                "organisation": "merseyside-police",
                "evidence": "Section 11 audit: strategy meetings missed",
                "proposed_deadline": (date.today() + timedelta(days=28)).isoformat(),
                "opened_by": "chair@wscb.example",
            }
        },
        timeout=0,
    )
    await until(started.id, {StateType.PAUSED}, key_part="-a0")
    with Session(engine) as session:
        case = session.exec(select(CallToAccount)).one()
    assert case.id is not None
    return started.id, case.id


# --- 1. apologies from a delivered message; the reminder is not sent to that member ------------


def test_apologies_from_the_link_in_a_delivered_email_stop_that_members_reminder(
    site: Site, phone: Page
) -> None:
    meeting = plan(site, "board", date(2027, 3, 9))
    when(site, meeting, AGENDA)
    delivered = site.deliver()
    notices = [m for m in delivered if m.to == "eve@council.example" and ":notice" in m.key]
    assert len(notices) == 1, [m.key for m in delivered]
    members = set(per_recipient(delivered, "notice"))
    assert "eve@council.example" in members and len(members) > 3

    phone.goto(notices[0].button("Send apologies"))
    expect_heading(phone, "Send your apologies")
    assert "/l/" not in phone.url  # the token leaves the address bar
    phone.get_by_role("button", name="Send my apologies").click()
    expect_heading(phone, "Thank you: this is done")

    when(site, meeting, REMINDER)
    reminders = per_recipient(site.deliver(), "reminder")
    assert reminders == Counter(dict.fromkeys(members - {"eve@council.example"}, 1))


# --- 2. a report uploaded through the form appears on the next agenda --------------------------


def test_a_report_uploaded_through_the_form_is_on_the_next_agenda(
    site: Site, phone: Page, tmp_path: Path
) -> None:
    act(site.engine, site.clock, OPERATOR, OpenReports(period="2027-Q1"))
    with Session(site.engine) as session:
        report = session.exec(
            select(Report).where(Report.from_body_id == "be-healthy", Report.period == "2027-Q1")
        ).one()
        stem = f"report:{report.kind}:{report.from_body_id}:{report.period}"
        asked = session.exec(select(Step.due_at).where(Step.key == f"{stem}:request")).one()
    site.clock.set(asked)
    run_due(site.engine, site.clock)  # the request goes out when its step is due
    [request] = [m for m in site.deliver() if m.to == "hana@nhs.example" and m.key.startswith(stem)]
    with Session(site.engine) as session:
        c = current_constitution(session)
    after = site.clock.now() + timedelta(days=28)  # time to submit before the agenda
    meeting = plan(site, report.to_body_id, next_meeting_days(c, report.to_body_id, after, 1)[0])
    pdf = tmp_path / "Be healthy Q1.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% Be healthy, 2027-Q1\n")

    phone.goto(request.button("Submit the report"))
    expect_heading(phone, "Submit the quarterly report")
    phone.get_by_label("The report").set_input_files(pdf)
    phone.get_by_role("button", name="Submit the report").click()
    expect_heading(phone, "Thank you: this is done")

    when(site, meeting, AGENDA)
    agendas = [m for m in site.deliver() if ":agenda" in m.key]
    assert agendas
    with Session(site.engine) as session:
        tabled = session.exec(
            select(AgendaItem.title).where(
                AgendaItem.meeting_id == meeting.id, col(AgendaItem.source) == f"report:{report.id}"
            )
        ).all()
    assert len(tabled) == 1, tabled
    for agenda in agendas:
        assert tabled[0] in agenda.text, agenda.text


# --- 4 and 5. refused links change nothing ----------------------------------------------------


@dataclass(frozen=True)
class Refused:
    status: int
    heading: str


def tampered(url: str) -> str:
    return url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")


def cut_short(url: str) -> str:
    """The link as an email program that breaks long lines might leave it."""
    base, token = url.rsplit("/", 1)
    return f"{base}/{token.split('.')[0]}"


def test_a_tampered_an_expired_and_a_replayed_link_are_refused_and_change_nothing(
    site: Site, phone: Page
) -> None:
    meeting = plan(site, "board", date(2027, 3, 9))
    subject = f"meeting:{meeting.id}"
    good = site.link("eve@council.example", "meeting.apologies", subject)
    short = site.link(
        "ed@council.example", "meeting.apologies", subject, lifetime=timedelta(hours=1)
    )
    phone.goto(good)
    phone.get_by_role("button", name="Send my apologies").click()
    expect_heading(phone, "Thank you: this is done")
    site.clock.advance(timedelta(hours=2))

    cases = {
        "tampered": (tampered(good), Refused(403, "This link does not work")),
        "expired": (short, Refused(410, "This link has expired")),
        "replayed": (good, Refused(409, "This has already been done")),
    }
    for name, (url, refused) in cases.items():
        before = snapshot(site.engine)
        response = phone.goto(url)
        assert response is not None and response.status == refused.status, name
        expect_heading(phone, refused.heading)
        assert snapshot(site.engine) == before, name


def test_a_link_opened_in_another_members_browser_is_refused(site: Site, phone: Page) -> None:
    meeting = plan(site, "board", date(2027, 3, 9))
    subject = f"meeting:{meeting.id}"
    phone.goto(site.link("eve@council.example", "meeting.apologies", subject))
    expect_heading(phone, "Send your apologies")
    before = snapshot(site.engine)
    response = phone.goto(site.link("ed@council.example", "meeting.apologies", subject))
    assert response is not None and response.status == 403
    expect_heading(phone, "This link was sent to someone else")
    phone.goto(f"{site.base}/act/apologies")  # still Eve's form, never Ed's
    expect_heading(phone, "Send your apologies")
    assert snapshot(site.engine) == before


# --- 6 and 7. every page: axe-core, and usable at 390 px ---------------------------------------


@dataclass(frozen=True)
class Visit:
    """A page a member (or anyone) reaches: how to get there in a fresh browser, and the
    button a form page must show."""

    name: str
    open: Callable[[Page], None]
    submit: str | None = None


def tour(site: Site) -> list[Visit]:
    """Every kind of page: each form, the personal page, each refusal, the public challenge."""
    engine, clock = site.engine, site.clock
    meeting = plan(site, "board", date(2027, 3, 9))
    report = act(engine, clock, OPERATOR, OpenReports(period="2027-Q1"))
    del report
    with Session(engine) as session:
        report_id = session.exec(
            select(Report.id).where(Report.from_body_id == "be-healthy", Report.period == "2027-Q1")
        ).one()
    account = act(
        engine,
        clock,
        "chair@wscb.example",
        OpenCallToAccount(
            organisation="merseyside-police",
            evidence="Section 11 audit",
            proposed_deadline=date(2027, 1, 29),
        ),
    )
    answered = act(
        engine,
        clock,
        "chair@wscb.example",
        OpenCallToAccount(
            organisation="nhs-wirral",
            evidence="Missed strategy meetings",
            proposed_deadline=date(2027, 1, 29),
        ),
    )
    act(
        engine,
        clock,
        "nina@nhs.example",
        AnswerDeadline(case_id=answered.case_id, accept=True, counter=None),
    )
    dispute = act(
        engine,
        clock,
        "coord@council.example",
        OpenDispute(title="Funding of the hub", parties=["merseyside-police", "nhs-wirral"]),
    )
    approval = act(
        engine,
        clock,
        "coord@council.example",
        RequestApproval(gate="strategic-development", title="Revised CYPP"),
    )
    risk = act(
        engine,
        clock,
        "coord@council.example",
        RaiseRisk(title="Vacancies", owner="sally@council.example", likelihood=4, impact=4),
    )
    act(engine, clock, OPERATOR, OpenReview(kind="cypp-review", year=2027))

    def link(email: str, action: str, subject: str) -> Callable[[Page], None]:
        url = site.link(email, action, subject)
        return lambda page: _goto(page, url)

    forms = [
        Visit(
            "apologies",
            link("eve@council.example", "meeting.apologies", f"meeting:{meeting.id}"),
            "Send my apologies",
        ),
        Visit(
            "item",
            link("eve@council.example", "meeting.item", f"meeting:{meeting.id}"),
            "Put forward this item",
        ),
        Visit(
            "report",
            link("hana@nhs.example", "report.submit", f"report:{report_id}"),
            "Submit the report",
        ),
        Visit(
            "deadline",
            link("pat@police.example", "account.agree_for_partner", f"account:{account.case_id}"),
            "Send my answer",
        ),
        Visit(
            "response",
            link("nina@nhs.example", "account.respond", f"account:{answered.case_id}"),
            "Submit the response",
        ),
        Visit(
            "dispute",
            link("pat@police.example", "dispute.outcome", f"dispute:{dispute.dispute_id}"),
            "Record the outcome",
        ),
        Visit(
            "approval",
            link("lead@council.example", "approval.decide", f"approval:{approval.request_id}"),
            "Record the decision",
        ),
        Visit(
            "risk",
            link("sally@council.example", "risk.review", f"risk:{risk.risk_id}"),
            "Record the review",
        ),
    ]
    eve = site.link("eve@council.example", "meeting.apologies", f"meeting:{meeting.id}")
    expired = site.link(
        "ed@council.example",
        "meeting.apologies",
        f"meeting:{meeting.id}",
        lifetime=timedelta(minutes=1),
    )
    me = site.personal("eve@council.example")

    def used(page: Page) -> None:
        _goto(page, eve)
        page.get_by_role("button", name="Send my apologies").click()
        _goto(page, eve)

    def someone_else(page: Page) -> None:
        _goto(page, eve)
        _goto(page, site.link("ed@council.example", "meeting.apologies", f"meeting:{meeting.id}"))

    def challenge(page: Page) -> None:
        clock.set(london(2027, 6, 1, 10, 0))
        act(
            engine,
            clock,
            "dcs@council.example",
            CompleteReview(kind="cypp-review", year=2027, outcome="Done"),
        )
        _goto(page, f"{site.base}/challenge/cypp-review/2027")

    def expired_link(page: Page) -> None:
        clock.advance(timedelta(minutes=5))
        _goto(page, expired)

    return [
        *forms,
        Visit("me", lambda page: _goto(page, me)),
        Visit("tampered", lambda page: _goto(page, tampered(eve))),
        Visit("broken", lambda page: _goto(page, cut_short(eve))),
        Visit("without-a-link", lambda page: _goto(page, f"{site.base}/act/apologies")),
        Visit("someone-else", someone_else),
        Visit("already-done", used),
        Visit("expired", expired_link),
        Visit("challenge", challenge, "Send my challenge"),
    ]


def _goto(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None


def serious(page: Page) -> list[dict[str, object]]:
    """axe-core's serious and critical violations on the page (an empty list passes)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations: list[dict[str, object]] = results.response["violations"]
    return [v for v in violations if v.get("impact") in ("serious", "critical")]


def test_every_page_passes_axe_core_with_no_serious_or_critical_violation(
    site: Site, browser: Browser
) -> None:
    failures: dict[str, list[str]] = {}
    for visit in tour(site):
        context = other_browser(browser)
        try:
            page = context.new_page()
            visit.open(page)
            found = serious(page)
            if found:
                failures[visit.name] = [
                    f"{v['id']} ({v['impact']}): {v['help']} -- "
                    + "; ".join(str(n["html"]) for n in v["nodes"])  # type: ignore[attr-defined]
                    for v in found
                ]
        finally:
            context.close()
    assert failures == {}, "\n".join(f"{k}: {v}" for k, v in failures.items())


def test_at_phone_width_every_page_fits_and_its_button_can_be_reached(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    for visit in tour(site):
        context = other_browser(browser)
        try:
            page = context.new_page()
            visit.open(page)
            assert page.evaluate("document.documentElement.scrollWidth <= 390"), visit.name
            if visit.submit is not None:
                button = page.get_by_role("button", name=visit.submit)
                button.scroll_into_view_if_needed()
                expect(button).to_be_visible()
                expect(button).to_be_in_viewport()
            shot = tmp_path / f"{visit.name}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000, visit.name
            if visit.name == DOCS_PAGE and os.environ.get("WCT_DOCS_SCREENSHOT") == "1":
                DOCS_SHOT.write_bytes(shot.read_bytes())  # the README's picture
        finally:
            context.close()


# --- 8. no CLI in members' mail ----------------------------------------------------------------


def _a_year(engine: Engine, clock: FixedClock) -> None:
    """A year of the partnership: every body's meetings by its cadence, the four quarters'
    reports, the reviews, and a case of each kind; steps fired day by day as the timers and
    the sweep would, with members answering now and then."""
    coordinator = "coord@council.example"
    with Session(engine) as session:
        c = current_constitution(session)
    year_end = clock.now() + timedelta(days=365)
    for body in c.bodies:
        if body.cadence is None:
            continue
        for day in next_meeting_days(c, body.id, clock.now() + timedelta(days=1), 12):
            if at_noon(day) < year_end:
                act(engine, clock, coordinator, PlanMeeting(body=body.id, day=day))
    for period in ("2026-Q4", "2027-Q1", "2027-Q2", "2027-Q3"):
        act(engine, clock, OPERATOR, OpenReports(period=period))
    act(engine, clock, coordinator, OpenReview(kind="commissioning-review", year=2027))
    act(engine, clock, OPERATOR, OpenReview(kind="cypp-review", year=2027))
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
        AnswerDeadline(case_id=opened.case_id, accept=True, counter=None),
    )
    for title, score in (("Vacancies", 5), ("Placements", 2)):
        act(
            engine,
            clock,
            coordinator,
            RaiseRisk(title=title, owner="sally@council.example", likelihood=score, impact=5),
        )
    act(engine, clock, coordinator, RequestApproval(gate="strategic-development", title="CYPP"))
    while clock.now() < year_end:
        clock.advance(timedelta(days=1))
        run_due(engine, clock)


def at_noon(day: date) -> datetime:
    return london(day.year, day.month, day.day, 12, 0)


def test_a_years_member_mail_names_no_wct_command(
    loaded: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    """Every member message a year produces, delivered through the real render and dispatcher
    to the mail folder, and every kind's sample through the same render: none tells a member
    to run a `wct` command (issue 10: "No CLI in members' mail")."""
    populate(loaded, clock)
    _a_year(loaded, clock)
    settings = NotificationSettings(home=tmp_path / "home", link_key=SecretStr(KEY.hex()))
    result = drain(loaded, clock=clock, settings=settings)
    assert (result.failed, result.dead, result.errors) == (0, 0, [])
    mail = [read_mail(p) for p in sorted(settings.mail_dir.glob("*.eml"))]
    kinds = Counter(m.key.split(":")[0] for m in mail)
    assert {"meeting", "report", "review", "dispute", "account", "risk", "approval"} <= set(
        kinds
    ), kinds
    assert len(mail) > 300, kinds
    commands = [
        f"{m.path.name} ({m.subject}): {found.group(0)!r}"
        for m in mail
        for part in (m.subject, m.text, m.html)
        if (found := CLI.search(part))
    ]
    for kind in sorted(SAMPLES):
        context = validate_context(kind, sample(kind, "Pat Doe"))
        out = render(kind, context)
        for part in (out.subject, out.text, out.html, out.teams):
            if found := CLI.search(part):
                commands.append(f"sample {kind}: {found.group(0)!r}")
    assert commands == [], "\n".join(commands)
