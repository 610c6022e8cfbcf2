"""A meeting's papers, as data: before the meeting the agenda pack (details, members, the agenda
with its standing and submitted items, reports received, open actions); once it is recorded the
minutes (attendance and apologies, declarations of interest (18.1), each decision with its 6.2
explanation, the actions agreed). The papers are for the members, so they name people.

The public version leaves out what the constitution's `papers:` marks confidential (items of its
`confidential_kinds`, and any item marked confidential), with their decisions, declarations and
actions, and says how many items it left out. Read-only queries; rendering is elsewhere
(notifications/papers.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlmodel import Session, col, select

from models.approvals import ApprovalStatus
from models.commands import current_constitution
from models.constitution import Constitution
from models.errors import NotFound, Refused, cited
from models.meetings.actions import ActionStatus
from models.meetings.agenda import AgendaItemKind, composed, items_of, standing_items
from models.meetings.kinds import ITEMS_DEADLINE
from models.meetings.plan import MeetingStatus, meeting_clause, meeting_key, step_times
from models.steps import body_members, role_holders
from models.tables import (
    AgendaItem,
    ApprovalRequest,
    Attendance,
    Declaration,
    Meeting,
    MeetingAction,
    Motion,
    Organisation,
    Person,
    PersonRole,
    Report,
    Role,
)

RECORDED = (MeetingStatus.HELD, MeetingStatus.MINUTES_DRAFTED, MeetingStatus.MINUTES_APPROVED)


class PapersStage(StrEnum):
    """Which papers these are: the agenda pack before the meeting, the minutes after it."""

    AGENDA_PACK = "agenda_pack"
    DRAFT_MINUTES = "draft_minutes"
    MINUTES = "minutes"


# An agenda item's row id -> (its number, its title), to say what a decision or action is on.
Positions = dict[int | None, tuple[int | None, str | None]]
NO_ITEM: tuple[int | None, str | None] = (None, None)

TITLES = {
    PapersStage.AGENDA_PACK: "Agenda pack",
    PapersStage.DRAFT_MINUTES: "Draft minutes",
    PapersStage.MINUTES: "Minutes",
}


@dataclass(frozen=True)
class PaperMember:
    """A member of the body (or anyone recorded at the meeting) and whether they came."""

    name: str
    organisation: str
    roles: str
    attendance: str | None  # present | apologies | absent; before the meeting, apologies only


@dataclass(frozen=True)
class PaperItem:
    position: int
    title: str
    kind: str
    confidential: bool
    submitted_by: str | None
    awaits: str | None = None  # put forward under an approval not (yet) given: why it waits


@dataclass(frozen=True)
class PaperReport:
    """A report received that is on the agenda (14.1, 22.2.1, 11.4.1)."""

    item: int | None
    title: str
    from_body: str
    period: str
    received_on: date | None
    document: str | None


@dataclass(frozen=True)
class PaperDeclaration:
    """18.1: a declaration of interest."""

    name: str
    organisation: str
    item: int | None
    item_title: str | None
    nature: str


@dataclass(frozen=True)
class PaperDecision:
    """6.2: a motion, what was decided and how."""

    item: int | None
    item_title: str | None
    text: str
    outcome: str
    method: str
    explanation: str


@dataclass(frozen=True)
class PaperAction:
    """An action agreed at a meeting: what, who owns it, by when, where it stands."""

    meeting_on: date
    item: int | None
    text: str
    owner: str
    organisation: str
    due_on: date
    status: str


@dataclass(frozen=True)
class MeetingPapers:
    """Everything the papers of one meeting show, ready to render."""

    partnership: str
    body_id: str
    body: str
    clause: str
    stage: PapersStage
    title: str
    status: str
    starts_at: datetime
    ends_at: datetime
    location: str | None
    extraordinary: bool
    chair: str | None
    items_due: datetime
    agenda_composed: bool
    members: tuple[PaperMember, ...]
    items: tuple[PaperItem, ...]
    reports: tuple[PaperReport, ...]
    declarations: tuple[PaperDeclaration, ...]
    decisions: tuple[PaperDecision, ...]
    actions: tuple[PaperAction, ...]
    open_actions: tuple[PaperAction, ...]
    public: bool
    withheld: int
    withheld_positions: tuple[int, ...] = ()  # the agenda numbers of the items left out
    agreement: str = ""  # what the partnership calls its agreement; "": not named
    interests_clause: str = ""  # the clauses the constitution gives declarations of interest
    decisions_clause: str = ""  # and decisions (Wirral: 18.1 and 6.2); "": none

    @property
    def stem(self) -> str:
        """`board-2027-03-09`: how the meeting's files are named."""
        return f"{self.body_id}-{self.starts_at.date().isoformat()}"


