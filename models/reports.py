"""Quarterly reports: each strategy group's performance progress report (22.2.1) and the WSCB's
quarterly safeguarding report to the Trust (11.4.1): request, reminders, receipt, escalation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from models.calendar import add_working_days, working_days_between
from models.casework import clean_text, coordinators, notify, settle
from models.commands import current_constitution
from models.constitution import Action, BodyKind, Constitution, QuarterlyReport
from models.errors import InvalidInput, NotFound, Refused
from models.messages import Ask, Reminder, ReportOverdue, ReportRequest
from models.permissions import Principal, Scope
from models.steps import (
    DaysBefore,
    Firing,
    Ladder,
    NoParams,
    PlannedStep,
    StepSpec,
    Subject,
    at_five,
    ladder_kinds,
    pending_steps,
    plan_deadline,
    role_holders,
)
from models.tables import Report
from models.uow import UnitOfWork, locked

REQUEST = "report.request"
REMINDER = "report.reminder"
OVERDUE = "report.overdue"
REQUEST_STEP = StepSpec(REQUEST, Subject.REPORT, NoParams)
REMINDER_STEP = StepSpec(REMINDER, Subject.REPORT, DaysBefore)
OVERDUE_STEP = StepSpec(OVERDUE, Subject.REPORT, NoParams)
LADDER: Ladder = (REQUEST_STEP, REMINDER_STEP, OVERDUE_STEP)


class ReportStatus(StrEnum):
    """Where a quarterly report is: requested; overdue (escalated); submitted on time or late."""

    REQUESTED = "requested"
    OVERDUE = "overdue"
    SUBMITTED = "submitted"
    SUBMITTED_LATE = "submitted_late"


# A report received, on time or late: its chasers stop and it goes on the receiving agenda.
RECEIVED = (ReportStatus.SUBMITTED, ReportStatus.SUBMITTED_LATE)

# The names the statuses had before `ReportStatus`.
REQUESTED, OVERDUE_STATUS, SUBMITTED, SUBMITTED_LATE = (
    ReportStatus.REQUESTED,
    ReportStatus.OVERDUE,
    ReportStatus.SUBMITTED,
    ReportStatus.SUBMITTED_LATE,
)

_PERIOD = re.compile(r"^(\d{4})-([QP])(\d{1,2})$")
# The months whose end closes a period, by default: calendar quarters, named `2027-Q1`.
QUARTERS = (3, 6, 9, 12)


def period_letter(months: Sequence[int]) -> str:
    """`Q` for calendar quarters (`2027-Q1`), `P` for any other months (`2027-P1`)."""
    return "Q" if tuple(months) == QUARTERS else "P"


def _parse(period: str) -> tuple[int, str, int]:
    match = _PERIOD.match(period.strip())
    if match is None:
        raise InvalidInput(f"'{period}' is not a quarter: write it like 2027-Q1 (or 2027-P1)")
    year, letter, number = int(match.group(1)), match.group(2), int(match.group(3))
    if not 2000 <= year <= 2100:
        raise InvalidInput(f"'{period}': year out of range")
    return year, letter, number


def period_end(period: str, months: Sequence[int] = QUARTERS) -> date:
    """The last day of a period: `2027-P2` with months [2, 5, 8, 11] ends on 31 May 2027."""
    year, letter, number = _parse(period)
    if letter != period_letter(months) or not 1 <= number <= len(months):
        first = f"{year}-{period_letter(months)}"
        what = "a quarter" if period_letter(months) == "Q" else "a period of these reports"
        raise InvalidInput(
            f"'{period}' is not {what}: write it like {first}1 (to {first}{len(months)})"
        )
    month = months[number - 1]
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)


def quarter_end(period: str) -> date:
    """The last day of a quarter named like `2027-Q1`; a clear error for anything else."""
    return period_end(period)


def period_of(day: date, months: Sequence[int] = QUARTERS) -> str:
    """The period a day falls in, e.g. `2027-Q1`; after the year's last period ends, the next
    year's first (`2028-P1` on 1 December 2027 with months [2, 5, 8, 11])."""
    letter = period_letter(months)
    for number, month in enumerate(months, start=1):
        if day.month <= month:
            return f"{day.year}-{letter}{number}"
    return f"{day.year + 1}-{letter}1"


def closing_months(c: Constitution) -> list[int]:
    """The months whose end closes some report's period (default: quarters): reports for a
    period open on the first day of its last month, when served and when simulated."""
    return sorted({m for spec in c.quarterly_reports for m in spec.months}) or list(QUARTERS)


def current_periods(c: Constitution, day: date) -> list[str]:
    """The period each report spec is in on `day` (one name when they share their months)."""
    return sorted({period_of(day, spec.months) for spec in c.quarterly_reports}) or [period_of(day)]


def in_scheme(spec: QuarterlyReport, period: str) -> bool:
    """Is `period` named in this report's scheme (`Q` for quarters, `P` for other months)?"""
    return _parse(period)[1] == period_letter(spec.months)


def periods(spec: QuarterlyReport, year: int) -> list[str]:
    """The year's periods of this report, in order."""
    letter = period_letter(spec.months)
    return [f"{year}-{letter}{n}" for n in range(1, len(spec.months) + 1)]


