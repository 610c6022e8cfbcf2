"""A forward look: everything due in the next weeks, per body, in date order -- meetings and
their items deadlines, quarterly reports (22.2.1, 11.4.1), annual reviews and the close of a
7.2 challenge window, open actions of the action tracker, and the deadlines of cases (16.1, 18.2,
11.5.1). Each line says who it waits on by a name or an organisation, never by a pseudonym."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from models import reports, reviews
from models.accountability import Side, waiting_on
from models.calendar import bank_holiday, in_partnership, is_working_day
from models.casework import StepStatus
from models.clock import local, local_day, local_zone
from models.commands import current_constitution
from models.constitution import BodyKind, Constitution
from models.disputes import parties_of
from models.errors import InvalidInput, NotFound, cited
from models.meetings.kinds import ITEMS_DEADLINE
from models.meetings.plan import MeetingStatus
from models.risks import RiskStatus
from models.steps import Subject, role_holders
from models.tables import (
    ApprovalRequest,
    CallToAccount,
    Dispute,
    Meeting,
    MeetingAction,
    Organisation,
    Person,
    Report,
    Review,
    Risk,
    Step,
)

DEFAULT_DAYS = 42
_OPEN_MEETING = (MeetingStatus.PLANNED, MeetingStatus.AGENDA_PUBLISHED)
_OPEN_REPORT = (reports.ReportStatus.REQUESTED, reports.ReportStatus.OVERDUE)
_OPEN_REVIEW = (reviews.ReviewStatus.OPEN, reviews.ReviewStatus.OVERDUE)
# The cases whose steps are deadlines; an approval's, once approvals have a due date (11.3.5).
_CASES = (Subject.DISPUTE.value, Subject.ACCOUNT.value, Subject.RISK.value, "approval")


class Due(StrEnum):
    """What kind of thing falls due."""

    MEETING = "meeting"
    ITEMS_DEADLINE = "items deadline"
    REPORT = "report"
    REVIEW = "review"
    CHALLENGE_WINDOW = "challenge window"
    ACTION = "action"
    CASE = "case deadline"


@dataclass(frozen=True)
class Upcoming:
    """One thing due: on which day (and at what time, when it has one), for which body, what it
    is, and whom it waits on."""

    on: date
    at: datetime | None
    body: str
    body_name: str
    due: Due
    what: str
    waits_on: str

    @property
    def day(self) -> str:
        return display_day(self.on)

    def as_dict(self) -> dict[str, Any]:
        return {
            "on": self.on.isoformat(),
            "day": self.day,
            "at": self.at.isoformat() if self.at else None,
            "body": self.body,
            "body_name": self.body_name,
            "due": self.due.value,
            "what": self.what,
            "waits_on": self.waits_on,
        }


def display_day(day: date) -> str:
    """`Tue 9 Mar 2027`; a day that is not a working day says so (`Sat 27 Nov 2027, weekend`,
    `Mon 3 May 2027, Early May bank holiday`)."""
    text = f"{day:%a} {day.day} {day:%b %Y}"
    if is_working_day(day):
        return text
    return f"{text}, {bank_holiday(day) or 'weekend'}"


def _names(people: list[Person]) -> str:
    return ", ".join(p.name for p in people)


class _Look:
    """What the forward look reads once: the constitution, the window, the names of chairs."""

    def __init__(self, session: Session, now: datetime, days: int, body: str | None) -> None:
        if not 0 <= days <= 366:
            raise InvalidInput(f"--days {days} is out of range (0 to 366)")
        self.session = session
        self.c: Constitution = current_constitution(session)
        known = [b.id for b in self.c.bodies]
        if body is not None and body not in known:
            raise NotFound(f"no body '{body}' (known: {', '.join(known)})")
        self.body = body
        self.start = local_day(now)
        self.end = self.start + timedelta(days=days)
        self.rows: list[Upcoming] = []

    def within(self, day: date) -> bool:
        return self.start <= day <= self.end

    def chair(self, body_id: str) -> str:
        """The chair of the body by name, or the chair's role when nobody holds it."""
        role = self.c.body(body_id).chair
        return _names(role_holders(self.session, role)) or self.c.role(role).name

    def organisation(self, org_id: str) -> str:
        org = self.session.get(Organisation, org_id)
        return org.name if org is not None else org_id

    def add(
        self, on: date, body: str, due: Due, what: str, waits_on: str, at: datetime | None = None
    ) -> None:
        if self.within(on) and self.body in (None, body):
            self.rows.append(Upcoming(on, at, body, self.c.body(body).name, due, what, waits_on))


