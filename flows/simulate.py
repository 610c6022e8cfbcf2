"""`wct simulate`: a year of the calendar in accelerated time against a real Prefect server.

The simulator plays the scheduler: it runs each cycle flow when its schedule would, and each
step flow when its timer would fire, with the injected clock set to that moment. Simulated members
act on a seeded random schedule (some late, so escalations happen): they submit items and reports,
send apologies, record their meetings through the record form, approve minutes, finish reviews.
Every quarter a round of cases is opened, each as a run of its case flow at its moment
(`as_of`, not followed: the simulated members answer with commands, as a form would), and each
case's deadlines and reminders fire as runs of the step flow like every other step: risks raised
by the Executive and escalated to the Board (16.1), a dispute whose deadlines pass until it
reaches ADR (18.2), a call to account agreed, reminded and answered late (11.5.1), approvals
granted and refused by the approving body's chair (11.3.5, 21.1.1). People are picked by their
roles in the constitution. A command the rules refuse is part of the story, counted, not a failure.
Messages are delivered to the mail folder by the notifications dispatcher at the end of each day.
Nothing here decides a governance question: every change is a command in `models/`.
"""

from __future__ import annotations

import csv
import heapq
import io
import itertools
import json
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from flows import cases as case_flows
from flows.cycles import (
    MeetingRecord,
    annual_review,
    meeting_cycle,
    quarterly_reports,
    record_meeting,
)
from flows.runtime import engine, one_client
from flows.signals import act
from flows.steps import step as step_timer
from models import accountability, approvals, instructions, meetings, reports, reviews
from models.calendar import add_working_days, in_partnership, is_working_day, meetings_between
from models.casework import StepStatus, coordinators, holders
from models.clock import FixedClock, local_day
from models.constitution import BodyKind, Constitution, RoleKind
from models.db import migrate
from models.disputes import stage_deadline
from models.errors import InvalidInput, WctError
from models.instructions import (
    ApproveMinutes,
    ChallengeReview,
    CompleteReview,
    ImportMembers,
    LoadConstitution,
    SendApologies,
    SubmitItem,
    SubmitReport,
)
from models.permissions import System
from models.service import Command, execute
from models.steps import at_nine, body_members, role_holders
from models.tables import (
    ApprovalRequest,
    AuditEvent,
    CallToAccount,
    DisputeStageRecord,
    Meeting,
    Person,
    Report,
    Review,
    Step,
)
from notifications.config import NotificationSettings
from notifications.dispatch import Dispatcher

Action = Callable[[datetime], Awaitable[None]]
#: Told after each event of the simulation: the simulated moment and the summary so far.
Progress = Callable[[datetime, "Summary"], None]
CASE_ROUND = timedelta(weeks=13)  # a round of cases every quarter
#: The bodies a round of cases addresses (risks, disputes, calls to account): one of each.
CASE_BODIES = (BodyKind.EXECUTIVE, BodyKind.BOARD, BodyKind.SAFEGUARDING_BOARD)


@dataclass(order=True)
class Event:
    when: datetime
    seq: int
    label: str = field(compare=False)
    action: Action = field(compare=False)


@dataclass
class Summary:
    start: str
    end: str
    seed: int
    meetings_planned: int = 0
    meetings_held: int = 0
    minutes_chased: int = 0
    reports_requested: int = 0
    reports_submitted: int = 0
    reports_overdue: int = 0
    reviews_completed: int = 0
    reviews_overdue: int = 0
    steps_fired: int = 0
    commands_refused: int = 0
    cases: dict[str, dict[str, int]] = field(default_factory=dict)
    bodies: dict[str, dict[str, int]] = field(default_factory=dict)
    messages_delivered: int = 0
    messages_failed: int = 0
    flow_runs: int = 0
    prefect_tag: str = ""  # the tag of this simulation's flow runs, to filter them in the UI
    mail_folder: str = ""
    database: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GateCast:
    """An approval gate's people: members of the proposing body, the approving body's chair."""

    gate: str
    proposers: list[str]
    approvers: list[str]


@dataclass(frozen=True)
class Cast:
    """Who plays each part in the cases, picked by role from the constitution (emails)."""

    executive_chairs: list[str]
    executive_members: list[str]
    board_chairs: list[str]
    wscb_chairs: list[str]
    coordinators: list[str]
    partners: dict[str, list[str]]  # statutory partner -> its people with a seat on the Board
    gates: list[GateCast]