def due_date(spec: QuarterlyReport, period: str) -> date:
    """22.2.1, 11.4.1: due a set number (at least one) of working days after the period ends,
    so always on a working day."""
    return add_working_days(period_end(period, spec.months), spec.due_working_days_after_quarter)


def reporters(c: Constitution, spec: QuarterlyReport) -> list[str]:
    """The bodies that owe this report: the named body, or every body of the named kind."""
    if spec.from_body is not None:
        return [spec.from_body]
    assert spec.from_kind is not None
    return [b.id for b in c.bodies_of(BodyKind(spec.from_kind))]


def spec_of(c: Constitution, kind: str) -> QuarterlyReport:
    for spec in c.quarterly_reports:
        if spec.id == kind:
            return spec
    known = ", ".join(q.id for q in c.quarterly_reports)
    raise NotFound(f"no quarterly report '{kind}' in the constitution (known: {known})")


def report_key(report: Report) -> str:
    """`report:wscb-quarterly:wscb:2027-Q1`: the stem of this report's step and message keys."""
    return _key(report.kind, report.from_body_id, report.period)


def _key(kind: str, from_body_id: str, period: str) -> str:
    return f"report:{kind}:{from_body_id}:{period}"


def _subject(report: Report) -> str:
    return f"report:{report.id}"


def _state(report: Report) -> dict[str, Any]:
    return {
        "kind": report.kind,
        "from": report.from_body_id,
        "to": report.to_body_id,
        "period": report.period,
        "due_on": report.due_on.isoformat(),
        "status": report.status,
    }


@dataclass(frozen=True)
class ReportsOpened:
    period: str
    created: list[str]
    steps: list[PlannedStep]

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "created": self.created,
            "steps": [s.as_dict() for s in self.steps],
        }


def open_reports(uow: UnitOfWork, *, period: str) -> ReportsOpened:
    """22.2.1, 11.4.1: open every quarterly report owed for `period`, each due a set number of
    working days after the quarter ends, with its request, reminders (in working days before the
    due date) and overdue escalation planned. Running it again opens nothing new."""
    session, c = uow.session, current_constitution(uow.session)
    period = period.strip()
    owed = [spec for spec in c.quarterly_reports if in_scheme(spec, period)]
    for spec in owed:  # a malformed period is refused before anything is written
        period_end(period, spec.months)
    if c.quarterly_reports and not owed:
        period_end(period, c.quarterly_reports[0].months)  # refused, saying how to write it
    r = c.reminders
    created: list[str] = []
    steps: list[PlannedStep] = []
    for spec in owed:
        due = due_date(spec, period)
        for body_id in reporters(c, spec):
            report = session.exec(
                select(Report).where(
                    Report.kind == spec.id, Report.from_body_id == body_id, Report.period == period
                )
            ).first()
            if report is None:
                report = Report(
                    kind=spec.id,
                    from_body_id=body_id,
                    to_body_id=spec.to_body,
                    period=period,
                    due_on=due,
                    status=ReportStatus.REQUESTED,
                )
                session.add(report)
                session.flush()
                created.append(report_key(report))
                uow.record("report.opened", _subject(report), before=None, after=_state(report))
                steps += plan_deadline(
                    session,
                    r,
                    stem=report_key(report),
                    subject_id=report.id or 0,
                    due=due,
                    kinds=LADDER,
                    opening="request",
                )
            else:
                steps.extend(pending_steps(session, _subject(report)))
    return ReportsOpened(period, created, steps)