def _meetings(look: _Look) -> None:
    """Each planned meeting, and its items deadline while that step is still to come."""
    session = look.session
    start = datetime.combine(look.start, time.min, tzinfo=local_zone())
    meetings = session.exec(
        select(Meeting)
        .where(col(Meeting.status).in_(_OPEN_MEETING), col(Meeting.starts_at) >= start)
        .order_by(col(Meeting.starts_at))
    ).all()
    for meeting in meetings:
        name = look.c.body(meeting.body_id).name
        kind = "extraordinary meeting" if meeting.extraordinary else "meeting"
        at = local(meeting.starts_at)
        look.add(
            at.date(),
            meeting.body_id,
            Due.MEETING,
            f"{name} {kind} at {at:%H:%M}, {meeting.location or 'location to follow'}",
            look.chair(meeting.body_id),
            at,
        )
        deadline = session.exec(
            select(Step).where(
                Step.subject == Subject.MEETING.of(meeting.id or 0),
                Step.kind == ITEMS_DEADLINE,
                Step.status == StepStatus.PENDING,
            )
        ).first()
        if deadline is not None:
            look.add(
                local_day(deadline.due_at),
                meeting.body_id,
                Due.ITEMS_DEADLINE,
                f"agenda items for the {at:%-d %b} meeting, by {local(deadline.due_at):%H:%M}",
                f"members of {name}",
                deadline.due_at,
            )


def _reports(look: _Look) -> None:
    """Reports requested and not yet received; and those not yet requested whose due date falls
    in the window (their period is not yet open)."""
    session, c = look.session, look.c
    opened: set[tuple[str, str, str]] = set()
    for report in session.exec(select(Report)).all():
        opened.add((report.kind, report.from_body_id, report.period))
        if report.status in _OPEN_REPORT:
            spec = reports.spec_of(c, report.kind)
            late = " (overdue)" if report.status == reports.ReportStatus.OVERDUE else ""
            look.add(
                report.due_on,
                report.from_body_id,
                Due.REPORT,
                f"{spec.title} {report.period} to {c.body(report.to_body_id).name}{late}",
                look.chair(report.from_body_id),
            )
    years = range(look.start.year - 1, look.end.year + 1)
    for year, number in [(y, n) for y in years for n in range(12)]:
        for spec in c.quarterly_reports:
            if number >= len(spec.months):
                continue
            period = reports.periods(spec, year)[number]
            due = reports.due_date(spec, period)
            for body_id in reports.reporters(c, spec):
                if (spec.id, body_id, period) not in opened:
                    look.add(
                        due,
                        body_id,
                        Due.REPORT,
                        f"{spec.title} {period} to {c.body(spec.to_body).name} (not yet requested)",
                        look.chair(body_id),
                    )


def _reviews(look: _Look) -> None:
    """Reviews awaiting their outcome, the close of a published review's challenge window, and
    reviews not yet opened whose due date falls in the window."""
    session, c = look.session, look.c
    opened: set[tuple[str, int]] = set()
    for review in session.exec(select(Review)).all():
        opened.add((review.kind, review.year))
        spec = reviews.spec_of(c, review.kind)
        if review.status in _OPEN_REVIEW:
            late = " (overdue)" if review.status == reviews.ReviewStatus.OVERDUE else ""
            look.add(
                review.due_on,
                review.owner_body_id,
                Due.REVIEW,
                f"{spec.title} {review.year} ({spec.clause}){late}",
                look.chair(review.owner_body_id),
            )
        elif review.status == reviews.ReviewStatus.PUBLISHED and review.challenge_closes_on:
            look.add(
                review.challenge_closes_on,
                review.owner_body_id,
                Due.CHALLENGE_WINDOW,
                cited(
                    f"challenges to the published {spec.title} {review.year} close",
                    c.cite("challenge"),
                ),
                look.chair(review.owner_body_id),
            )
    for year in range(look.start.year, look.end.year + 1):
        for spec in c.reviews:
            if (spec.id, year) not in opened:
                look.add(
                    reviews.due_date(spec, year),
                    spec.owner,
                    Due.REVIEW,
                    f"{spec.title} {year} ({spec.clause}) (not yet opened)",
                    look.chair(spec.owner),
                )


