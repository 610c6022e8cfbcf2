"""Render a meeting's papers (models/meetings/papers.py) as printable HTML, as a Word document
(python-docx), and as markdown for the Prefect artifact.

All three show one display view built here (`papers_view`): headings, facts, the agenda and one
table per section, every value already a string, so the templates under `templates/papers/` only
show what they are given and the Word document says the same as the HTML.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from models.clock import wall
from models.errors import InvalidInput, cited
from models.meetings.papers import MeetingPapers, PaperAction, PaperItem, PapersStage
from notifications.render import _render_one, when

#: Papers larger than this (bytes of HTML) are not attached to an email; `wct meeting papers`
#: and the Prefect artifact still have them.
ATTACHMENT_LIMIT = 1_000_000

LABELS = {
    "present": "Present",
    "apologies": "Apologies",
    "absent": "Absent",
    "carried": "Carried",
    "rejected": "Rejected",
    "no_decision": "No decision",
    "consensus": "Consensus",
    "majority": "Simple majority",
    "casting_vote": "Chair's casting vote",
    "none": "No vote",
    "inquorate": "Inquorate",
    "open": "Open",
    "done": "Done",
    "dropped": "Dropped",
    "planned": "Planned",
    "agenda_published": "Agenda published",
    "held": "Held",
    "minutes_drafted": "Minutes drafted",
    "minutes_approved": "Minutes approved",
}


class PapersFormat(StrEnum):
    DOCX = "docx"
    HTML = "html"


@dataclass(frozen=True)
class Section:
    """One part of the papers shown as a table (an empty one says `empty` instead)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str


@dataclass(frozen=True)
class AgendaRow:
    number: str
    title: str
    note: str


@dataclass(frozen=True)
class PapersView:
    """The papers as they are shown: every value a string."""

    title: str
    heading: str
    partnership: str
    facts: tuple[tuple[str, str], ...]
    notices: tuple[str, ...]
    agenda_title: str
    agenda: tuple[AgendaRow, ...]
    sections: tuple[Section, ...]
    footer: str


def label(value: str) -> str:
    return LABELS.get(value, value.replace("_", " ").capitalize())


def _day(value: date | None) -> str:
    return when(value) if value is not None else ""


def _time(value: datetime) -> str:
    return f"{wall(value):%H:%M}"


def withheld_note(count: int) -> str:
    """`2 confidential items are not published`."""
    if count == 1:
        return "1 confidential item is not published."
    return f"{count} confidential items are not published."


def _actions(title: str, actions: Sequence[PaperAction], *, earlier: bool) -> Section:
    if earlier:
        return Section(
            title,
            ("Action", "Owner", "Organisation", "Due", "Agreed at the meeting of"),
            tuple(
                (a.text, a.owner, a.organisation, _day(a.due_on), _day(a.meeting_on))
                for a in actions
            ),
            "No actions of earlier meetings are open.",
        )
    return Section(
        title,
        ("Item", "Action", "Owner", "Organisation", "Due", "Status"),
        tuple(
            (
                str(a.item) if a.item is not None else "-",
                a.text,
                a.owner,
                a.organisation,
                _day(a.due_on),
                label(a.status),
            )
            for a in actions
        ),
        "No actions were recorded.",
    )


def _item_note(item: PaperItem) -> str:
    notes = [f"put forward by {item.submitted_by}"] if item.submitted_by else []
    if item.confidential:
        notes.append("confidential: not in the public papers")
    if item.awaits:
        notes.append(item.awaits)
    return "; ".join(notes)


def _meets_under(papers: MeetingPapers) -> str:
    """`clause 20.4.1 of the Memorandum of Understanding`: the clause the constitution gives
    the body's meetings, of the agreement as the partnership calls it (none: the agreement)."""
    agreement = (
        f"the {papers.agreement}" if papers.agreement else f"{papers.partnership}'s agreement"
    )
    return f"clause {papers.clause} of {agreement}" if papers.clause else agreement


