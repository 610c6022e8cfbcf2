"""A meeting's agenda: items members put forward before the items deadline, and the agenda
composed from the standing items, what is waiting under each heading, and the members' items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlmodel import Session, col, select

from models.approvals import ApprovalStatus
from models.casework import clean_text
from models.commands import current_constitution
from models.constitution import BodyKind, Constitution, StandingFeed, StandingItem
from models.errors import NotFound, Refused
from models.meetings.actions import arising_line, arising_title, open_actions_before
from models.meetings.kinds import ITEMS_DEADLINE
from models.meetings.plan import (
    MeetingStatus,
    load_meeting,
    meeting_key,
    step_times,
    subject_of,
)
from models.permissions import Actor
from models.reports import RECEIVED
from models.risks import RiskStatus
from models.tables import AgendaItem, ApprovalRequest, Meeting, Report, Risk
from models.uow import UnitOfWork


class AgendaItemKind(StrEnum):
    """What put an item on the agenda: a standing heading, a member, a report received, a risk
    escalated to the Board, a proposal awaiting this body's approval, an action still open
    (matters arising)."""

    STANDING = "standing"
    SUBMITTED = "submitted"
    REPORT = "report"
    RISK = "risk"
    APPROVAL = "approval"
    ACTION = "action"


def items_of(session: Session, meeting_id: int) -> list[AgendaItem]:
    """The meeting's agenda items, in agenda order."""
    return list(
        session.exec(
            select(AgendaItem)
            .where(AgendaItem.meeting_id == meeting_id)
            .order_by(col(AgendaItem.position), col(AgendaItem.id))
        ).all()
    )


def composed(items: Sequence[AgendaItem]) -> bool:
    """Whether the agenda is composed: anything but a member's item is on it."""
    return any(i.kind != AgendaItemKind.SUBMITTED for i in items)


def item_at(session: Session, meeting_id: int, position: int) -> AgendaItem:
    """The agenda item at `position`, or a clear error."""
    for item in items_of(session, meeting_id):
        if item.position == position:
            return item
    raise NotFound(f"meeting #{meeting_id} has no agenda item {position}")


