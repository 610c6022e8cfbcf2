"""Meeting papers: the agenda pack before a meeting and the minutes after it, as a Word document
and a printable HTML page; the public version; `wct meeting papers`; the papers attached to the
agenda email; the body's papers artifact."""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from docx import Document
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from flows.cycles import meeting_cycle, papers_key
from flows.steps import step
from models import meetings
from models.clock import LONDON, FixedClock
from models.constitution import PapersPolicy, load_constitution
from models.decision import Vote
from models.instructions import RecordMeeting, SendApologies, SubmitItem
from models.meetings.agenda import AgendaItemKind
from models.meetings.papers import (
    MeetingPapers,
    PaperDecision,
    PaperItem,
    PaperMember,
    PapersStage,
    is_confidential,
    meeting_papers,
)
from models.steps.engine import run_step
from models.tables import AgendaItem, MeetingAction, Person, Step
from notifications import dispatch
from notifications.config import NotificationSettings
from notifications.dispatch import drain
from notifications.email_message import Attachment, build_email
from notifications.papers import papers_docx, papers_html, papers_markdown
from notifications.render import HeaderInjection, Rendered

from .cases_support import act
from .conftest import DATA, Cli
from .cycles_support import artifact, london, populate, run, state
from .flows_harness import CycleDb

BOARD_DAY = date(2027, 3, 9)
STEM = "meeting:board:2027-03-09"
BOARD = {
    "lead@council.example",
    "eve@council.example",
    "ed@council.example",
    "dcs@council.example",
    "chair@wscb.example",
    "nina@nhs.example",
    "pat@police.example",
}
SECRET = "Placement with a named care home provider"
EXPLAINED = "casting vote after a tie"


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def fire(engine: Engine, clock: FixedClock, key: str) -> str:
    """Move the clock to the step's due time and fire its timer."""
    with Session(engine) as session:
        due = session.exec(select(Step.due_at).where(Step.key == key)).one()
    if clock.now() < due:
        clock.set(due)
    return run_step(engine, clock, key).result


def person_id(engine: Engine, email: str) -> int:
    with Session(engine) as session:
        found = session.exec(select(Person.id).where(Person.email == email)).one()
    assert found is not None
    return found


def published(engine: Engine, clock: FixedClock) -> int:
    """The Board of 2027-03-09 with two members' items, one of them confidential, its agenda
    and notice published, and Ed's apologies sent."""
    planned = run(
        engine, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=BOARD_DAY)
    )
    meeting_id = planned.meeting_id
    fire(engine, clock, f"{STEM}:call_for_items")
    act(engine, clock, "nina@nhs.example", SubmitItem(meeting_id=meeting_id, title="Youth offer"))
    act(engine, clock, "dcs@council.example", SubmitItem(meeting_id=meeting_id, title=SECRET))
    with Session(engine) as session:  # marked confidential by hand: no command does it yet
        item = session.exec(select(AgendaItem).where(AgendaItem.title == SECRET)).one()
        item.confidential = True
        session.add(item)
        session.commit()
    act(engine, clock, "ed@council.example", SendApologies(meeting_id=meeting_id))
    assert fire(engine, clock, f"{STEM}:agenda") == "acted"
    return meeting_id


def recorded(engine: Engine, clock: FixedClock) -> int:
    """The same meeting held: attendance, a declaration on each item, a decision on each
    (the youth offer by consensus, the placement on the chair's casting vote), and an action
    on each (inserted as the action tracker would)."""
    meeting_id = published(engine, clock)
    clock.set(london(2027, 3, 9, 16, 0))
    act(
        engine,
        clock,
        "coord@council.example",
        RecordMeeting(
            meeting_id=meeting_id,
            present=[
                "lead@council.example",
                "eve@council.example",
                "dcs@council.example",
                "nina@nhs.example",
            ],
            apologies=["ed@council.example"],
            declarations=[
                meetings.DeclarationInput(
                    "nina@nhs.example", 8, "Employed by NHS Wirral, which would run the offer"
                ),
                meetings.DeclarationInput("eve@council.example", 9, "Related to a home's owner"),
            ],
            motions=[
                meetings.MotionInput(text="Adopt the youth offer", item=8, consensus=True),
                meetings.MotionInput(
                    text="Approve the placement contract",
                    item=9,
                    votes={
                        "lead@council.example": Vote.FOR,
                        "dcs@council.example": Vote.AGAINST,
                    },
                    casting_vote=Vote.FOR,
                ),
            ],
        ),
    )
    owners = {e: person_id(engine, e) for e in ("eve@council.example", "dcs@council.example")}
    with Session(engine) as session:
        items = {
            i.position: i.id
            for i in session.exec(select(AgendaItem).where(AgendaItem.meeting_id == meeting_id))
        }
        for text, item, owner in (
            ("Publish the youth offer to schools", 8, "eve@council.example"),
            ("Sign the placement contract", 9, "dcs@council.example"),
        ):
            session.add(
                MeetingAction(
                    meeting_id=meeting_id,
                    agenda_item_id=items[item],
                    text=text,
                    owner_id=owners[owner],
                    due_on=date(2027, 4, 30),
                    created_at=clock.now(),
                )
            )
        session.commit()
    return meeting_id