def papers_view(papers: MeetingPapers) -> PapersView:
    """What the papers show, in the order they show it."""
    before = papers.stage is PapersStage.AGENDA_PACK
    facts = [
        ("Meeting", papers.body + (" (extraordinary meeting)" if papers.extraordinary else "")),
        ("Date", when(papers.starts_at.date())),
        ("Time", f"{_time(papers.starts_at)} to {_time(papers.ends_at)}"),
        ("Venue", papers.location or "to be confirmed"),
        ("Chair", papers.chair or "not appointed"),
        ("Meets under", _meets_under(papers)),
        ("Status", label(papers.status)),
    ]
    if before:
        facts.append(("Items due by", when(papers.items_due)))
    notices: list[str] = []
    if before and not papers.agenda_composed:
        notices.append(
            "Draft agenda: it is composed when the items deadline passes "
            f"({when(papers.items_due)}), so items may still be added."
        )
    if papers.public:
        notices.append(
            "Public version. "
            + (withheld_note(papers.withheld) if papers.withheld else "Nothing is withheld.")
        )
    members = Section(
        "Members and apologies" if before else "Attendance",
        ("Name", "Organisation", "Role", "Apologies" if before else "Attendance"),
        tuple(
            (
                m.name,
                m.organisation,
                m.roles,
                ("Sent" if before else label(m.attendance))
                if m.attendance
                else ("" if before else "Not recorded"),
            )
            for m in papers.members
        ),
        "No members hold a seat on this body.",
    )
    reports = Section(
        "Reports received",
        ("Item", "Report", "From", "Period", "Received", "Paper"),
        tuple(
            (
                str(r.item) if r.item is not None else "-",
                r.title,
                r.from_body,
                r.period,
                _day(r.received_on),
                r.document or "",
            )
            for r in papers.reports
        ),
        "No reports received for this meeting.",
    )
    declarations = Section(
        cited("Declarations of interest", papers.interests_clause),
        ("Name", "Organisation", "Item", "Interest"),
        tuple(
            (
                d.name,
                d.organisation,
                f"{d.item}. {d.item_title}" if d.item is not None else "-",
                d.nature,
            )
            for d in papers.declarations
        ),
        "No interests declared." if not before else "No interests declared ahead of the meeting.",
    )
    decisions = Section(
        cited("Decisions", papers.decisions_clause),
        ("Item", "Motion", "Outcome", "Method", "How it was decided"),
        tuple(
            (
                f"{d.item}. {d.item_title}" if d.item is not None else "-",
                d.text,
                label(d.outcome),
                label(d.method),
                d.explanation,
            )
            for d in papers.decisions
        ),
        "No motions were recorded.",
    )
    arising = _actions("Matters arising: open actions", papers.open_actions, earlier=True)
    sections = [members, reports]
    if before:
        sections += [declarations, arising]
    else:
        sections += [
            declarations,
            decisions,
            _actions("Actions", papers.actions, earlier=False),
            arising,
        ]
    rows = [(i.position, i.title, _item_note(i)) for i in papers.items]
    rows += [(n, "Confidential item", "not published") for n in papers.withheld_positions]
    agenda = tuple(AgendaRow(f"{n}.", title, note) for n, title, note in sorted(rows))
    title = papers.title + (" (public)" if papers.public else "")
    return PapersView(
        title=title,
        heading=f"{papers.body}: {title}",
        partnership=papers.partnership,
        facts=tuple(facts),
        notices=tuple(notices),
        agenda_title="Agenda",
        agenda=agenda,
        sections=tuple(sections),
        footer=(
            f"{papers.partnership}. {papers.title} of the {papers.body} meeting of "
            f"{when(papers.starts_at.date())}."
        ),
    )


def papers_filename(papers: MeetingPapers, fmt: PapersFormat | str) -> str:
    """`board-2027-03-09-papers.html`; the public version `board-2027-03-09-public-papers.html`."""
    kind = "public-papers" if papers.public else "papers"
    return f"{papers.stem}-{kind}.{PapersFormat(fmt).value}"


def papers_html(papers: MeetingPapers) -> str:
    """The papers as one printable HTML page (autoescaped, sandboxed template)."""
    return _render_one("papers/papers.html.j2", {"view": papers_view(papers)})


def papers_markdown(papers: MeetingPapers) -> str:
    """The papers as markdown (the Prefect artifact); every value escaped."""
    return _render_one("papers/papers.md.j2", {"view": papers_view(papers)})


def papers_docx(papers: MeetingPapers) -> bytes:
    """The papers as a Word document."""
    # python-docx (and lxml) load here, for the one command that writes a document: not in
    # every served flow run's process, which imports this module for the markdown and HTML.
    from docx import Document
    from docx.shared import Pt

    view = papers_view(papers)
    document = Document()
    document.core_properties.title = view.heading
    document.core_properties.author = view.partnership
    normal = document.styles["Normal"].font
    normal.name = "Arial"
    normal.size = Pt(10)
    document.add_paragraph(view.partnership)
    document.add_heading(view.heading, level=0)
    facts = document.add_table(rows=0, cols=2)
    facts.style = "Table Grid"
    for name, value in view.facts:
        cells = facts.add_row().cells
        cells[0].paragraphs[0].add_run(name).bold = True
        cells[1].text = value
    for notice in view.notices:
        document.add_paragraph().add_run(notice).italic = True
    document.add_heading(view.agenda_title, level=1)
    for row in view.agenda:
        paragraph = document.add_paragraph()
        paragraph.add_run(f"{row.number} ").bold = True
        paragraph.add_run(row.title)
        if row.note:
            paragraph.add_run(f" ({row.note})").italic = True
    for section in view.sections:
        document.add_heading(section.title, level=1)
        if not section.rows:
            document.add_paragraph(section.empty)
            continue
        table = document.add_table(rows=1, cols=len(section.columns))
        table.style = "Table Grid"
        for cell, column in zip(table.rows[0].cells, section.columns, strict=True):
            cell.paragraphs[0].add_run(column).bold = True
        for values in section.rows:
            for cell, value in zip(table.add_row().cells, values, strict=True):
                cell.text = value
    document.add_paragraph(view.footer).runs[0].italic = True
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def render_papers(papers: MeetingPapers, fmt: PapersFormat | str) -> bytes:
    """The papers in `fmt` (docx or html) as the bytes of the file; InvalidInput otherwise."""
    try:
        chosen = PapersFormat(str(fmt).lower())
    except ValueError:
        raise InvalidInput(f"unknown format '{fmt}' (use docx or html)") from None
    if chosen is PapersFormat.DOCX:
        return papers_docx(papers)
    return papers_html(papers).encode("utf-8")