def submit_item(
    uow: UnitOfWork, *, meeting_id: int, title: str, by: Actor, approval_id: int | None = None
) -> int:
    """Put an item forward for a meeting's agenda before the items deadline (who may: the
    constitution's `meeting.item`). Returns the item id; the same title twice is one item. An
    item put forward under an approval request (`approval_id`) cannot be decided until the
    approving body approves it (11.3.5, 21.1.1)."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    title = clean_text(title, what="item title", limit=300)
    if approval_id is not None and session.get(ApprovalRequest, approval_id) is None:
        raise NotFound(f"no approval request #{approval_id}")
    deadline = step_times(c, meeting.starts_at)[ITEMS_DEADLINE]
    items = items_of(session, meeting_id)
    if uow.clock.now() >= deadline or meeting.status != MeetingStatus.PLANNED or composed(items):
        raise Refused(
            f"the items deadline for {meeting_key(meeting)} passed at {deadline.isoformat()}"
        )
    for item in items:
        if item.kind == AgendaItemKind.SUBMITTED and item.title.lower() == title.lower():
            assert item.id is not None
            return item.id
    item = AgendaItem(
        meeting_id=meeting_id,
        position=1000 + len(items),
        title=title,
        kind=AgendaItemKind.SUBMITTED,
        source=f"member:{by.pseudonym}",
        submitted_by=by.pseudonym,
        approval_id=approval_id,
    )
    session.add(item)
    session.flush()
    uow.record(
        "meeting.item_submitted",
        subject_of(meeting),
        before=None,
        after={"item": item.id, "title": title, "by": by.pseudonym},
    )
    assert item.id is not None
    return item.id


@dataclass(frozen=True)
class AgendaLine:
    position: int
    title: str
    kind: str
    source: str | None


def _already_tabled(session: Session, source: str, meeting_id: int) -> bool:
    return (
        session.exec(
            select(AgendaItem.id).where(
                AgendaItem.source == source, AgendaItem.meeting_id != meeting_id
            )
        ).first()
        is not None
    )


def _previous_meeting(session: Session, meeting: Meeting) -> Meeting | None:
    return session.exec(
        select(Meeting)
        .where(
            Meeting.body_id == meeting.body_id,
            col(Meeting.starts_at) < meeting.starts_at,
            Meeting.status != MeetingStatus.CANCELLED,
        )
        .order_by(col(Meeting.starts_at).desc())
    ).first()


def standing_items(
    session: Session, c: Constitution, meeting: Meeting
) -> list[tuple[str, AgendaItemKind, str | None]]:
    """The standing items of the body's agenda, as the constitution lists them
    (`standing_items`), each heading with the clause the file gives it and what is waiting
    under it: apologies; declarations of interest; minutes of the last meeting; matters
    arising: each action of the body's earlier meetings still open; for the body the
    safeguarding board reports to, its quarterly safeguarding report; reports received;
    performance reports; escalated risks; items awaiting this body's approval. Returns (title,
    kind, source) rows."""
    body = c.body(meeting.body_id)
    rows: list[tuple[str, AgendaItemKind, str | None]] = []
    for item in c.standing_items:
        if item.applies_to(body.kind):
            rows.extend(_standing_rows(session, c, meeting, item))
    return rows


def _standing_rows(
    session: Session, c: Constitution, meeting: Meeting, item: StandingItem
) -> list[tuple[str, AgendaItemKind, str | None]]:
    """The heading of one standing item (if it has a title) and what is waiting under it."""
    standing, heading, feed = AgendaItemKind.STANDING, item.heading(), item.feed
    body = c.body(meeting.body_id)
    source = f"standing:{feed.value.replace('_', '-')}"
    rows: list[tuple[str, AgendaItemKind, str | None]] = []
    if feed is StandingFeed.MINUTES:
        previous = _previous_meeting(session, meeting)
        if previous is not None:
            return [
                (
                    f"Minutes of the meeting of {previous.starts_at.date().isoformat()}",
                    standing,
                    f"minutes:{previous.id}",
                )
            ]
    if feed is StandingFeed.MATTERS_ARISING:
        arising = open_actions_before(session, meeting)
        if arising and heading:
            rows.append((heading, standing, source))
        for action in arising:
            agreed = session.get(Meeting, action.meeting_id)
            assert agreed is not None
            rows.append(
                (arising_title(action, agreed), AgendaItemKind.ACTION, f"action:{action.id}")
            )
        return rows
    if feed is StandingFeed.SAFEGUARDING_REPORT:
        safeguarding_to = {
            q.to_body
            for q in c.quarterly_reports
            if q.from_body is not None and c.body(q.from_body).kind is BodyKind.SAFEGUARDING_BOARD
        }
        if body.id in safeguarding_to and heading:
            rows.append((heading, standing, "standing:wscb-report"))
        return rows
    if heading:
        rows.append((heading, standing, source))
    if feed is StandingFeed.REPORTS_RECEIVED:
        received = session.exec(
            select(Report)
            .where(Report.to_body_id == body.id, col(Report.status).in_(RECEIVED))
            .order_by(col(Report.due_on), col(Report.from_body_id))
        ).all()
        for report in received:
            if not _already_tabled(session, f"report:{report.id}", meeting.id or 0):
                rows.append(
                    (
                        f"Report: {report.kind} from {report.from_body_id}, {report.period}",
                        AgendaItemKind.REPORT,
                        f"report:{report.id}",
                    )
                )
    elif feed is StandingFeed.ESCALATED_RISKS:
        for risk in session.exec(
            select(Risk).where(Risk.status == RiskStatus.ESCALATED).order_by(col(Risk.id))
        ):
            rows.append((f"Escalated risk: {risk.title}", AgendaItemKind.RISK, f"risk:{risk.id}"))
    elif feed is StandingFeed.APPROVALS:
        for request in session.exec(
            select(ApprovalRequest)
            .where(
                ApprovalRequest.approver_body_id == body.id,
                ApprovalRequest.status == ApprovalStatus.WAITING,
            )
            .order_by(col(ApprovalRequest.id))
        ):
            cited = f" ({request.clause})" if request.clause else ""
            rows.append(
                (
                    f"For approval{cited}: {request.title}",
                    AgendaItemKind.APPROVAL,
                    f"approval:{request.id}",
                )
            )
    return rows


def compose_agenda(uow: UnitOfWork, *, meeting_id: int) -> list[AgendaLine]:
    """The agenda: the standing items, then the items members submitted, then any other business.
    Composed once, when the items deadline passes; later calls return it unchanged."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    items = items_of(session, meeting_id)
    if composed(items):
        return _lines(session, items)
    submitted = [i for i in items if i.kind == AgendaItemKind.SUBMITTED]
    position = 0
    for title, kind, source in standing_items(session, c, meeting):
        position += 1
        session.add(
            AgendaItem(
                meeting_id=meeting_id, position=position, title=title, kind=kind, source=source
            )
        )
    for item in submitted:
        position += 1
        item.position = position
        session.add(item)
    session.add(
        AgendaItem(
            meeting_id=meeting_id,
            position=position + 1,
            title="Any other business",
            kind=AgendaItemKind.STANDING,
            source="standing:aob",
        )
    )
    session.flush()
    composed_items = items_of(session, meeting_id)
    uow.record(
        "meeting.agenda_composed",
        subject_of(meeting),
        before=None,
        after={"items": [f"{i.position}. {i.title}" for i in composed_items]},
    )
    return _lines(session, composed_items)


def _lines(session: Session, items: Sequence[AgendaItem]) -> list[AgendaLine]:
    """The agenda as it reads: a matter arising with its owner's name and due date as they are
    now (kept out of the stored title, and so out of the audit trail)."""
    return [AgendaLine(i.position, _title(session, i), i.kind, i.source) for i in items]


def _title(session: Session, item: AgendaItem) -> str:
    if item.kind == AgendaItemKind.ACTION:
        return arising_line(session, item.source, item.title)
    return item.title


def agenda(session: Session, meeting_id: int) -> list[AgendaLine]:
    return _lines(session, items_of(session, meeting_id))