def _emails(people: Iterable[Person]) -> list[str]:
    return [p.email for p in people]


def synthetic_members(c: Constitution) -> str:
    """A members CSV with one person for every seat of every body, and a coordinator."""
    wanted: dict[tuple[str, str], int] = {}
    for body in c.bodies:
        for seat in body.members:
            org = (
                seat.organisation
                or c.role(seat.role).organisation
                or c.partnership.accountable_body
            )
            wanted[(seat.role, org)] = max(wanted.get((seat.role, org), 0), seat.count)
    for coordinator in c.roles:
        if coordinator.kind is RoleKind.COORDINATOR:
            org = coordinator.organisation or c.partnership.accountable_body
            wanted.setdefault((coordinator.id, org), 1)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "email", "organisation", "roles", "teams_webhook", "channels"])
    n = 0
    for (role, org), count in sorted(wanted.items()):
        for _ in range(count):
            n += 1
            writer.writerow(
                [f"Member {n}", f"member{n}.{role}@{org}.sim.example", org, role, "", "email"]
            )
    return out.getvalue()


SETUP = System("operator:simulation")


def prepare_database(db: Engine, c: Constitution, clock: FixedClock) -> None:
    migrate(db)
    execute(db, clock, SETUP, LoadConstitution(document=c, source="simulation"))
    members = ImportMembers(text=synthetic_members(c), source="simulated members")
    execute(db, clock, SETUP, members)