def find_report(session: Session, *, kind: str, from_body: str, period: str) -> Report:
    """The report of `kind` from `from_body` for `period`, locked; a clear error if none."""
    period_end(period, spec_of(current_constitution(session), kind).months)
    report = session.exec(
        select(Report)
        .where(
            Report.kind == kind, Report.from_body_id == from_body, Report.period == period.strip()
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if report is None:
        raise NotFound(f"no {kind} report from {from_body} for {period} has been requested")
    return report


def lock(session: Session, report_id: int) -> Report:
    """The report, locked for this transaction: a step and a submission never interleave."""
    report = locked(session, Report, report_id)
    if report is None:
        raise NotFound(f"no report #{report_id}")
    return report


SUBMIT = (
    "Submit the report with the button below: attach it, or give the link to where it is "
    "published. It then goes on the agenda of the next meeting."
)


def _ask(report: Report) -> Ask:
    return Ask(action=Action.REPORT_SUBMIT, subject=_subject(report))


def _scope(report: Report) -> Scope:
    """Who may submit is judged for the reporting body (its chair or deputy, 22.2.1, 11.4.1)."""
    return Scope(body=report.from_body_id)


def _request_message(c: Constitution, spec: QuarterlyReport, report: Report) -> ReportRequest:
    return ReportRequest(
        clause=spec.clause,
        report=spec.title,
        from_body=c.body(report.from_body_id).name,
        to_body=c.body(report.to_body_id).name,
        period=report.period,
        due_on=report.due_on,
        action=SUBMIT,
        ask=_ask(report),
    )


def _reminder_message(c: Constitution, spec: QuarterlyReport, report: Report) -> Reminder:
    return Reminder(
        clause=spec.clause,
        what=f"the {spec.title} of {c.body(report.from_body_id).name} for {report.period}",
        due=at_five(report.due_on),
        body=c.body(report.to_body_id).name,
        action=SUBMIT,
        ask=_ask(report),
    )


def _owners(session: Session, c: Constitution, report: Report) -> list[Any]:
    return role_holders(session, c.body(report.from_body_id).chair)


def request(
    uow: UnitOfWork,
    report: Report,
    *,
    reminder: str | None = None,
    was_due: datetime | None = None,
) -> bool:
    """Ask the reporting body's chair for the report (or remind them); nothing once received.
    Sent late (`was_due`), the message says when it was due."""
    session, c = uow.session, current_constitution(uow.session)
    if report.status not in (ReportStatus.REQUESTED, ReportStatus.OVERDUE):
        return False
    spec = spec_of(c, report.kind)
    label = "request" if reminder is None else reminder
    notify(
        uow,
        _request_message(c, spec, report)
        if reminder is None
        else _reminder_message(c, spec, report),
        people=_owners(session, c, report),
        key=f"{report_key(report)}:{label}",
        was_due=was_due,
        scope=_scope(report),
    )
    uow.record(
        f"report.{'requested' if reminder is None else 'reminded'}",
        _subject(report),
        before=None,
        after={"step": label},
    )
    return True


def escalate(uow: UnitOfWork, report: Report) -> bool:
    """22.2.1, 11.4.1: a report not received by the end of the grace period is overdue and goes
    to the Executive's chair (and the reporting chair and the coordinators)."""
    session, c = uow.session, current_constitution(uow.session)
    if report.status != ReportStatus.REQUESTED:
        return False
    spec = spec_of(c, report.kind)
    before = _state(report)
    report.status = ReportStatus.OVERDUE
    session.add(report)
    executive = c.sole(BodyKind.EXECUTIVE)
    people = (
        role_holders(session, executive.chair)
        + _owners(session, c, report)
        + coordinators(session, c)
    )
    notify(
        uow,
        ReportOverdue(
            **_request_message(c, spec, report).model_dump(exclude={"kind", "action"}),
            action=(
                f"The report is needed now. If it is yours to submit, use the button below; "
                f"otherwise {executive.name}'s chair will follow it up."
            ),
            escalated_to=executive.name,
            # The due date and the grace are counted in working days, so is the lateness.
            days_overdue=max(1, working_days_between(report.due_on, uow.clock.now().date())),
        ),
        people=people,
        key=f"{report_key(report)}:overdue",
        scope=_scope(report),
    )
    uow.record("report.overdue", _subject(report), before=before, after=_state(report))
    return True


# --- the steps as the step engine runs them: each False once the report is in ----------------


def _request(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    return request(uow, lock(uow.session, firing.subject_id), was_due=firing.was_due)


def _remind(uow: UnitOfWork, firing: Firing[DaysBefore]) -> bool:
    report = lock(uow.session, firing.subject_id)
    return request(uow, report, reminder=f"reminder-{firing.params.days}")


def _escalate(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    return escalate(uow, lock(uow.session, firing.subject_id))


STEP_KINDS = ladder_kinds(LADDER, lock=lock, opening=_request, reminder=_remind, overdue=_escalate)


def submit_report(
    uow: UnitOfWork, *, kind: str, from_body: str, period: str, by: Principal, document: str
) -> Report:
    """Receive a quarterly report (who may: the constitution's `report.submit`, by default the
    reporting body's chair or deputy, or a coordinator): its pending reminders and escalation
    stop, and it goes on the receiving body's next agenda."""
    session = uow.session
    document = clean_text(document, what="document", limit=2000)
    report = find_report(session, kind=kind, from_body=from_body, period=period)
    if report.status in RECEIVED:
        raise Refused(f"{report_key(report)} was already submitted on {report.submitted_at}")
    now = uow.clock.now()
    before = _state(report)
    on_time = report.status == ReportStatus.REQUESTED
    report.status = ReportStatus.SUBMITTED if on_time else ReportStatus.SUBMITTED_LATE
    report.submitted_at, report.submitted_by, report.document = now, by.audit_name, document
    session.add(report)
    settle(session, subject=_subject(report), now=now)
    uow.record("report.submitted", _subject(report), before=before, after=_state(report))
    return report


def overdue_report_keys(session: Session) -> list[tuple[str, date]]:
    """(report key, day due) of every overdue report, oldest first: the columns, not the rows."""
    rows = session.exec(
        select(col(Report.kind), col(Report.from_body_id), col(Report.period), col(Report.due_on))
        .where(Report.status == ReportStatus.OVERDUE)
        .order_by(col(Report.due_on))
    ).all()
    return [(_key(kind, body, period), due) for kind, body, period, due in rows]


def overdue_reports(session: Session) -> list[Report]:
    return list(
        session.exec(
            select(Report).where(Report.status == ReportStatus.OVERDUE).order_by(col(Report.due_on))
        ).all()
    )
