"""A late step knows it is late: what members receive when steps fire long after their time (a
first start, recovery after an outage), by the timer and by the sweep, for cycles and cases."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import meetings, reports, reviews
from models.audit import revision
from models.clock import FixedClock
from models.instructions import AnswerDeadline, OpenCallToAccount
from models.steps import GRACE, LatePolicy
from models.steps.engine import run_due, run_step
from models.steps.registry import KINDS
from models.tables import AgendaItem, AuditEvent, OutboxMessage, Person, Step
from notifications.contexts import validate_context
from notifications.render import render

from . import cases_support
from .cycles_support import london, populate, recipients, run, state, step_status

WSCB_DAY = date(2026, 11, 26)  # 11.2: the WSCB meets on the fourth Thursday, every two months
WSCB = "meeting:wscb:2026-11-26"
WSCB_MEMBERS = sorted(
    [
        "chair@wscb.example",
        "dcs@council.example",
        "lead@council.example",
        "nina@nhs.example",
        "pat@police.example",
    ]
)
COMMISSIONING = "review:commissioning-review:2026"
LATE_NOTICE = "This message is sent late: it was due on Thursday 19 November 2026 at 09:00."


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


@pytest.fixture
def case_people(loaded: Engine, clock: FixedClock) -> Engine:
    cases_support.populate(loaded, clock)
    return loaded


def plan_wscb(engine: Engine, clock: FixedClock) -> meetings.MeetingPlanned:
    return run(engine, clock, lambda uow: meetings.plan_meeting(uow, body_id="wscb", day=WSCB_DAY))


def per_recipient(engine: Engine, kind: str, key_prefix: str = "") -> Counter[str]:
    """How many messages of `kind` each person was sent."""
    return Counter(recipients(engine, kind, key_prefix))


def texts(engine: Engine, kind: str) -> list[str]:
    """The plain-text email body of every message of `kind`, rendered as it will be sent."""
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)).all()
    return [
        render(kind, validate_context(kind, json.loads(m.context)), channel="email").text
        for m in rows
    ]


def skips(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        events = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "step.skipped")
            .order_by(col(AuditEvent.seq))
        ).all()
    return [{"subject": e.subject, **json.loads(e.after)} for e in events]


def due_at(engine: Engine, key: str) -> datetime:
    with Session(engine) as session:
        return session.exec(select(Step.due_at).where(Step.key == key)).one()


# --- every kind has its rule -----------------------------------------------------------------


def test_every_step_kind_says_what_it_does_when_late() -> None:
    assert all(isinstance(kind.late, LatePolicy) for kind in KINDS.values())
    saying_late = {name for name, kind in KINDS.items() if kind.late.says_late}
    assert saying_late == {
        meetings.CALL_FOR_ITEMS,
        meetings.AGENDA,
        reports.REQUEST,
        reviews.NOTICE,
    }
    assert GRACE == timedelta(hours=1)


# --- meetings --------------------------------------------------------------------------------


def test_a_first_start_after_the_items_deadline_sends_no_call_for_items_and_a_late_notice(
    people: Engine, clock: FixedClock
) -> None:
    clock.set(london(2026, 11, 25, 10, 0))  # the fresh install of 2026-11-25
    planned = plan_wscb(people, clock)
    runs = {r.key: r.result for r in run_due(people, clock)}
    assert runs == {
        f"{WSCB}:call_for_items": "skipped",
        f"{WSCB}:items_deadline": "acted",
        f"{WSCB}:agenda": "acted",
        f"{WSCB}:reminder": "skipped",  # the late notice, sent after it was due, covers it
    }
    assert recipients(people, "call_for_items") == []
    assert recipients(people, "reminder") == []
    notices = per_recipient(people, "meeting_notice")
    assert sorted(notices) == WSCB_MEMBERS and set(notices.values()) == {1}
    assert per_recipient(people, "agenda") == notices
    for text in texts(people, "meeting_notice") + texts(people, "agenda"):
        assert text.count(LATE_NOTICE) == 1
    with Session(people) as session:
        composed = session.exec(
            select(AgendaItem.title).where(AgendaItem.meeting_id == planned.meeting_id)
        ).all()
    assert "Apologies for absence" in composed
    subject = f"meeting:{planned.meeting_id}"
    assert skips(people) == [
        {
            "subject": subject,
            "step": f"{WSCB}:call_for_items",
            "kind": meetings.CALL_FOR_ITEMS,
            "due_at": "2026-11-05T09:00:00+00:00",
            "reason": "the items deadline passed at 2026-11-16T17:00:00+00:00",
        },
        {
            "subject": subject,
            "step": f"{WSCB}:reminder",
            "kind": meetings.REMINDER,
            "due_at": "2026-11-25T09:00:00+00:00",
            "reason": f"{WSCB}:agenda went out at 2026-11-25T10:00:00+00:00, when this was due",
        },
    ]
    before = state(people)
    assert run_due(people, clock) == []
    assert run_step(people, clock, f"{WSCB}:call_for_items").result == "skipped"
    assert state(people) == before


def test_the_timer_applies_the_same_rule_in_whatever_order_late_timers_fire(
    people: Engine, clock: FixedClock
) -> None:
    clock.set(london(2026, 11, 25, 10, 0))
    plan_wscb(people, clock)
    # Catch-up after an outage: the reminder's timer fires before the notice's.
    assert run_step(people, clock, f"{WSCB}:reminder").result == "skipped"
    assert run_step(people, clock, f"{WSCB}:call_for_items").result == "skipped"
    assert run_step(people, clock, f"{WSCB}:agenda").result == "acted"
    assert run_step(people, clock, f"{WSCB}:items_deadline").result == "noop"  # composed already
    assert recipients(people, "call_for_items") == recipients(people, "reminder") == []
    assert sorted(per_recipient(people, "meeting_notice")) == WSCB_MEMBERS
    assert all(LATE_NOTICE in text for text in texts(people, "meeting_notice"))
    assert "is due and not yet sent" in skips(people)[0]["reason"]
    before = state(people)
    assert run_step(people, clock, f"{WSCB}:reminder").result == "skipped"
    assert state(people) == before


def test_a_meeting_that_has_started_gets_no_notice_and_no_reminder(
    people: Engine, clock: FixedClock
) -> None:
    plan_wscb(people, clock)
    clock.set(london(2026, 11, 26, 15, 0))  # the server was down until after the meeting began
    runs = {r.key: r.result for r in run_due(people, clock)}
    assert runs[f"{WSCB}:agenda"] == runs[f"{WSCB}:reminder"] == "skipped"
    assert runs[f"{WSCB}:items_deadline"] == "acted"
    assert {s["reason"] for s in skips(people) if s["kind"] != meetings.CALL_FOR_ITEMS} == {
        "the meeting started at 2026-11-26T13:30:00+00:00"
    }
    with Session(people) as session:
        assert session.exec(select(OutboxMessage)).all() == []


def test_steps_on_time_or_picked_up_by_the_sweep_are_unchanged(
    people: Engine, clock: FixedClock
) -> None:
    clock.set(london(2026, 11, 2, 9, 0))
    plan_wscb(people, clock)
    for step, late_by in [
        ("call_for_items", timedelta(0)),
        ("items_deadline", timedelta(0)),
        ("agenda", timedelta(minutes=15)),  # a sweep 15 minutes on is within the grace
        ("reminder", timedelta(0)),
    ]:
        clock.set(due_at(people, f"{WSCB}:{step}") + late_by)
        assert run_step(people, clock, f"{WSCB}:{step}").result == "acted"
    for kind in ("call_for_items", "meeting_notice", "agenda", "reminder"):
        assert recipients(people, kind) == WSCB_MEMBERS
        assert not any("sent late" in text for text in texts(people, kind))
    with Session(people) as session:
        contexts = session.exec(select(OutboxMessage.context)).all()
    assert not any("was_due" in json.loads(c) for c in contexts)
    assert skips(people) == []


def test_a_notice_found_past_the_grace_says_it_is_late(people: Engine, clock: FixedClock) -> None:
    clock.set(london(2026, 11, 2, 9, 0))
    plan_wscb(people, clock)
    clock.set(london(2026, 11, 19, 10, 1))  # an hour and a minute after it was due
    run_due(people, clock)
    assert all(LATE_NOTICE in text for text in texts(people, "meeting_notice"))
    assert recipients(people, "call_for_items") == []


def test_a_call_for_items_found_late_before_the_items_deadline_says_it_is_late(
    people: Engine, clock: FixedClock
) -> None:
    """Found eleven days late, with the items deadline at 17:00 today, the call still goes out
    (there is time to send items), and like a late notice it says when it was due."""
    clock.set(london(2026, 11, 2, 9, 0))
    plan_wscb(people, clock)
    clock.set(london(2026, 11, 16, 10, 0))  # the items deadline is 2026-11-16 at 17:00
    assert run_step(people, clock, f"{WSCB}:call_for_items").result == "acted"
    assert recipients(people, "call_for_items") == WSCB_MEMBERS
    late = "This message is sent late: it was due on Thursday 5 November 2026 at 09:00."
    assert all(text.count(late) == 1 for text in texts(people, "call_for_items"))
    assert skips(people) == []


# --- chasers: reports and reviews ------------------------------------------------------------


def test_the_commissioning_review_found_late_sends_the_notice_alone_saying_late(
    people: Engine, clock: FixedClock
) -> None:
    clock.set(london(2026, 11, 25, 10, 0))
    run(people, clock, lambda uow: reviews.open_review(uow, kind="commissioning-review", year=2026))
    runs = {r.key: r.result for r in run_due(people, clock)}
    assert runs == {
        f"{COMMISSIONING}:notice": "acted",
        f"{COMMISSIONING}:reminder-10": "skipped",  # a later reminder is due too
        f"{COMMISSIONING}:reminder-5": "skipped",  # the late notice covers it
    }
    assert per_recipient(people, "review_due") == Counter({"lead@council.example": 1})
    assert recipients(people, "reminder") == []
    (text,) = texts(people, "review_due")
    # Due on Friday 27 November 2026 (the 29th is a Sunday): the notice 20 working days before.
    assert "This message is sent late: it was due on Friday 30 October 2026 at 09:00." in text
    reasons = {s["step"]: s["reason"] for s in skips(people)}
    assert reasons[f"{COMMISSIONING}:reminder-10"] == (
        f"a later step of the same chain is due: {COMMISSIONING}:reminder-5 "
        "at 2026-11-20T09:00:00+00:00"
    )
    assert reasons[f"{COMMISSIONING}:reminder-5"].startswith(f"{COMMISSIONING}:notice went out")


def test_reminders_due_together_become_the_latest(people: Engine, clock: FixedClock) -> None:
    clock.set(london(2026, 10, 1, 9, 0))
    run(people, clock, lambda uow: reviews.open_review(uow, kind="commissioning-review", year=2026))
    clock.set(london(2026, 10, 30, 9, 0))
    assert run_step(people, clock, f"{COMMISSIONING}:notice").result == "acted"  # on time
    clock.set(london(2026, 11, 24, 9, 0))  # down from before reminder-10 until after reminder-5
    runs = {r.key: r.result for r in run_due(people, clock)}
    assert runs == {
        f"{COMMISSIONING}:reminder-10": "skipped",
        f"{COMMISSIONING}:reminder-5": "acted",
    }
    assert recipients(people, "reminder") == ["lead@council.example"]
    assert recipients(people, "reminder", f"{COMMISSIONING}:reminder-5:") == [
        "lead@council.example"
    ]
    assert not any("sent late" in text for text in texts(people, "review_due"))


def test_a_late_escalation_still_acts_and_the_late_request_comes_first(
    people: Engine, clock: FixedClock
) -> None:
    run(people, clock, lambda uow: reports.open_reports(uow, period="2027-Q1"))
    stem = "report:wscb-quarterly:wscb:2027-Q1"
    clock.set(due_at(people, f"{stem}:overdue") + timedelta(days=1))
    runs = {r.key: r.result for r in run_due(people, clock) if r.key.startswith(stem)}
    assert runs == {
        f"{stem}:request": "acted",
        f"{stem}:reminder-10": "skipped",
        f"{stem}:reminder-5": "skipped",
        f"{stem}:reminder-1": "skipped",
        f"{stem}:overdue": "acted",
    }
    assert per_recipient(people, "report_request", stem) == Counter({"chair@wscb.example": 1})
    assert recipients(people, "reminder", stem) == []
    assert "chair@wscb.example" in recipients(people, "report_overdue", stem)
    with Session(people) as session:
        report = reports.find_report(
            session, kind="wscb-quarterly", from_body="wscb", period="2027-Q1"
        )
        assert report.status == reports.OVERDUE_STATUS
    assert any("sent late" in text for text in texts(people, "report_request"))
    assert not any("sent late" in text for text in texts(people, "report_overdue"))
    assert step_status(people, f"{stem}:reminder-1") == "skipped"


# --- cases: calls to account (11.5.1) ------------------------------------------------------


def agreed_call(engine: Engine, clock: FixedClock) -> int:
    """A call to account to Merseyside Police, its response deadline agreed as 2027-01-15: the
    case's second change (r2), which names the steps it plans (`account:ID:r2:reminder-10`)."""
    call = OpenCallToAccount(
        organisation="merseyside-police",
        evidence="Section 11 audit: strategy meetings not attended",
        proposed_deadline=date(2027, 1, 15),
    )
    case = cases_support.act(engine, clock, "chair@wscb.example", call)
    agree = AnswerDeadline(case_id=case.case_id, accept=True)
    cases_support.act(engine, clock, "pat@police.example", agree)
    return case.case_id