def papers_of(engine: Engine, meeting_id: int, *, public: bool = False) -> MeetingPapers:
    with Session(engine) as session:
        return meeting_papers(session, meeting_id, public=public)


def docx_text(content: bytes) -> str:
    """Every paragraph and table cell of a Word document, one a line."""
    document = Document(io.BytesIO(content))
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text for cell in row.cells))
    return "\n".join(lines)


# --- the papers as data -----------------------------------------------------------------------


def test_agenda_pack_before_the_items_deadline_is_a_draft_of_the_agenda(
    people: Engine, clock: FixedClock
) -> None:
    planned = run(
        people, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=BOARD_DAY)
    )
    act(
        people,
        clock,
        "nina@nhs.example",
        SubmitItem(meeting_id=planned.meeting_id, title="Youth offer"),
    )
    before = state(people)
    papers = papers_of(people, planned.meeting_id)
    assert state(people) == before  # reading the papers changes nothing
    assert papers.stage is PapersStage.AGENDA_PACK and not papers.agenda_composed
    titles = [i.title for i in papers.items]
    assert titles[:2] == ["Apologies for absence", "Declarations of interest (18.1)"]
    assert titles[-2:] == ["Youth offer", "Any other business"]
    assert [i.position for i in papers.items] == list(range(1, len(titles) + 1))
    assert next(i for i in papers.items if i.title == "Youth offer").submitted_by == "Nina Nurse"
    html = papers_html(papers)
    assert "Draft agenda: it is composed when the items deadline passes" in html
    assert "Items due by" in html


def test_agenda_pack_names_members_organisations_and_apologies(
    people: Engine, clock: FixedClock
) -> None:
    meeting_id = published(people, clock)
    papers = papers_of(people, meeting_id)
    assert papers.stage is PapersStage.AGENDA_PACK and papers.agenda_composed
    members = {m.name: m for m in papers.members}
    assert len(members) == len(BOARD)
    assert members["Nina Nurse"].organisation == "NHS Wirral"
    assert members["Ed Elected"].attendance == "apologies"
    assert members["Lee Lead"].attendance is None
    assert papers.location == "Wallasey Town Hall"  # the Board's venue, as planned
    assert papers.clause == "20.4.1" and papers.body == "Wirral Children's Trust Board"
    assert papers.chair == "Lee Lead"
    text = docx_text(papers_docx(papers))
    for expected in (
        "Agenda pack",
        "Lee Lead",
        "Wirral Council",
        "Merseyside Police",
        "Ed Elected | Wirral Council | Elected Member | Sent",
        "8. Youth offer",
        "clause 20.4.1",
        "Tuesday 9 March 2027",
        "14:00 to 16:00",
    ):
        assert expected in text, expected


def test_minutes_as_a_word_document_name_members_decisions_and_actions(
    people: Engine, clock: FixedClock
) -> None:
    meeting_id = recorded(people, clock)
    papers = papers_of(people, meeting_id)
    assert papers.stage is PapersStage.DRAFT_MINUTES
    text = docx_text(papers_docx(papers))
    assert "Draft minutes" in text
    for name, org, status in (
        ("Lee Lead", "Wirral Council", "Present"),
        ("Nina Nurse", "NHS Wirral", "Present"),
        ("Ed Elected", "Wirral Council", "Apologies"),
        ("Pat Police", "Merseyside Police", "Absent"),
    ):
        assert any(
            line.startswith(f"{name} | {org} |") and line.endswith(f"| {status}")
            for line in text.splitlines()
        ), (name, status)
    assert "Employed by NHS Wirral, which would run the offer" in text
    assert "Adopt the youth offer | Carried | Consensus" in text
    decision = next(d for d in papers.decisions if d.text == "Approve the placement contract")
    assert EXPLAINED in decision.explanation and decision.explanation in text
    assert "Publish the youth offer to schools | Eve Elected | Wirral Council" in text
    assert "Sign the placement contract | Dee Director" in text
    assert "30 April 2027" in text