def _actions(look: _Look) -> None:
    """Open actions of the action tracker, under the body whose meeting agreed them."""
    session = look.session
    rows = session.exec(
        select(MeetingAction, Meeting.body_id, Person.name)
        .join(Meeting, col(Meeting.id) == col(MeetingAction.meeting_id))
        .join(Person, col(Person.id) == col(MeetingAction.owner_id))
        .where(MeetingAction.status == "open")
    ).all()
    for action, body_id, owner in rows:
        look.add(action.due_on, body_id, Due.ACTION, f"action #{action.id}: {action.text}", owner)


def _case(look: _Look, step: Step) -> tuple[str, str, str] | None:
    """The body, what and whom for a case's step; None for a case that no longer exists."""
    session, c = look.session, look.c
    what = step.kind.split(".", 1)[-1].replace("_", " ")
    if step.subject_type == Subject.DISPUTE:
        dispute = session.get(Dispute, step.subject_id)
        if dispute is None:
            return None
        parties = sorted(look.organisation(o) for o in parties_of(session, dispute.id or 0))
        stage = str(step.params.get("stage", dispute.stage)).replace("_", " ")
        return (
            c.sole(BodyKind.BOARD).id,
            cited(
                f"dispute #{dispute.id} '{dispute.title}': end of the {stage} stage",
                c.cite("disputes"),
            ),
            ", ".join(parties),
        )
    if step.subject_type == Subject.ACCOUNT:
        case = session.get(CallToAccount, step.subject_id)
        if case is None:
            return None
        wscb = c.sole(BodyKind.SAFEGUARDING_BOARD)
        partner = look.organisation(case.organisation_id)
        whom = partner if waiting_on(case) == Side.PARTNER else wscb.name
        label = case.kind.replace("_", " ")
        what = cited(f"{label} #{case.id} ({partner}): {what}", c.cite("call_to_account"))
        return (wscb.id, what, whom)
    if step.subject_type == "approval":
        request = session.get(ApprovalRequest, step.subject_id)
        if request is None:
            return None
        approver = c.body(request.approver_body_id)
        what = cited(f"approval #{request.id} '{request.title}': decision due", request.clause)
        return (approver.id, what, approver.name)
    risk = session.get(Risk, step.subject_id)
    if risk is None:
        return None
    escalated = risk.status == RiskStatus.ESCALATED
    body = c.sole(BodyKind.BOARD if escalated else BodyKind.EXECUTIVE)
    owner = session.get(Person, risk.owner_person_id)
    whom = body.name if escalated else (owner.name if owner is not None else body.name)
    return (body.id, cited(f"risk #{risk.id} '{risk.title}': {what}", c.cite("risk")), whom)


def _cases(look: _Look) -> None:
    """The deadlines of open cases: their pending steps, leaving out reminders."""
    steps = look.session.exec(
        select(Step)
        .where(col(Step.subject_type).in_(_CASES), Step.status == StepStatus.PENDING)
        .order_by(col(Step.due_at))
    ).all()
    for step in steps:
        if step.kind.endswith(".reminder"):
            continue
        found = _case(look, step)
        if found is not None:
            body, what, whom = found
            look.add(local_day(step.due_at), body, Due.CASE, what, whom, step.due_at)


def upcoming(
    session: Session, *, now: datetime, days: int = DEFAULT_DAYS, body: str | None = None
) -> list[Upcoming]:
    """Everything due from `now`'s day to `days` days later (for one body, when given), in date
    order, then by body and kind. Days are the partnership's (its time zone and region)."""
    with in_partnership(current_constitution(session).partnership):
        look = _Look(session, now, days, body)
        for source in (_meetings, _reports, _reviews, _actions, _cases):
            source(look)
    return sorted(
        look.rows, key=lambda r: (r.on, r.at is None, r.at or now, r.body, r.due.value, r.what)
    )


def by_body(rows: list[Upcoming]) -> dict[str, list[Upcoming]]:
    """The rows per body, in the order bodies first fall due."""
    grouped: dict[str, list[Upcoming]] = {}
    for row in rows:
        grouped.setdefault(row.body, []).append(row)
    return grouped