def reminders_sent(engine: Engine, case_id: int) -> Counter[str]:
    """How many reminders of the call each person was sent (one message per reminder)."""
    with Session(engine) as session:
        rows = session.exec(
            select(Person.email)
            .join(OutboxMessage, col(OutboxMessage.person_id) == col(Person.id))
            .where(col(OutboxMessage.key).startswith(f"account:{case_id}:r2:reminder-"))
        ).all()
    return Counter(rows)


def acted(engine: Engine, clock: FixedClock) -> list[str]:
    """The sweep, as the keys of the steps it acted on."""
    return [r.key for r in run_due(engine, clock) if r.result == "acted"]


PARTNER = ["chief@police.example", "pat@police.example"]


@pytest.mark.parametrize("fired_by", ["timer", "sweep"])
def test_each_call_to_account_reminder_reaches_each_partner_member(
    case_people: Engine, clock: FixedClock, fired_by: str
) -> None:
    """11.5.1: the reminders at 10, 5 and 1 working days before the agreed deadline, each fired
    in its time (by its timer, or by the sweep that finds its timer lost), are three messages to
    each of the partner's people, not one: each is keyed by its own step."""
    case_id = agreed_call(case_people, clock)
    stem = f"account:{case_id}:r2:reminder-"
    for days in (10, 5, 1):
        key = f"{stem}{days}"
        clock.set(due_at(case_people, key) + timedelta(minutes=10))
        if fired_by == "timer":
            assert run_step(case_people, clock, key).result == "acted"
        else:
            assert acted(case_people, clock) == [key]
    assert reminders_sent(case_people, case_id) == Counter(dict.fromkeys(PARTNER, 3))
    with Session(case_people) as session:
        keys = session.exec(
            select(OutboxMessage.key).where(col(OutboxMessage.key).startswith(stem))
        ).all()
    per_step = Counter(key.removeprefix(stem).split(":")[0] for key in keys)
    assert per_step == {"10": 2, "5": 2, "1": 2}