class Simulation:
    def __init__(
        self,
        *,
        start: date,
        end: date,
        seed: int,
        home: Path,
        constitution: Constitution,
        progress: Progress | None = None,
    ) -> None:
        if end < start:
            raise InvalidInput(f"--to {end} is before --from {start}")
        if (end - start).days > 3 * 366:
            raise InvalidInput("simulate at most three years at a time")
        zone = constitution.partnership.zone  # the partnership's days, not London's
        self.start = datetime.combine(start, time(0, 0), tzinfo=zone)
        self.end = datetime.combine(end, time(23, 59), tzinfo=zone)
        self.rng = random.Random(seed)
        self.c = constitution
        self.home = home
        self.summary = Summary(start.isoformat(), end.isoformat(), seed)
        self.queue: list[Event] = []
        self.seq = itertools.count()
        self.queued_steps: set[str] = set()
        self.seen_step_id = 0  # steps are only added: each look reads the new ones alone
        # This simulation's runs and no other's: two of the same period and seed on one server
        # (`wct up`'s) are told apart in the Prefect UI and counted apart in the summary.
        self.summary.prefect_tag = f"wct-simulation-{seed}-{start:%Y%m%d}-{secrets.token_hex(3)}"
        self.delivery = NotificationSettings(home=home)
        self.delivery_clock = FixedClock(self.start)
        self.dispatcher: Dispatcher | None = None  # one for the whole run, as a served one is
        self.progress = progress
        self.planned: dict[str, int] = {}  # meetings planned per body, as the cycles planned them

    # --- the event queue ------------------------------------------------------------------

    def at(self, when: datetime, label: str, action: Action) -> None:
        if when <= self.end:
            heapq.heappush(self.queue, Event(max(when, self.start), next(self.seq), label, action))

    def clock(self, now: datetime) -> FixedClock:
        return FixedClock(now)

    def run_command(self, now: datetime, who: str, command: Command[object]) -> bool:
        """A member (or the public) acts; a refusal (the rules said no) is part of the story,
        not a failure."""
        try:
            act(self.clock(now), who, command)
        except WctError:
            self.summary.commands_refused += 1
            return False
        return True

    def queue_new_steps(self) -> None:
        """Every new pending step of every kind due by the end, fired when its timer would fire
        (a step planned again under its key keeps its first timer, as a served timer does)."""
        with Session(engine()) as session:
            rows = session.exec(
                select(Step.id, Step.key, Step.due_at, Step.status)
                .where(col(Step.id) > self.seen_step_id)
                .order_by(col(Step.id))
            ).all()
        for step_id, key, due_at, status in rows:
            self.seen_step_id = max(self.seen_step_id, step_id or 0)
            late = due_at > self.end
            if status == StepStatus.PENDING and not late and key not in self.queued_steps:
                self.queued_steps.add(key)
                self.at(due_at, key, self._fire(key))

    def _fire(self, key: str) -> Action:
        async def fire(now: datetime) -> None:
            await step_timer(key=key, as_of=now, timers=False)  # the simulator plays the timers
            self.summary.steps_fired += 1

        return fire

    # --- the schedules (what the Prefect scheduler does for `wct up`) ----------------------

    def schedule_cycles(self) -> None:
        for body in self.c.bodies:
            if body.cadence is None:
                continue
            self.at(self.start, f"meetings-{body.id}", self._meeting_cycle(body.id))
            for moment in meetings_between(
                body.cadence.rrule, body.cadence.first, self.start, self.end, self.start.tzinfo
            ):
                self.at(moment, f"meetings-{body.id}", self._meeting_cycle(body.id))
        self.at(self.start, "reports", self._reports())
        for year in range(self.start.year, self.end.year + 1):
            for month in reports.closing_months(self.c):
                self.at(at_nine(date(year, month, 1)), "reports", self._reports())
        for review in self.c.reviews:
            self.at(self.start, f"review-{review.id}", self._review(review.id))
            for year in range(self.start.year, self.end.year + 2):
                lead = timedelta(days=review.opens_before_days)
                opens = date(year, review.due_month, review.due_day) - lead
                self.at(at_nine(opens), f"review-{review.id}", self._review(review.id))

    def _meeting_cycle(self, body: str) -> Action:
        async def run(now: datetime) -> None:
            planned = await meeting_cycle(body=body, as_of=now, timers=False)
            for p in planned:
                if p["created"]:
                    self.summary.meetings_planned += 1
                    self.planned[body] = self.planned.get(body, 0) + 1
                    self.members_meet(p["meeting_id"], datetime.fromisoformat(p["starts_at"]))

        return run

    def _reports(self) -> Action:
        async def run(now: datetime) -> None:
            opened = await quarterly_reports(as_of=now, timers=False)
            for key in opened["created"]:
                self.members_report(key)

        return run

    def _review(self, kind: str) -> Action:
        async def run(now: datetime) -> None:
            opened = await annual_review(kind=kind, as_of=now, timers=False)
            if opened["created"]:
                self.members_review(kind, opened["review_id"], date.fromisoformat(opened["due_on"]))

        return run

    # --- what the simulated members do -----------------------------------------------------

    def _late(self, due: date, early: int, late: int) -> datetime:
        offset = self.rng.randint(-early, late)
        return at_nine(add_working_days(due, offset)) + timedelta(hours=self.rng.randint(0, 7))

    def members_report(self, key: str) -> None:
        with Session(engine()) as session:
            report = next(r for r in session.exec(select(Report)) if reports.report_key(r) == key)
            kind, body, period = report.kind, report.from_body_id, report.period
            owners = role_holders(session, self.c.body(body).chair)  # 22.2.1: the chair reports
        if not owners or self.rng.random() < 0.05:
            return  # never sent: escalated and left on the overdue list
        who = self.rng.choice(owners).email
        when = self._late(report.due_on, 12, 7)
        submission = SubmitReport(kind=kind, from_body=body, period=period, document=f"{key}.pdf")

        async def submit(now: datetime) -> None:
            if self.run_command(now, who, submission):
                self.summary.reports_submitted += 1

        self.at(when, f"submit-{key}", submit)

    def members_review(self, kind: str, review_id: int, due: date) -> None:
        with Session(engine()) as session:
            review = session.get(Review, review_id)
            assert review is not None
            owners = role_holders(session, self.c.body(review.owner_body_id).chair)
        if not owners:
            return
        who = self.rng.choice(owners).email
        challenged = self.rng.random() < 0.5
        outcome = CompleteReview(kind=kind, year=due.year, outcome="Reviewed by the owning body.")

        async def complete(now: datetime) -> None:
            done = self.run_command(now, who, outcome)
            if done and challenged:
                self.at(now + timedelta(days=5), f"challenge-{kind}", challenge)

        async def challenge(now: datetime) -> None:  # 7.2: any interested party
            text = ChallengeReview(kind=kind, year=due.year, text="Please explain.")
            self.run_command(now, "A local parent", text)

        self.at(self._late(due, 25, 8), f"review-{kind}", complete)

    def members_meet(self, meeting_id: int, starts_at: datetime) -> None:
        with Session(engine()) as session:
            meeting = session.get(Meeting, meeting_id)
            assert meeting is not None
            body = meeting.body_id
            members = [p.email for p in body_members(session, self.c, body)]
            chairs = [p.email for p in role_holders(session, self.c.body(body).chair)]
            # 23.1: the coordinators keep the minutes; the chair when there is none.
            recorders = [p.email for p in coordinators(session, self.c)] + chairs
        times = meetings.step_times(self.c, starts_at)
        for n in range(self.rng.randint(0, 2)):
            who = self.rng.choice(members)
            span = (times[meetings.ITEMS_DEADLINE] - times[meetings.CALL_FOR_ITEMS]).total_seconds()
            when = times[meetings.CALL_FOR_ITEMS] + timedelta(seconds=self.rng.uniform(0, span))

            async def submit(now: datetime, who: str = who, n: int = n) -> None:
                item = SubmitItem(meeting_id=meeting_id, title=f"Item {n + 1} from a member")
                self.run_command(now, who, item)

            self.at(when, f"item-{meeting_id}", submit)
        absent = [m for m in members if m not in chairs and self.rng.random() < 0.1]
        for who in absent:

            async def apologise(now: datetime, who: str = who) -> None:
                self.run_command(now, who, SendApologies(meeting_id=meeting_id))

            self.at(
                times[meetings.AGENDA] + timedelta(hours=2), f"apologies-{meeting_id}", apologise
            )
        present = [
            m for m in members if m not in absent and (m in chairs or self.rng.random() < 0.85)
        ]
        recorded_at = (
            self._late(local_day(starts_at), 0, 14) if self.rng.random() < 0.2 else starts_at
        )
        record = MeetingRecord(
            body=body,
            day=local_day(starts_at),
            recorded_by=recorders[0] if recorders else "",
            present=present,
            apologies=absent,
            motions=[self._motion(present) for _ in range(self.rng.randint(1, 2))],
        )

        async def hold(now: datetime) -> None:
            try:
                await record_meeting(record=record, as_of=max(now, starts_at + timedelta(hours=2)))
            except WctError:
                return
            self.summary.meetings_held += 1
            self.approve_previous(body, meeting_id, now)

        self.at(recorded_at + timedelta(hours=2), f"record-{meeting_id}", hold)

    def _motion(self, present: list[str]) -> dict[str, Any]:
        votes: dict[str, list[str]] = {"votes_for": [], "votes_against": [], "abstentions": []}
        for who in present:
            pick = self.rng.random()
            votes[
                "votes_for" if pick < 0.6 else "votes_against" if pick < 0.9 else "abstentions"
            ].append(who)
        tied = len(votes["votes_for"]) == len(votes["votes_against"]) and votes["votes_for"]
        return {
            "text": "That the report be noted and its recommendations adopted",
            **votes,
            "casting_vote": self.rng.choice(["for", "against"]) if tied else "none",
        }

    def approve_previous(self, body: str, meeting_id: int, now: datetime) -> None:
        with Session(engine()) as session:
            recorders = [p.email for p in coordinators(session, self.c)]
            current = session.get(Meeting, meeting_id)
            assert current is not None
            previous = session.exec(
                select(Meeting)
                .where(
                    Meeting.body_id == body,
                    col(Meeting.starts_at) < current.starts_at,
                    Meeting.status == meetings.MeetingStatus.MINUTES_DRAFTED,
                )
                .order_by(col(Meeting.starts_at).desc())
            ).first()
        if previous is not None and previous.id is not None:
            approval = ApproveMinutes(meeting_id=previous.id, at_meeting_id=meeting_id)
            self.run_command(now, recorders[0] if recorders else "", approval)

    # --- cases: a round every quarter (what members, chairs and partners start and answer) ----

    def schedule_cases(self) -> None:
        """A round of cases at the start and every quarter after, while the range lasts (none
        when the constitution lacks one of the bodies the cases address)."""
        if any(len(self.c.bodies_of(kind)) != 1 for kind in CASE_BODIES):
            return
        first = self._working_day(self.start.date() + timedelta(days=1))
        for n in itertools.count():
            day = first + CASE_ROUND * n
            if day > self.end.date():
                return
            self.at(at_nine(self._working_day(day)), f"cases-{n}", self._case_round(n))

    @staticmethod
    def _working_day(day: date) -> date:
        while not is_working_day(day):
            day += timedelta(days=1)
        return day

    def _later(self, now: datetime, low: int, high: int) -> datetime:
        """A working day `low` to `high` working days after `now`, at a time in office hours."""
        day = add_working_days(local_day(now), self.rng.randint(low, high))
        return at_nine(day) + timedelta(hours=self.rng.randint(0, 7))

    def _case_round(self, n: int) -> Action:
        async def run(now: datetime) -> None:
            cast = self.cast()
            await self.open_risks(n, now, cast)
            await self.open_dispute(n, now, cast)
            await self.open_call_to_account(n, now, cast)
            await self.open_approvals(n, now, cast)

        return run

    def cast(self) -> Cast:
        """Who plays each part, by role in the constitution."""
        c = self.c
        executive, board = c.sole(BodyKind.EXECUTIVE), c.sole(BodyKind.BOARD)
        wscb = c.sole(BodyKind.SAFEGUARDING_BOARD)
        with Session(engine()) as session:
            exec_chairs = _emails(role_holders(session, executive.chair))
            members = _emails(body_members(session, c, executive.id))
            board_seats = {seat.role for seat in board.members}
            partners: dict[str, list[str]] = {}
            for org in c.organisations:
                if not org.statutory_partner:  # 20.3.3: the partners under the duty to co-operate
                    continue
                people = _emails(holders(session, board_seats, [org.id]))
                if people:
                    partners[org.id] = people
            gates = [
                GateCast(
                    gate=g.id,
                    proposers=_emails(body_members(session, c, g.from_body)),
                    approvers=_emails(role_holders(session, c.body(g.approver_body).chair)),
                )
                for g in c.approval_gates
            ]
            return Cast(
                executive_chairs=exec_chairs,
                executive_members=[m for m in members if m not in exec_chairs],
                board_chairs=_emails(role_holders(session, board.chair)),
                wscb_chairs=_emails(role_holders(session, wscb.chair)),
                coordinators=_emails(coordinators(session, c)),
                partners=partners,
                gates=gates,
            )

    async def _open(self, opening: Awaitable[case_flows.CaseSummary]) -> int | None:
        """A case flow run opens the case at its moment and returns (the members answer by
        command); the opening refused by the rules is part of the story."""
        try:
            summary = await opening
        except WctError:
            self.summary.commands_refused += 1
            return None
        return summary.case_id

    async def open_risks(self, n: int, now: datetime, cast: Cast) -> None:
        """16.1: an Executive member raises risks. One scores at the threshold and goes to the
        Board at once; one is escalated by the Executive's chair after a member's attempt is
        refused; one is reviewed and closed. The Board's chair assesses the escalated ones."""
        if not cast.executive_members or not cast.executive_chairs or not cast.board_chairs:
            return
        threshold = self.c.risk.escalation_threshold
        high = [(li, im) for li in range(1, 6) for im in range(1, 6) if li * im >= threshold]
        low = [(li, im) for li in range(1, 6) for im in range(1, 6) if li * im < threshold]
        themes = ("Agency staff turnover", "Placement sufficiency", "Data sharing gaps")
        for i, (theme, scores) in enumerate(zip(themes, (high, low, low), strict=True)):
            if not scores:
                continue
            likelihood, impact = self.rng.choice(scores)
            raiser, owner = self.rng.sample(cast.executive_members, 2)
            request = case_flows.RaiseRisk(
                title=f"{theme} (round {n + 1})",
                owner=owner,
                likelihood=likelihood,
                impact=impact,
                raised_by=raiser,
            )
            opened = await self._open(
                case_flows.risk_case(request=request, as_of=now, follow=False, timers=False)
            )
            if opened is None:
                continue
            self._risk_story(i, opened, now, raiser, cast)

    def _risk_story(self, i: int, risk_id: int, now: datetime, raiser: str, cast: Cast) -> None:
        chair = self.rng.choice(cast.executive_chairs)
        board_chair = self.rng.choice(cast.board_chairs)
        assess = instructions.AssessRisk(risk_id=risk_id, assessment="Accepted; mitigations noted.")
        if i == 0:  # escalated when raised: on the Board's agenda for formal assessment
            self._command(self._later(now, 10, 25), board_chair, assess, f"assess-risk-{risk_id}")
            return
        if i == 1:  # a member may not escalate (16.1: the Executive's chair does); the chair does
            escalate = instructions.EscalateRisk(risk_id=risk_id, reason="Needs the Board's view")
            when = self._later(now, 3, 8)
            self._command(when, raiser, escalate, f"escalate-risk-{risk_id}")
            self._command(when + timedelta(hours=1), chair, escalate, f"escalate-risk-{risk_id}")
            self._command(self._later(when, 10, 25), board_chair, assess, f"assess-{risk_id}")
            return
        review = instructions.ReviewRisk(risk_id=risk_id, likelihood=1, impact=2)
        when = self._later(now, 15, 30)
        self._command(when, raiser, review, f"review-risk-{risk_id}")
        close = instructions.CloseRisk(risk_id=risk_id)
        self._command(self._later(when, 5, 15), chair, close, f"close-risk-{risk_id}")

    async def open_dispute(self, n: int, now: datetime, cast: Cast) -> None:
        """18.2: two partners in dispute. Nobody records an outcome, so each stage's deadline
        passes and the dispute climbs to the Chief Executives, then to ADR, where a
        coordinator records the provider and the result."""
        if len(cast.partners) < 2:
            return
        first, second = self.rng.sample(sorted(cast.partners), 2)
        request = case_flows.OpenDispute(
            title=f"Information sharing at the front door (round {n + 1})",
            parties=[first, second],
            opened_by=self.rng.choice(cast.partners[first]),
        )
        dispute_id = await self._open(
            case_flows.dispute_case(request=request, as_of=now, follow=False, timers=False)
        )
        if dispute_id is None or not cast.coordinators:
            return
        adr_opens = local_day(now)  # the final stage opens when every stage before it has run out
        for stage in self.c.disputes.stages[:-1]:
            adr_opens = stage_deadline(self.c, stage.name, adr_opens)
        result = instructions.RecordAdr(
            dispute_id=dispute_id,
            provider="Centre for Effective Dispute Resolution",
            resolved=self.rng.random() < 0.7,
            note="Mediation held.",
        )
        when = self._later(at_nine(adr_opens), 10, 30)
        self._command(when, self.rng.choice(cast.coordinators), result, f"adr-{dispute_id}")

    async def open_call_to_account(self, n: int, now: datetime, cast: Cast) -> None:
        """11.5.1: the WSCB's chair calls a partner to account; the partner agrees the proposed
        deadline; the reminders come 10, 5 and 1 working days before it; nothing arrives by
        then, so the overdue step escalates; the response comes late, and the WSCB accepts it."""
        if not cast.partners or not cast.wscb_chairs:
            return
        partner = self.rng.choice(sorted(cast.partners))
        bounds = self.c.call_to_account
        days = min(max(bounds.min_deadline, 15), bounds.max_deadline)
        chair = self.rng.choice(cast.wscb_chairs)
        request = case_flows.CallToAccountRequest(
            organisation=partner,
            evidence=f"Section 11 audit: strategy meetings missed (round {n + 1})",
            proposed_deadline=add_working_days(local_day(now), days),
            opened_by=chair,
        )
        case_id = await self._open(
            case_flows.call_to_account_case(request=request, as_of=now, follow=False, timers=False)
        )
        if case_id is None:
            return
        deadline = request.proposed_deadline
        answerer = self.rng.choice(cast.partners[partner])
        agree = instructions.AnswerDeadline(case_id=case_id, accept=True)
        self._command(self._later(now, 1, 3), answerer, agree, f"agree-{case_id}")
        respond = instructions.RespondToCall(case_id=case_id, response="Action plan attached.")
        late = self._later(at_nine(deadline), 2, 6)
        self._command(late, answerer, respond, f"respond-{case_id}")
        accept = instructions.JudgeResponse(case_id=case_id, accept=True, note="Accepted.")
        self._command(self._later(late, 2, 5), chair, accept, f"conclude-{case_id}")

    async def open_approvals(self, n: int, now: datetime, cast: Cast) -> None:
        """11.3.5 / 21.1.1: a member of the proposing body asks each gate's approving body; its
        chair grants or refuses (alternating by round). Another body's chair tries first and is
        refused by the rules."""
        for i, gate in enumerate(cast.gates):
            if not gate.proposers or not gate.approvers:
                continue
            request = case_flows.RequestApproval(
                gate=gate.gate,
                title=f"Round {n + 1} proposal {i + 1} for approval",
                requested_by=self.rng.choice(gate.proposers),
            )
            request_id = await self._open(
                case_flows.approval_case(request=request, as_of=now, follow=False, timers=False)
            )
            if request_id is None:
                continue
            grant = (n + i) % 2 == 0
            decide = instructions.DecideApproval(
                request_id=request_id, approve=grant, note="Agreed." if grant else "Not now."
            )
            when = self._later(now, 5, 20)
            others = [
                a for g in cast.gates if g is not gate for a in g.approvers
            ]  # another body's chair may not decide for this one
            if others:
                self._command(when, self.rng.choice(others), decide, f"decide-{request_id}")
            chair = self.rng.choice(gate.approvers)
            self._command(when + timedelta(hours=1), chair, decide, f"decide-{request_id}")

    def _command(self, when: datetime, who: str, command: Command[object], label: str) -> None:
        async def run(now: datetime) -> None:
            self.run_command(now, who, command)

        self.at(when, label, run)

    # --- delivery, once a day --------------------------------------------------------------

    def schedule_deliveries(self) -> None:
        day = self.start.date()
        while day <= self.end.date():
            at_six = datetime.combine(day, time(18, 0), tzinfo=self.start.tzinfo)
            self.at(at_six, "deliver", self._deliver)
            day += timedelta(days=1)

    async def _deliver(self, now: datetime) -> None:
        if self.dispatcher is None:
            self.dispatcher = Dispatcher(
                engine(), clock=self.delivery_clock, settings=self.delivery, jitter=lambda: 0.0
            )
        self.delivery_clock.set(now)
        result = self.dispatcher.drain(still_clock=True)
        self.summary.messages_delivered += result.sent
        self.summary.messages_failed += result.failed + result.dead

    # --- the run ---------------------------------------------------------------------------

    async def run(self) -> Summary:
        # its bank holidays and its local time; one Prefect client for its hundreds of runs
        with in_partnership(self.c.partnership):
            try:
                async with one_client():
                    return await self._run()
            finally:
                if self.dispatcher is not None:
                    self.dispatcher.close()

    async def _run(self) -> Summary:
        self.schedule_cycles()
        self.schedule_cases()
        self.schedule_deliveries()
        with tags(self.summary.prefect_tag):
            while self.queue:
                event = heapq.heappop(self.queue)
                await event.action(event.when)
                self.queue_new_steps()
                if self.progress is not None:
                    self.progress(event.when, self.summary)
        await self._deliver(self.end)
        self.count()
        async with get_client() as client:
            self.summary.flow_runs = await client.count_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[self.summary.prefect_tag])
                )
            )
        return self.summary

    def count(self) -> None:
        s = self.summary
        with Session(engine()) as session:

            def audits(action: str) -> int:
                return session.exec(
                    select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
                ).one()

            s.reports_requested = audits("report.requested")
            s.reports_overdue = audits("report.overdue")
            s.reviews_overdue = audits("review.overdue")
            s.minutes_chased = audits("meeting.minutes_overdue")
            s.reviews_completed = session.exec(
                select(func.count())
                .select_from(Review)
                .where(Review.status == reviews.ReviewStatus.COMPLETED)
            ).one()
            s.reports_submitted = session.exec(
                select(func.count())
                .select_from(Report)
                .where(col(Report.status).in_(reports.RECEIVED))
            ).one()
            s.meetings_held = session.exec(
                select(func.count())
                .select_from(Meeting)
                .where(
                    col(Meeting.status).in_(
                        (
                            meetings.MeetingStatus.HELD,
                            meetings.MeetingStatus.MINUTES_DRAFTED,
                            meetings.MeetingStatus.MINUTES_APPROVED,
                        )
                    ),
                    col(Meeting.starts_at) >= self.start,
                    col(Meeting.starts_at) <= self.end,
                )
            ).one()
            s.cases = case_counts(session, audits, final=self.c.disputes.stages[-1].name)
            s.bodies = self.body_counts(session)
        s.mail_folder = str(self.delivery.mail_dir)

    def body_counts(self, session: Session) -> dict[str, dict[str, int]]:
        """What happened to each body's meetings, the reports it owes and the reviews it owns,
        from the audit trail and the tables (the per-body parts of the totals)."""
        held = (
            meetings.MeetingStatus.HELD,
            meetings.MeetingStatus.MINUTES_DRAFTED,
            meetings.MeetingStatus.MINUTES_APPROVED,
        )
        counts = {
            body.id: {
                "meetings_planned": self.planned.get(body.id, 0),
                "meetings_held": 0,
                "minutes_chased": 0,
                "reports_requested": 0,
                "reports_submitted": 0,
                "reports_overdue": 0,
                "reviews_completed": 0,
                "reviews_overdue": 0,
            }
            for body in self.c.bodies
        }
        owner: dict[str, str] = {}  # audit subject -> the body it belongs to
        for meeting in session.exec(select(Meeting)):
            owner[f"meeting:{meeting.id}"] = meeting.body_id
            if meeting.status in held and self.start <= meeting.starts_at <= self.end:
                counts[meeting.body_id]["meetings_held"] += 1
        for report in session.exec(select(Report)):
            owner[f"report:{report.id}"] = report.from_body_id
            if report.status in reports.RECEIVED:
                counts[report.from_body_id]["reports_submitted"] += 1
        for review in session.exec(select(Review)):
            owner[f"review:{review.id}"] = review.owner_body_id
            if review.status == reviews.ReviewStatus.COMPLETED:
                counts[review.owner_body_id]["reviews_completed"] += 1
        audited = {
            "meeting.minutes_overdue": "minutes_chased",
            "report.requested": "reports_requested",
            "report.overdue": "reports_overdue",
            "review.overdue": "reviews_overdue",
        }
        rows = session.exec(
            select(AuditEvent.action, AuditEvent.subject, func.count())
            .where(col(AuditEvent.action).in_(audited))
            .group_by(col(AuditEvent.action), col(AuditEvent.subject))
        )
        for action, subject, n in rows:
            body = owner.get(subject)
            if body in counts:
                counts[body][audited[action]] += n
        return counts