def test_public_papers_leave_out_the_confidential_item_and_all_it_carries(
    people: Engine, clock: FixedClock
) -> None:
    meeting_id = recorded(people, clock)
    full = papers_of(people, meeting_id)
    assert any(i.title == SECRET and i.confidential for i in full.items)
    assert SECRET in papers_html(full) and "Related to a home" in papers_html(full)
    public = papers_of(people, meeting_id, public=True)
    assert public.withheld == 1 and public.withheld_positions == (9,)
    assert [i.title for i in public.items] == [i.title for i in full.items if i.title != SECRET]
    assert [d.text for d in public.decisions] == ["Adopt the youth offer"]
    assert [d.name for d in public.declarations] == ["Nina Nurse"]
    assert [a.text for a in public.actions] == ["Publish the youth offer to schools"]
    for rendered in (papers_html(public), docx_text(papers_docx(public)), papers_markdown(public)):
        assert "1 confidential item is not published." in rendered
        flat = rendered.replace("</span> <span>", " ")
        assert "9. Confidential item" in flat  # the agenda's numbers still agree
        for secret in (SECRET, "placement contract", "Related to a home", EXPLAINED):
            assert secret not in rendered
        assert "Adopt the youth offer" in rendered and "Nina Nurse" in rendered


def test_the_next_agenda_pack_lists_open_actions_as_matters_arising(
    people: Engine, clock: FixedClock
) -> None:
    recorded(people, clock)
    nxt = run(
        people,
        clock,
        lambda uow: meetings.plan_meeting(uow, body_id="board", day=date(2027, 5, 11)),
    )
    full = papers_of(people, nxt.meeting_id)
    assert [(a.text, a.owner, a.meeting_on) for a in full.open_actions] == [
        ("Publish the youth offer to schools", "Eve Elected", BOARD_DAY),
        ("Sign the placement contract", "Dee Director", BOARD_DAY),
    ]
    public = papers_of(people, nxt.meeting_id, public=True)
    assert [a.text for a in public.open_actions] == ["Publish the youth offer to schools"]
    text = docx_text(papers_docx(public))
    assert "Matters arising: open actions" in text and "Sign the placement" not in text
    assert "Confidential item (not published)" in text  # the matter arising on the agenda too


def test_papers_of_a_meeting_that_does_not_exist_or_was_cancelled(
    people: Engine, clock: FixedClock
) -> None:
    from models.errors import NotFound, Refused

    with pytest.raises(NotFound, match="no meeting #999"):
        papers_of(people, 999)
    planned = run(
        people, clock, lambda uow: meetings.plan_meeting(uow, body_id="board", day=BOARD_DAY)
    )
    run(
        people,
        clock,
        lambda uow: meetings.cancel_meeting(
            uow, meeting_id=planned.meeting_id, reason="No quorum likely"
        ),
    )
    with pytest.raises(Refused, match="was cancelled"):
        papers_of(people, planned.meeting_id)


# --- rendering without a database -------------------------------------------------------------


def bare_papers(**changes: object) -> MeetingPapers:
    values: dict[str, object] = {
        "partnership": "Wirral Children's Trust",
        "body_id": "board",
        "body": "Board",
        "clause": "20.4.1",
        "stage": PapersStage.DRAFT_MINUTES,
        "title": "Draft minutes",
        "status": "minutes_drafted",
        "starts_at": datetime(2027, 3, 9, 14, 0, tzinfo=LONDON),
        "ends_at": datetime(2027, 3, 9, 16, 0, tzinfo=LONDON),
        "location": None,
        "extraordinary": False,
        "chair": None,
        "items_due": datetime(2027, 2, 25, 17, 0, tzinfo=LONDON),
        "agenda_composed": True,
        "members": (PaperMember("<b>Bo</b> | Bar", "Org", "", "present"),),
        "items": (PaperItem(1, "{{ 7*7 }} <script>x</script>", "submitted", False, None),),
        "reports": (),
        "declarations": (),
        "decisions": (
            PaperDecision(1, "x", "Fund it | now", "carried", "majority", "2 for, 1 against"),
        ),
        "actions": (),
        "open_actions": (),
        "public": False,
        "withheld": 0,
    }
    values.update(changes)
    return MeetingPapers(**values)  # type: ignore[arg-type]


def test_templates_show_values_escaped_never_evaluated() -> None:
    papers = bare_papers()
    html = papers_html(papers)
    assert "&lt;script&gt;" in html and "<script>x" not in html
    assert "&lt;b&gt;Bo&lt;/b&gt;" in html
    assert "{{ 7*7 }}" in html and "49" not in html
    markdown = papers_markdown(papers)
    assert "Fund it \\| now" in markdown  # a pipe in a value cannot break the table
    assert "\\<script\\>" in markdown
    assert "No actions were recorded." in html and "No interests declared." in html