def meeting_at(session: Session, *, body: str, starts_at: datetime) -> Meeting | None:
    """The meeting of the body named `body` (its id or its name, as messages give it) starting
    at `starts_at`, if there is one."""
    c = current_constitution(session)
    ids = [b.id for b in c.bodies if body in (b.id, b.name)]
    if not ids:
        return None
    return session.exec(
        select(Meeting).where(col(Meeting.body_id).in_(ids), Meeting.starts_at == starts_at)
    ).first()


def stage_of(meeting: Meeting) -> PapersStage:
    if meeting.status == MeetingStatus.MINUTES_APPROVED:
        return PapersStage.MINUTES
    if meeting.status in RECORDED:
        return PapersStage.DRAFT_MINUTES
    return PapersStage.AGENDA_PACK


def is_confidential(c: Constitution, kind: str, marked: bool) -> bool:
    """An item left out of the public papers: marked confidential, or of a kind the
    constitution's `papers.confidential_kinds` names."""
    return marked or kind in c.papers.confidential_kinds


def meeting_papers(session: Session, meeting_id: int, *, public: bool = False) -> MeetingPapers:
    """The papers of a meeting (the public version with `public`); NotFound for no such meeting,
    Refused for a cancelled one."""
    meeting = session.get(Meeting, meeting_id)
    if meeting is None:
        raise NotFound(f"no meeting #{meeting_id}")
    if meeting.status == MeetingStatus.CANCELLED:
        raise Refused(f"{meeting_key(meeting)} was cancelled: it has no papers")
    c = current_constitution(session)
    body = c.body(meeting.body_id)
    people = _People(session)
    rows = items_of(session, meeting_id)
    agenda = _agenda(session, c, meeting, rows, people)
    hidden = [a for a in agenda if public and a.item.confidential]
    hidden_ids = {a.row_id for a in hidden if a.row_id is not None}
    positions: Positions = {
        a.row_id: (a.item.position, a.item.title) for a in agenda if a.row_id is not None
    }

    def shown(item_id: int | None) -> bool:
        return item_id not in hidden_ids

    chair = next(iter(role_holders(session, body.chair)), None)
    stage = stage_of(meeting)
    return MeetingPapers(
        partnership=c.partnership.name,
        body_id=body.id,
        body=body.name,
        clause=meeting_clause(body),
        agreement=c.partnership.agreement_name,
        interests_clause=c.cite("interests"),
        decisions_clause=c.cite("decisions"),
        stage=stage,
        title=TITLES[stage],
        status=meeting.status,
        starts_at=meeting.starts_at,
        ends_at=meeting.ends_at,
        location=meeting.location,
        extraordinary=meeting.extraordinary,
        chair=people.name(chair.id) if chair is not None and chair.id is not None else None,
        items_due=step_times(c, meeting.starts_at)[ITEMS_DEADLINE],
        agenda_composed=composed(rows),
        members=_members(session, c, meeting, people),
        items=tuple(a.item for a in agenda if a not in hidden),
        reports=_reports(session, c, [a for a in agenda if a not in hidden]),
        declarations=tuple(
            PaperDeclaration(
                people.name(d.person_id),
                people.organisation(d.person_id),
                *positions.get(d.agenda_item_id, NO_ITEM),
                d.nature,
            )
            for d in session.exec(
                select(Declaration)
                .where(Declaration.meeting_id == meeting_id)
                .order_by(col(Declaration.id))
            )
            if shown(d.agenda_item_id)
        ),
        decisions=tuple(
            PaperDecision(
                *positions.get(m.agenda_item_id, NO_ITEM),
                m.text,
                m.outcome or "",
                m.method or "",
                m.explanation or "",
            )
            for m in session.exec(
                select(Motion).where(Motion.meeting_id == meeting_id).order_by(col(Motion.id))
            )
            if shown(m.agenda_item_id)
        ),
        actions=tuple(
            _action(a, meeting.starts_at.date(), positions, people)
            for a in _actions_of(session, [meeting_id])
            if shown(a.agenda_item_id)
        ),
        open_actions=_open_actions(session, c, meeting, people, public=public),
        public=public,
        withheld=len(hidden),
        withheld_positions=tuple(a.item.position for a in hidden),
    )