def case_counts(
    session: Session, audits: Callable[[str], int], *, final: str
) -> dict[str, dict[str, int]]:
    """What happened to the cases, per kind, from the audit trail and the case tables; a
    dispute `reached_adr` when it reached the ladder's `final` stage."""

    def rows(query: Any) -> int:
        return int(session.exec(query).one())

    adr = final
    responses = session.exec(
        select(AuditEvent.before).where(AuditEvent.action == "account.responded")
    ).all()
    overdue = accountability.AccountStatus.OVERDUE
    late = sum(1 for before in responses if json.loads(before)["status"] == overdue)
    return {
        "risk": {
            "opened": audits("risk.raised"),
            "escalated": audits("risk.escalated"),
            "assessed": audits("risk.assessed"),
            "closed": audits("risk.closed"),
        },
        "dispute": {
            "opened": audits("dispute.opened"),
            "escalated": audits("dispute.escalated"),
            "reached_adr": rows(
                select(func.count(func.distinct(DisputeStageRecord.dispute_id))).where(
                    DisputeStageRecord.stage == adr
                )
            ),
            "closed": audits("dispute.closed"),
        },
        "call_to_account": {
            "opened": rows(
                select(func.count())
                .select_from(CallToAccount)
                .where(CallToAccount.kind == accountability.AccountKind.CALL_TO_ACCOUNT)
            ),
            "agreed": audits("account.deadline_agreed"),
            "reminders": rows(
                select(func.count())
                .select_from(Step)
                .where(
                    Step.kind == accountability.REMINDER_STEP.name,
                    Step.status == StepStatus.DONE,
                )
            ),
            "overdue": audits("account.overdue"),
            "answered_late": late,
            "accepted": audits("account.closed"),
        },
        "approval": {
            "requested": audits("approval.requested"),
            "granted": rows(
                select(func.count())
                .select_from(ApprovalRequest)
                .where(ApprovalRequest.status == approvals.ApprovalStatus.APPROVED)
            ),
            "refused": rows(
                select(func.count())
                .select_from(ApprovalRequest)
                .where(ApprovalRequest.status == approvals.ApprovalStatus.REFUSED)
            ),
        },
    }