def test_confidential_kinds_come_from_the_constitution() -> None:
    wirral = load_constitution()
    assert wirral.papers.confidential_kinds == ["risk"]  # escalated risks (16.1)
    assert is_confidential(wirral, AgendaItemKind.RISK, False)
    assert not is_confidential(wirral, AgendaItemKind.SUBMITTED, False)
    assert is_confidential(wirral, AgendaItemKind.SUBMITTED, True)
    assert PapersPolicy().confidential_kinds == []
    kinds = PapersPolicy.model_fields["confidential_kinds"].annotation
    assert set(kinds.__args__[0].__args__) == {k.value for k in AgendaItemKind}  # type: ignore[union-attr]


def test_an_attachment_name_that_could_break_the_headers_is_refused() -> None:
    rendered = Rendered("agenda", "Agenda", "text", "<p>html</p>", "")
    bad = Attachment('x".html\r\nBcc: a@b.c', 'text/html; charset="utf-8"', "<p>papers</p>")
    with pytest.raises(HeaderInjection, match="not a plain name"):
        build_email(
            rendered,
            key="k",
            to_name="A",
            to_email="a@example.org",
            from_name="W",
            from_email="w@example.org",
            now=datetime(2027, 1, 1, tzinfo=LONDON),
            attachments=[bad],
        )


# --- the command ------------------------------------------------------------------------------


def ready(cli: Cli) -> None:
    assert cli("init").exit_code == 0
    assert cli("members", "import", DATA / "cycles-members.csv").exit_code == 0
    assert cli("meeting", "plan", "board", "2027-03-09").exit_code == 0
    assert (
        cli(
            "meeting",
            "item",
            "board",
            "2027-03-09",
            "--title",
            "Youth offer",
            "--as",
            "nina@nhs.example",
        ).exit_code
        == 0
    )