class _People:
    """Names and organisations of people, read once per set of papers."""

    def __init__(self, session: Session) -> None:
        orgs = {o.id: o.name for o in session.exec(select(Organisation))}
        self._people = {p.id: p for p in session.exec(select(Person))}
        self._orgs = {
            pid: orgs.get(p.organisation_id, p.organisation_id) for pid, p in self._people.items()
        }
        roles: dict[int, list[str]] = {}
        for person_id, role in session.exec(
            select(PersonRole.person_id, Role.name)
            .join(Role, col(Role.id) == col(PersonRole.role_id))
            .order_by(col(Role.name))
        ):
            roles.setdefault(person_id, []).append(role)
        self._roles = roles

    def name(self, person_id: int | None) -> str:
        person = self._people.get(person_id)
        return person.name if person is not None else "(no longer a member)"

    def organisation(self, person_id: int | None) -> str:
        return self._orgs.get(person_id, "") if person_id is not None else ""

    def roles(self, person_id: int | None) -> str:
        return ", ".join(self._roles.get(person_id or 0, []))

    def by_pseudonym(self, pseudonym: str | None) -> str | None:
        if pseudonym is None:
            return None
        for person in self._people.values():
            if person.pseudonym == pseudonym:
                return person.name
        return None


@dataclass(frozen=True)
class _Line:
    """An agenda item with what put it there and its row (none for an item of a draft agenda
    that is not composed yet)."""

    item: PaperItem
    source: str | None
    row_id: int | None


def _agenda(
    session: Session,
    c: Constitution,
    meeting: Meeting,
    rows: Sequence[AgendaItem],
    people: _People,
) -> list[_Line]:
    """The agenda; before it is composed (at the items deadline), as it would be composed now:
    the standing items, the members' items, any other business. A matter arising (`action:ID`)
    is confidential when the item its action was agreed on is."""
    secret = {f"action:{n}" for n in _confidential_actions(session, c)}

    def hidden(kind: str, marked: bool, source: str | None) -> bool:
        return is_confidential(c, kind, marked) or source in secret

    awaits = {r.id: _awaits(session, c, r.approval_id) for r in rows}
    if composed(rows):
        return [
            _Line(
                PaperItem(
                    r.position,
                    r.title,
                    r.kind,
                    hidden(r.kind, r.confidential, r.source),
                    people.by_pseudonym(r.submitted_by),
                    awaits[r.id],
                ),
                r.source,
                r.id,
            )
            for r in rows
        ]
    drafted: list[tuple[str, str, bool, str | None, str | None, int | None]] = [
        (title, kind.value, False, None, source, None)
        for title, kind, source in standing_items(session, c, meeting)
    ]
    drafted += [
        (r.title, r.kind, r.confidential, people.by_pseudonym(r.submitted_by), r.source, r.id)
        for r in rows
    ]
    drafted.append(("Any other business", AgendaItemKind.STANDING.value, False, None, None, None))
    return [
        _Line(
            PaperItem(
                n,
                title,
                kind,
                hidden(kind, marked, source),
                by,
                awaits.get(row_id) if row_id else None,
            ),
            source,
            row_id,
        )
        for n, (title, kind, marked, by, source, row_id) in enumerate(drafted, start=1)
    ]


def _awaits(session: Session, c: Constitution, approval_id: int | None) -> str | None:
    """11.3.5, 21.1.1: an item put forward under an approval request the approving body has not
    given (`approvals.hold` refuses its decision until it does)."""
    request = session.get(ApprovalRequest, approval_id) if approval_id is not None else None
    if request is None or request.status == ApprovalStatus.APPROVED:
        return None
    approver = c.body(request.approver_body_id).name
    state = "refused" if request.status == ApprovalStatus.REFUSED else "awaited"
    return cited(f"needs {approver}'s approval", request.clause) + f": {state}"


