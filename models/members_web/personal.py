"""A member's own page: what is due from them and by when, across all their bodies, and their
meetings with the papers. Read-only queries; the app renders what `personal_page` returns and the
calendar feed (`deadline_events`) is built from the same list, so the two never disagree."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlmodel import Session, col, select

from models.accountability import AccountStatus, Side, waiting_on
from models.approvals import ApprovalStatus
from models.calendar_invite import Event
from models.clock import local_zone
from models.commands import current_constitution
from models.constitution import Action, Constitution
from models.disputes import DisputeStage
from models.meetings.kinds import ITEMS_DEADLINE
from models.meetings.plan import MeetingStatus, step_times
from models.messages import Ask
from models.permissions import Actor, find_actor
from models.reports import ReportStatus
from models.risks import RiskStatus
from models.tables import (
    AgendaItem,
    ApprovalRequest,
    Attendance,
    Body,
    CallToAccount,
    Dispute,
    DisputeParty,
    Meeting,
    Organisation,
    Person,
    Report,
    Risk,
)

UPCOMING = 5
RECENT = 3


@dataclass(frozen=True)
class Due:
    """One thing due from the member: what, by when, and the clause that says so."""

    uid: str  # stable: the calendar feed updates the same event when the date moves
    what: str
    by: date | datetime | None  # None: no date set (the page says none; the feed leaves it out)
    clause: str = ""
    ask: Ask | None = None  # the form that does it, when a member's page can open one


@dataclass(frozen=True)
class Paper:
    title: str
    document: str | None = None  # a stored upload's path, or a link the submitter gave


@dataclass(frozen=True)
class MeetingLine:
    body: str
    starts_at: datetime
    location: str | None
    status: str
    my_attendance: str | None
    papers: list[Paper] = field(default_factory=list)
    declare: Ask | None = None  # 18.1: declaring an interest ahead, while it is still to be held
    declare_clause: str = ""  # the clause the constitution gives declarations; "": none


@dataclass(frozen=True)
class PersonalPage:
    name: str
    organisation: str
    bodies: list[str]
    due: list[Due]
    upcoming: list[MeetingLine]
    recent: list[MeetingLine]


def my_bodies(c: Constitution, actor: Actor) -> list[str]:
    """The bodies the member sits on (a seat's role, within its organisation if any)."""
    found: list[str] = []
    for body in c.bodies:
        for seat in body.members:
            org = seat.organisation or c.role(seat.role).organisation
            if seat.role in actor.roles and org in (None, actor.organisation):
                found.append(body.id)
                break
    return found


def chaired_bodies(c: Constitution, actor: Actor) -> list[str]:
    """The bodies whose chair (or deputy) the member is."""
    return [b.id for b in c.bodies if b.chair in actor.roles or b.deputy in actor.roles]


def _sort_key(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time(17, 0), tzinfo=local_zone())


def _due_order(d: Due) -> tuple[bool, datetime]:
    """By date; what has no date last."""
    return (
        d.by is None,
        _sort_key(d.by) if d.by is not None else datetime.max.replace(tzinfo=local_zone()),
    )


def _names(session: Session) -> tuple[dict[str, str], dict[str, str]]:
    bodies = {b.id: b.name for b in session.exec(select(Body)).all()}
    return bodies, {o.id: o.name for o in session.exec(select(Organisation)).all()}


def _meetings(session: Session, bodies: list[str]) -> list[Meeting]:
    if not bodies:
        return []
    return list(
        session.exec(
            select(Meeting)
            .where(col(Meeting.body_id).in_(bodies), Meeting.status != "cancelled")
            .order_by(col(Meeting.starts_at))
        ).all()
    )


def _papers(session: Session, meeting_id: int) -> list[Paper]:
    items = session.exec(
        select(AgendaItem)
        .where(AgendaItem.meeting_id == meeting_id)
        .order_by(col(AgendaItem.position))
    ).all()
    reports = {
        f"report:{r.kind}:{r.from_body_id}:{r.period}": r.document
        for r in session.exec(select(Report).where(col(Report.document).is_not(None))).all()
    }
    return [Paper(i.title, reports.get(i.source or "")) for i in items]


def meeting_due(c: Constitution, meeting: Meeting, body: str, now: datetime) -> list[Due]:
    """Items by the items deadline; apologies by the start (20.4.1, 21.4.1, 22.4.1)."""
    due: list[Due] = []
    deadline = step_times(c, meeting.starts_at)[ITEMS_DEADLINE]
    subject = f"meeting:{meeting.id}"
    if now < deadline and meeting.status == MeetingStatus.PLANNED:
        due.append(
            Due(
                f"items-{meeting.ical_uid}",
                f"Agenda items for the {body}",
                deadline,
                ask=Ask(action=Action.MEETING_ITEM, subject=subject),
            )
        )
    if now < meeting.starts_at:
        due.append(
            Due(
                f"apologies-{meeting.ical_uid}",
                f"Apologies, if you cannot attend the {body}",
                meeting.starts_at,
                ask=Ask(action=Action.MEETING_APOLOGIES, subject=subject),
            )
        )
    return due


def next_meeting(session: Session, body_id: str, now: datetime) -> Meeting | None:
    """The body's next meeting still to be held after `now`, if one is planned."""
    return session.exec(
        select(Meeting)
        .where(
            Meeting.body_id == body_id,
            col(Meeting.starts_at) > now,
            col(Meeting.status).in_([MeetingStatus.PLANNED, MeetingStatus.AGENDA_PUBLISHED]),
        )
        .order_by(col(Meeting.starts_at))
    ).first()


def personal_page(session: Session, pseudonym: str, *, now: datetime) -> PersonalPage:
    """Everything the member's own page shows, as of `now`."""
    c = current_constitution(session)
    actor = find_actor(session, pseudonym)
    person = session.get(Person, actor.person_id)
    assert person is not None
    body_names, org_names = _names(session)
    bodies, chaired = my_bodies(c, actor), chaired_bodies(c, actor)
    due: list[Due] = []
    upcoming: list[MeetingLine] = []
    recent: list[MeetingLine] = []
    meetings = _meetings(session, bodies)
    for m in meetings:
        assert m.id is not None
        mine = session.get(Attendance, (m.id, actor.person_id))
        ahead = m.starts_at > now and m.status in (
            MeetingStatus.PLANNED,
            MeetingStatus.AGENDA_PUBLISHED,
        )
        line = MeetingLine(
            body_names.get(m.body_id, m.body_id),
            m.starts_at,
            m.location,
            m.status,
            mine.status if mine is not None else None,
            _papers(session, m.id),
            Ask(action=Action.MEETING_DECLARE, subject=f"meeting:{m.id}") if ahead else None,
            c.cite("interests"),
        )
        if m.starts_at >= now:
            if len(upcoming) < UPCOMING:
                upcoming.append(line)
                if mine is None:
                    due.extend(meeting_due(c, m, line.body, now))
        else:
            recent.append(line)
    recent = recent[-RECENT:][::-1]

    if chaired:
        for r in session.exec(
            select(Report).where(
                col(Report.from_body_id).in_(chaired),
                col(Report.status).in_([ReportStatus.REQUESTED, ReportStatus.OVERDUE]),
            )
        ).all():
            late = " (overdue)" if r.status == ReportStatus.OVERDUE else ""
            due.append(
                Due(
                    f"report-{r.id}",
                    f"The {body_names.get(r.from_body_id, r.from_body_id)} report for {r.period} "
                    f"to the {body_names.get(r.to_body_id, r.to_body_id)}{late}",
                    r.due_on,
                    ask=Ask(action=Action.REPORT_SUBMIT, subject=f"report:{r.id}"),
                )
            )
        for a in session.exec(
            select(ApprovalRequest).where(
                col(ApprovalRequest.approver_body_id).in_(chaired),
                ApprovalRequest.status == ApprovalStatus.WAITING,
            )
        ).all():
            # The proposal waits on the approving body's next agenda: decided by that meeting.
            meeting = next_meeting(session, a.approver_body_id, now)
            body = body_names.get(a.approver_body_id, a.approver_body_id)
            due.append(
                Due(
                    f"approval-{a.id}",
                    f"The {body}'s decision on \u201c{a.title}\u201d"
                    + (", at its next meeting" if meeting is not None else ""),
                    meeting.starts_at if meeting is not None else None,
                    a.clause,
                    ask=Ask(action=Action.APPROVAL_DECIDE, subject=f"approval:{a.id}"),
                )
            )
    for case in session.exec(
        select(CallToAccount).where(
            CallToAccount.organisation_id == actor.organisation,
            CallToAccount.status != AccountStatus.CLOSED,
        )
    ).all():
        if waiting_on(case) != Side.PARTNER:
            continue
        if case.status == AccountStatus.NEGOTIATING and case.negotiation_ends_on is not None:
            what, by = "Agree or propose the deadline for your response", case.negotiation_ends_on
            action = Action.ACCOUNT_AGREE_FOR_PARTNER
        elif case.agreed_deadline is not None:
            what, by = "Your organisation's formal response", case.agreed_deadline
            action = Action.ACCOUNT_RESPOND
        else:
            continue
        due.append(
            Due(
                f"account-{case.id}",
                f"{what} to the Safeguarding Board",
                by,
                c.cite("call_to_account"),
                ask=Ask(action=action, subject=f"account:{case.id}"),
            )
        )
    for d in session.exec(
        select(Dispute)
        .join(DisputeParty, col(DisputeParty.dispute_id) == col(Dispute.id))
        .where(
            DisputeParty.organisation_id == actor.organisation,
            Dispute.stage != DisputeStage.CLOSED,
            col(Dispute.stage_deadline).is_not(None),
        )
    ).all():
        assert d.stage_deadline is not None
        due.append(
            Due(
                f"dispute-{d.id}",
                f"The outcome of this stage of \u201c{d.title}\u201d",
                d.stage_deadline,
                c.cite("disputes"),
                ask=Ask(action=Action.DISPUTE_OUTCOME, subject=f"dispute:{d.id}"),
            )
        )
    for risk in session.exec(
        select(Risk).where(
            Risk.owner_person_id == actor.person_id, Risk.status != RiskStatus.CLOSED
        )
    ).all():
        due.append(
            Due(
                f"risk-{risk.id}",
                f"Review of the risk \u201c{risk.title}\u201d",
                risk.review_due_on,
                c.cite("risk"),
                ask=Ask(action=Action.RISK_REVIEW, subject=f"risk:{risk.id}"),
            )
        )
    due.sort(key=_due_order)
    return PersonalPage(
        name=person.name,
        organisation=org_names.get(person.organisation_id, person.organisation_id),
        bodies=[body_names.get(b, b) for b in bodies],
        due=due,
        upcoming=upcoming,
        recent=recent,
    )


def deadline_events(page: PersonalPage, *, domain: str, organizer: str) -> list[Event]:
    """The member's deadlines as calendar events (a 15-minute marker at the time, or an
    all-day event on the day)."""
    events: list[Event] = []
    for d in page.due:
        if d.by is None:
            continue
        start = _sort_key(d.by)
        events.append(
            Event(
                uid=f"{d.uid}@{domain}",
                sequence=0,
                starts_at=start,
                ends_at=start + timedelta(minutes=15),
                summary=f"Due: {d.what}",
                organizer_email=organizer,
                description=f"Clause {d.clause}" if d.clause else "",
            )
        )
    return events