def test_cli_writes_the_papers_as_docx_and_html(cli: Cli, tmp_path: Path) -> None:
    ready(cli)
    out = tmp_path / "board.docx"
    done = cli("meeting", "papers", "board", "2027-03-09", "--format", "docx", "-o", out)
    assert done.exit_code == 0, done.output
    assert f"Agenda pack of board 2027-03-09 written to {out} (docx)" in done.stdout
    assert "Youth offer" in docx_text(out.read_bytes())
    page = tmp_path / "papers.html"
    done = cli("meeting", "papers", "board", "2027-03-09", "-o", page, "--public", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["format"] == "html" and result["public"] is True
    assert result["name"] == "board-2027-03-09-public-papers.html"
    assert "Youth offer" in page.read_text() and "Public version." in page.read_text()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "pdf"], 2, "unknown format 'pdf' (use docx or html)"),
        ([], 2, "say --format docx or html (the file 'papers.txt' says neither)"),
        (["--format", "html", "--to-folder"], 2, ""),  # typer's own usage error
    ],
)
def test_cli_bad_format_is_one_line_and_writes_nothing(
    cli: Cli, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    ready(cli)
    out = tmp_path / "papers.txt"
    done = cli("meeting", "papers", "board", "2027-03-09", "-o", out, *args)
    assert done.exit_code == code
    if message:
        assert done.stderr == f"wct: error: {message}\n"
    assert list(tmp_path.glob("papers*")) == []


def test_cli_unwritable_output_or_no_meeting_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    ready(cli)
    missing = tmp_path / "no-such-folder" / "papers.html"
    done = cli("meeting", "papers", "board", "2027-03-09", "-o", missing)
    assert done.exit_code == 2
    assert done.stderr.startswith(f"wct: error: cannot write {missing}: ")
    assert done.stderr.count("\n") == 1
    done = cli("meeting", "papers", "board", "2027-03-09", "-o", tmp_path)
    assert done.exit_code == 2 and "is a directory" in done.stderr
    done = cli("meeting", "papers", "board", "2027-03-10", "-o", tmp_path / "x.html")
    assert done.exit_code == 3 and "no meeting of board planned on 2027-03-10" in done.stderr
    assert list(tmp_path.rglob("*.html")) == list(tmp_path.rglob(".papers-*")) == []


# --- the papers in the agenda email -----------------------------------------------------------


def delivered(home: Path) -> list[EmailMessage]:
    found = []
    for eml in sorted((home / "mail").glob("*.eml")):
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def test_agenda_email_carries_the_papers_the_notice_does_not(
    people: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    published(people, clock)
    home = tmp_path / "home"
    result = drain(people, clock=clock, settings=NotificationSettings(home=home), jitter=lambda: 0)
    assert result.failed == result.dead == 0, result.errors
    mail = [m for m in delivered(home) if str(m["X-WCT-Key"]).startswith(STEM)]
    agendas = [m for m in mail if ":agenda:" in str(m["X-WCT-Key"])]
    per_recipient = Counter(str(m["To"]).split("<")[-1].rstrip(">") for m in agendas)
    assert per_recipient == Counter(dict.fromkeys(BOARD, 1))  # one agenda each, once
    for message in agendas:
        [papers] = [p for p in message.iter_attachments() if p.get_content_type() == "text/html"]
        assert papers.get_content_disposition() == "attachment"
        assert papers.get_filename() == "board-2027-03-09-papers.html"
        content = papers.get_content()
        assert "Agenda pack" in content and "Youth offer" in content and "Ed Elected" in content
        body = message.get_body(preferencelist=("html",))
        assert body is not None and "Youth offer" in body.get_content()
    notices = [m for m in mail if ":notice:" in str(m["X-WCT-Key"])]
    assert len(notices) == len(BOARD)
    for message in notices:
        names = [p.get_filename() for p in message.iter_attachments()]
        assert names == ["invite.ics"]


def test_the_minutes_email_carries_the_minutes_to_each_member_once(
    people: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    recorded(people, clock)
    home = tmp_path / "home"
    result = drain(people, clock=clock, settings=NotificationSettings(home=home), jitter=lambda: 0)
    assert result.failed == result.dead == 0, result.errors
    minutes = [m for m in delivered(home) if ":minutes-draft:" in str(m["X-WCT-Key"])]
    per_recipient = Counter(str(m["To"]).split("<")[-1].rstrip(">") for m in minutes)
    assert per_recipient == Counter(dict.fromkeys(BOARD, 1))
    for message in minutes:
        assert str(message["Subject"]).startswith("Draft minutes: ")
        [papers] = [p for p in message.iter_attachments() if p.get_content_type() == "text/html"]
        content = papers.get_content()
        assert "Draft minutes" in content and "casting vote" in content


def test_papers_too_large_are_left_off_and_the_agenda_still_goes(
    people: Engine, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published(people, clock)
    monkeypatch.setattr(dispatch, "ATTACHMENT_LIMIT", 100)
    home = tmp_path / "home"
    result = drain(people, clock=clock, settings=NotificationSettings(home=home), jitter=lambda: 0)
    assert result.failed == result.dead == 0
    agendas = [m for m in delivered(home) if ":agenda:" in str(m["X-WCT-Key"])]
    assert len(agendas) == len(BOARD)
    assert all(list(m.iter_attachments()) == [] for m in agendas)


# --- the papers artifact ----------------------------------------------------------------------


def test_publishing_the_agenda_publishes_the_bodys_papers(cycle_db: CycleDb) -> None:
    asyncio.run(
        meeting_cycle(body="executive", day=date(2027, 4, 21), as_of=london(2026, 11, 23, 9))
    )
    with Session(cycle_db.engine) as session:
        steps = {
            s.key: s.due_at
            for s in session.exec(
                select(Step).where(col(Step.key).startswith("meeting:executive:2027-04-21"))
            )
        }
    for kind in ("call_for_items", "items_deadline", "agenda"):
        key = f"meeting:executive:2027-04-21:{kind}"
        asyncio.run(step(key=key, as_of=steps[key] + timedelta(minutes=1)))
    assert papers_key("executive") == "executive-papers"
    text = asyncio.run(artifact("executive-papers"))
    assert "Agenda pack" in text and "Declarations of interest (18.1)" in text
    assert "Dee Director" in text  # the papers name the members


def test_the_papers_cite_only_the_clauses_the_constitution_gives() -> None:
    """Issue 13: the headings and the `Meets under` line cite what the file gives, of the
    agreement as the partnership calls it; nothing (no empty brackets) where it gives none."""
    bare = papers_markdown(bare_papers(clause="", partnership="Anytown Partnership"))
    assert "Declarations of interest" in bare and "Decisions" in bare
    assert "()" not in bare and "MoU" not in bare and "clause" not in bare
    assert not {"18.1", "6.2"} & set(bare.replace("(", " ").replace(")", " ").split())
    wirral = papers_markdown(
        bare_papers(
            agreement="Memorandum of Understanding", interests_clause="18.1", decisions_clause="6.2"
        )
    )
    assert "Declarations of interest (18.1)" in wirral and "Decisions (6.2)" in wirral
    assert "clause 20.4.1 of the Memorandum of Understanding" in wirral