def _confidential_actions(session: Session, c: Constitution) -> set[int]:
    """The actions agreed on an agenda item that is confidential."""
    return {
        action_id
        for action_id, kind, marked in session.exec(
            select(MeetingAction.id, AgendaItem.kind, AgendaItem.confidential).join(
                AgendaItem, col(AgendaItem.id) == col(MeetingAction.agenda_item_id)
            )
        )
        if action_id is not None and is_confidential(c, kind, marked)
    }


def _members(
    session: Session, c: Constitution, meeting: Meeting, people: _People
) -> tuple[PaperMember, ...]:
    """The body's members, and anyone else recorded at the meeting (a coordinator), with their
    attendance as recorded (before the meeting: the apologies sent)."""
    recorded = dict(
        session.exec(
            select(Attendance.person_id, Attendance.status).where(
                Attendance.meeting_id == meeting.id
            )
        ).all()
    )
    ids = [p.id for p in body_members(session, c, meeting.body_id) if p.id is not None]
    ids += sorted(pid for pid in recorded if pid not in ids)
    return tuple(
        PaperMember(
            people.name(pid), people.organisation(pid), people.roles(pid), recorded.get(pid)
        )
        for pid in ids
    )


def _reports(session: Session, c: Constitution, agenda: Sequence[_Line]) -> tuple[PaperReport, ...]:
    """The reports received that are on the agenda (its items `report:ID`)."""
    tabled = {
        int(a.source.removeprefix("report:")): a.item
        for a in agenda
        if a.source and a.source.startswith("report:")
    }
    if not tabled:
        return ()
    found: list[PaperReport] = []
    for report in session.exec(
        select(Report).where(col(Report.id).in_(list(tabled))).order_by(col(Report.id))
    ):
        try:
            from_body = c.body(report.from_body_id).name
        except KeyError:
            from_body = report.from_body_id
        found.append(
            PaperReport(
                tabled[report.id or 0].position,
                report.kind,
                from_body,
                report.period,
                report.submitted_at.date() if report.submitted_at else None,
                report.document,
            )
        )
    return tuple(sorted(found, key=lambda r: r.item or 0))


def _actions_of(session: Session, meeting_ids: Sequence[int]) -> list[MeetingAction]:
    return list(
        session.exec(
            select(MeetingAction)
            .where(col(MeetingAction.meeting_id).in_(list(meeting_ids)))
            .order_by(col(MeetingAction.due_on), col(MeetingAction.id))
        )
    )


def _action(
    a: MeetingAction,
    meeting_on: date,
    positions: Positions,
    people: _People,
) -> PaperAction:
    return PaperAction(
        meeting_on,
        positions.get(a.agenda_item_id, NO_ITEM)[0],
        a.text,
        people.name(a.owner_id),
        people.organisation(a.owner_id),
        a.due_on,
        a.status,
    )


def _open_actions(
    session: Session, c: Constitution, meeting: Meeting, people: _People, *, public: bool
) -> tuple[PaperAction, ...]:
    """Actions of the body's earlier meetings still open: the matters arising. Reads the open
    actions and their items alone, not every item of every earlier meeting: the papers of a
    body's fortieth meeting cost what its fourth's do."""
    open_actions = session.exec(
        select(MeetingAction, Meeting.starts_at)
        .join(Meeting, col(Meeting.id) == col(MeetingAction.meeting_id))
        .where(
            Meeting.body_id == meeting.body_id,
            col(Meeting.starts_at) < meeting.starts_at,
            MeetingAction.status == ActionStatus.OPEN.value,
        )
        .order_by(col(MeetingAction.due_on), col(MeetingAction.id))
    ).all()
    wanted = [a.agenda_item_id for a, _ in open_actions if a.agenda_item_id is not None]
    items = (
        {i.id: i for i in session.exec(select(AgendaItem).where(col(AgendaItem.id).in_(wanted)))}
        if wanted
        else {}
    )
    found: list[PaperAction] = []
    for a, starts_at in open_actions:
        item = items.get(a.agenda_item_id)
        if public and item is not None and is_confidential(c, item.kind, item.confidential):
            continue
        positions: Positions = {item.id: (item.position, item.title)} if item else {}
        found.append(_action(a, starts_at.date(), positions, people))
    return tuple(found)