def test_call_to_account_reminders_due_at_once_by_the_sweep_are_one_message(
    case_people: Engine, clock: FixedClock
) -> None:
    case_id = agreed_call(case_people, clock)
    with Session(case_people) as session:
        version = revision(session, f"account:{case_id}")
    clock.set(london(2027, 1, 14, 12, 0))  # reminders at 10, 5 and 1 working days all due
    stem = f"account:{case_id}:r2:reminder-"
    assert acted(case_people, clock) == [f"{stem}1"]
    assert reminders_sent(case_people, case_id) == Counter(dict.fromkeys(PARTNER, 1))
    assert {s["step"] for s in skips(case_people)} == {f"{stem}10", f"{stem}5"}
    assert all(s["subject"] == f"account:{case_id}" for s in skips(case_people))
    with Session(case_people) as session:  # a skip changes no case: its waiting form stays
        assert revision(session, f"account:{case_id}") == version
    before = cases_support.state(case_people)
    assert run_due(case_people, clock) == []
    assert cases_support.state(case_people) == before


def test_call_to_account_reminders_due_at_once_by_their_timers_are_one_message(
    case_people: Engine, clock: FixedClock
) -> None:
    """What the `step` flow does for each timer, in whatever order they fire late."""
    case_id = agreed_call(case_people, clock)
    clock.set(london(2027, 1, 14, 12, 0))
    stem = f"account:{case_id}:r2:reminder-"
    results = {days: run_step(case_people, clock, f"{stem}{days}").result for days in (10, 5, 1)}
    assert results == {10: "skipped", 5: "skipped", 1: "acted"}
    assert reminders_sent(case_people, case_id) == Counter(dict.fromkeys(PARTNER, 1))
    assert run_step(case_people, clock, f"{stem}10").result == "skipped"  # no longer pending


def test_a_late_overdue_call_to_account_escalates_and_its_reminders_stay_quiet(
    case_people: Engine, clock: FixedClock
) -> None:
    case_id = agreed_call(case_people, clock)
    clock.set(london(2027, 1, 20, 9, 0))  # after the agreed deadline: all reminders and overdue
    assert acted(case_people, clock) == [f"account:{case_id}:r2:overdue"]
    assert reminders_sent(case_people, case_id) == Counter()
    assert [k for k, _ in cases_support.messages(case_people, "call_to_account") if "overdue" in k]
    assert len(skips(case_people)) == 3
