"""Event-driven cases in the domain (no Prefect): every path of every ladder, and bad input."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models import accountability, approvals, disputes, risks
from models.accountability import AccountStatus
from models.cases import list_cases
from models.clock import FixedClock
from models.disputes import DisputeStage
from models.errors import WctError
from models.instructions import (
    AnswerDeadline,
    AssessRisk,
    DecideApproval,
    DeclareDisputeInterest,
    EscalateRisk,
    JudgeResponse,
    OpenCallToAccount,
    OpenDispute,
    RaiseRisk,
    RecordAdr,
    RecordDisputeOutcome,
    RequestApproval,
    RespondToCall,
    ReviewRisk,
)
from models.permissions import NotPermitted, UnknownMember
from models.steps import due_steps
from models.tables import Dispute, DisputeStageRecord, Risk

from .cases_support import act, messages, populate, run, state


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


# --- 16.1 risks -----------------------------------------------------------------------------


def raise_risk(engine: Engine, clock: FixedClock, who: str, **kw: object) -> risks.RiskResult:
    args: dict[str, object] = {"title": "Placement sufficiency", "owner": "sally@council.example"}
    args.update(kw)
    return act(engine, clock, who, RaiseRisk(**args))  # type: ignore[arg-type]


def test_a_risk_below_the_threshold_stays_with_the_executive(
    people: Engine, clock: FixedClock
) -> None:
    r = raise_risk(people, clock, "dcs@council.example", likelihood=3, impact=4)
    assert (r.status, r.score, r.created) == ("managed", 12, True)
    assert messages(people, "risk_escalated") == []


def test_a_risk_at_the_threshold_goes_to_the_board_chair(people: Engine, clock: FixedClock) -> None:
    r = raise_risk(people, clock, "sally@council.example", likelihood=3, impact=5)
    assert r.status == "escalated"
    assert [email for _, email in messages(people, "risk_escalated")] == ["lead@council.example"]
    with Session(people) as session:
        assert [x.id for x in risks.risks_for_board(session)] == [r.risk_id]


def test_the_same_risk_raised_twice_is_one_risk(people: Engine, clock: FixedClock) -> None:
    first = raise_risk(people, clock, "dcs@council.example", likelihood=5, impact=5)
    before = state(people)
    second = raise_risk(
        people,
        clock,
        "dcs@council.example",
        title=" placement  SUFFICIENCY",
        likelihood=5,
        impact=5,
    )
    assert (second.risk_id, second.created) == (first.risk_id, False)
    assert state(people) == before


@pytest.mark.parametrize(
    ("who", "kw", "error", "words"),
    [
        ("dcs@council.example", {"likelihood": 7, "impact": 2}, WctError, "likelihood must be"),
        ("dcs@council.example", {"likelihood": 2, "impact": 0}, WctError, "impact must be"),
        (
            "dcs@council.example",
            {"likelihood": 2, "impact": 2, "owner": "x@y.z"},
            UnknownMember,
            "x@y.z",
        ),
        (
            "dcs@council.example",
            {"likelihood": 2, "impact": 2, "title": "a\nb"},
            WctError,
            "control",
        ),
        ("fran@community.example", {"likelihood": 2, "impact": 2}, NotPermitted, "risk.raise"),
    ],
)
def test_bad_risk_input_is_refused_and_changes_nothing(
    people: Engine,
    clock: FixedClock,
    who: str,
    kw: dict[str, object],
    error: type[Exception],
    words: str,
) -> None:
    before = state(people)
    with pytest.raises(error, match=words):
        raise_risk(people, clock, who, **kw)
    assert state(people) == before


def test_review_that_crosses_the_threshold_escalates_then_the_board_assesses(
    people: Engine, clock: FixedClock
) -> None:
    r = raise_risk(people, clock, "dcs@council.example", likelihood=2, impact=2)
    dee, lee = "dcs@council.example", "lead@council.example"
    reviewed = act(people, clock, dee, ReviewRisk(risk_id=r.risk_id, likelihood=4, impact=4))
    assert reviewed.status == "escalated"
    with pytest.raises(NotPermitted):
        act(people, clock, dee, AssessRisk(risk_id=r.risk_id, assessment="ok"))
    done = act(people, clock, lee, AssessRisk(risk_id=r.risk_id, assessment="Accepted; monitor."))
    assert done.status == "assessed"
    with pytest.raises(WctError, match="only an escalated risk"):
        act(people, clock, lee, AssessRisk(risk_id=r.risk_id, assessment="x"))


def test_the_executive_may_escalate_by_decision(people: Engine, clock: FixedClock) -> None:
    r = raise_risk(people, clock, "dcs@council.example", likelihood=1, impact=2)
    sally = "sally@council.example"  # a member, not the chair
    with pytest.raises(NotPermitted, match="risk.escalate"):
        act(people, clock, sally, EscalateRisk(risk_id=r.risk_id, reason="x"))
    out = act(
        people, clock, "dcs@council.example", EscalateRisk(risk_id=r.risk_id, reason="Ofsted")
    )
    assert out.status == "escalated"


def test_an_unreviewed_risk_is_chased_once(people: Engine, clock: FixedClock) -> None:
    r = raise_risk(people, clock, "dcs@council.example", likelihood=2, impact=2)
    assert not run(people, clock, lambda uow: risks.chase_review(uow, risk_id=r.risk_id))
    clock.advance(timedelta(days=61))
    assert run(people, clock, lambda uow: risks.chase_review(uow, risk_id=r.risk_id))
    assert not run(people, clock, lambda uow: risks.chase_review(uow, risk_id=r.risk_id))
    chased = {email for _, email in messages(people, "risk_review_overdue")}
    assert chased == {"sally@council.example", "dcs@council.example"}


# --- 18.2 disputes --------------------------------------------------------------------------


def open_dispute(
    engine: Engine, clock: FixedClock, who: str = "pat@police.example"
) -> disputes.DisputeResult:
    return act(
        engine,
        clock,
        who,
        OpenDispute(
            title="Information sharing at the front door",
            parties=["merseyside-police", "nhs-wirral"],
        ),
    )


def outcome(
    engine: Engine,
    clock: FixedClock,
    dispute_id: int,
    stage: DisputeStage,
    resolved: bool,
    who: str,
) -> disputes.DisputeResult:
    return act(
        engine,
        clock,
        who,
        RecordDisputeOutcome(dispute_id=dispute_id, stage=stage, resolved=resolved, note="met"),
    )


def test_resolved_informally_in_time(people: Engine, clock: FixedClock) -> None:
    d = open_dispute(people, clock)
    assert d.stage == DisputeStage.INFORMAL and d.deadline == date(2026, 12, 21)
    closed = outcome(people, clock, d.dispute_id, DisputeStage.INFORMAL, True, "nina@nhs.example")
    assert (closed.stage, closed.outcome) == (DisputeStage.CLOSED, "resolved_informal")
    clock.advance(timedelta(days=60))
    assert not run(
        people,
        clock,
        lambda uow: disputes.deadline_passed(
            uow, dispute_id=d.dispute_id, stage=DisputeStage.INFORMAL
        ),
    )
    with pytest.raises(WctError, match="closed"):
        outcome(people, clock, d.dispute_id, DisputeStage.INFORMAL, True, "nina@nhs.example")


def test_unresolved_goes_to_the_chief_executives_then_adr(
    people: Engine, clock: FixedClock
) -> None:
    d = open_dispute(people, clock)
    up = outcome(people, clock, d.dispute_id, DisputeStage.INFORMAL, False, "pat@police.example")
    assert up.stage == DisputeStage.CHIEF_EXECUTIVES
    told = {email for _, email in messages(people, "dispute_stage") if ":chief_executives:" in _}
    assert told == {"chief@police.example", "chief@nhs.example"}
    adr = outcome(
        people, clock, d.dispute_id, DisputeStage.CHIEF_EXECUTIVES, False, "chief@nhs.example"
    )
    assert adr.stage == DisputeStage.ADR
    with pytest.raises(WctError, match="provider"):
        outcome(people, clock, d.dispute_id, DisputeStage.ADR, True, "pat@police.example")
    done = act(
        people,
        clock,
        "coord@council.example",
        RecordAdr(dispute_id=d.dispute_id, provider="CEDR", resolved=True, note="mediated"),
    )
    assert (done.stage, done.outcome) == (DisputeStage.CLOSED, "resolved_adr")
    with Session(people) as session:
        stages = session.exec(
            select(DisputeStageRecord.stage, DisputeStageRecord.outcome).where(
                DisputeStageRecord.dispute_id == d.dispute_id
            )
        ).all()
    assert [tuple(s) for s in stages] == [
        ("informal", "unresolved"),
        ("chief_executives", "unresolved"),
        ("adr", "resolved_adr"),
    ]


def test_never_answered_escalates_by_itself_once(people: Engine, clock: FixedClock) -> None:
    d = open_dispute(people, clock)

    def passed() -> bool:
        return run(
            people,
            clock,
            lambda uow: disputes.deadline_passed(
                uow, dispute_id=d.dispute_id, stage=DisputeStage.INFORMAL
            ),
        )

    assert not passed()  # not yet due
    clock.set(clock.now() + timedelta(days=30))
    with Session(people) as session:
        due = [
            s.key for s in due_steps(session, now=clock.now(), prefix=f"dispute:{d.dispute_id}:")
        ]
    assert due == [f"dispute:{d.dispute_id}:informal:deadline"]
    assert passed()
    assert not passed()  # the same timer firing twice escalates once
    with Session(people) as session:
        dispute = session.get(Dispute, d.dispute_id)
        assert dispute is not None and dispute.stage == "chief_executives"
        assert due_steps(session, now=clock.now(), prefix=f"dispute:{d.dispute_id}:") == []


def test_answered_late_after_escalation_is_refused(people: Engine, clock: FixedClock) -> None:
    d = open_dispute(people, clock)
    clock.advance(timedelta(days=30))
    run(
        people,
        clock,
        lambda uow: disputes.deadline_passed(
            uow, dispute_id=d.dispute_id, stage=DisputeStage.INFORMAL
        ),
    )
    before = state(people)
    with pytest.raises(WctError, match="at stage chief_executives, not informal"):
        outcome(people, clock, d.dispute_id, DisputeStage.INFORMAL, True, "pat@police.example")
    assert state(people) == before


def test_only_a_party_records_an_outcome(people: Engine, clock: FixedClock) -> None:
    d = open_dispute(people, clock)
    before = state(people)
    with pytest.raises(NotPermitted, match="dispute.outcome"):
        outcome(people, clock, d.dispute_id, DisputeStage.INFORMAL, True, "coord@council.example")
    assert state(people) == before


@pytest.mark.parametrize(
    ("parties", "words"),
    [
        (["merseyside-police", "atlantis"], "unknown organisation"),
        (["nhs-wirral", "nhs-wirral"], "two different"),
    ],
)
def test_bad_dispute_input(
    people: Engine, clock: FixedClock, parties: list[str], words: str
) -> None:
    before = state(people)
    with pytest.raises(WctError, match=words):
        act(people, clock, "coord@council.example", OpenDispute(title="x", parties=parties))
    assert state(people) == before


def test_the_same_dispute_twice_is_one_case(people: Engine, clock: FixedClock) -> None:
    first = open_dispute(people, clock)
    before = state(people)
    again = open_dispute(people, clock, who="nina@nhs.example")
    assert (again.dispute_id, again.created) == (first.dispute_id, False)
    assert state(people) == before


def test_a_declaration_of_interest_attaches_to_the_dispute(
    people: Engine, clock: FixedClock
) -> None:
    d = open_dispute(people, clock)
    n = act(
        people,
        clock,
        "nina@nhs.example",
        DeclareDisputeInterest(dispute_id=d.dispute_id, nature="Spouse at police"),
    )
    assert n > 0


# --- 11.5.1 calls to account ----------------------------------------------------------------


def open_call(
    engine: Engine, clock: FixedClock, deadline: date, who: str = "chair@wscb.example"
) -> accountability.AccountResult:
    return act(
        engine,
        clock,
        who,
        OpenCallToAccount(
            organisation="merseyside-police",
            evidence="Section 11 audit: strategy meetings not attended",
            proposed_deadline=deadline,
        ),
    )


def answer(
    engine: Engine,
    clock: FixedClock,
    case_id: int,
    who: str,
    *,
    accept: bool,
    counter: date | None = None,
) -> accountability.AccountResult:
    return act(engine, clock, who, AnswerDeadline(case_id=case_id, accept=accept, counter=counter))


@pytest.mark.parametrize(
    ("deadline", "words"),
    [
        (date(2026, 11, 20), "not in the future"),
        (date(2026, 11, 27), "4 working days away; the constitution allows 10 to 60"),
        (date(2027, 6, 1), "allows 10 to 60"),
    ],
)
def test_deadline_outside_the_bounds_is_refused(
    people: Engine, clock: FixedClock, deadline: date, words: str
) -> None:
    before = state(people)
    with pytest.raises(WctError, match=words):
        open_call(people, clock, deadline)
    assert state(people) == before


def test_only_the_wscb_chair_calls_to_account(people: Engine, clock: FixedClock) -> None:
    with pytest.raises(NotPermitted, match="account.open"):
        open_call(people, clock, date(2027, 1, 15), who="lead@council.example")


def test_agreed_in_time_answered_and_accepted(people: Engine, clock: FixedClock) -> None:
    case = open_call(people, clock, date(2027, 1, 15))
    assert (case.status, case.waiting_on) == (AccountStatus.NEGOTIATING, "partner")
    with pytest.raises(NotPermitted, match="account.agree_for_partner"):
        answer(people, clock, case.case_id, "chair@wscb.example", accept=True)  # its own proposal
    countered = answer(
        people, clock, case.case_id, "pat@police.example", accept=False, counter=date(2027, 1, 29)
    )
    assert (countered.waiting_on, countered.proposed_deadline) == ("wscb", date(2027, 1, 29))
    agreed = answer(people, clock, case.case_id, "chair@wscb.example", accept=True)
    assert (agreed.status, agreed.agreed_deadline) == (
        AccountStatus.AWAITING_RESPONSE,
        date(2027, 1, 29),
    )
    with pytest.raises(WctError, match="no longer open to proposals"):
        answer(
            people,
            clock,
            case.case_id,
            "pat@police.example",
            accept=False,
            counter=date(2027, 2, 5),
        )
    with Session(people) as session:
        reminders = [
            s.key
            for s in due_steps(
                session, now=clock.now() + timedelta(days=120), prefix=f"account:{case.case_id}:"
            )
        ]
    assert len([k for k in reminders if ":reminder-" in k]) == 3 and any(
        k.endswith(":overdue") for k in reminders
    )
    responded = act(
        people,
        clock,
        "chief@police.example",
        RespondToCall(case_id=case.case_id, response="Action plan attached."),
    )
    assert responded.waiting_on == "wscb"
    clock.advance(timedelta(days=90))
    assert not run(
        people, clock, lambda uow: accountability.deadline_passed(uow, case_id=case.case_id)
    )
    closed = act(
        people,
        clock,
        "chair@wscb.example",
        JudgeResponse(case_id=case.case_id, accept=True, note="Satisfied"),
    )
    assert closed.status is AccountStatus.CLOSED
    with pytest.raises(WctError, match="no response is awaited"):
        act(
            people,
            clock,
            "pat@police.example",
            RespondToCall(case_id=case.case_id, response="again"),
        )


def test_never_answered_goes_overdue_to_both_chairs_once(people: Engine, clock: FixedClock) -> None:
    case = open_call(people, clock, date(2027, 1, 15))
    answer(people, clock, case.case_id, "pat@police.example", accept=True)
    clock.set(clock.now().replace(year=2027, month=1, day=16))
    fired = [
        run(people, clock, lambda uow: accountability.deadline_passed(uow, case_id=case.case_id))
        for _ in range(2)
    ]
    assert fired == [True, False]
    told = {email for key, email in messages(people, "call_to_account") if ":overdue-" in key}
    assert told == {"lead@council.example", "chair@wscb.example"}
    late = act(
        people,
        clock,
        "pat@police.example",
        RespondToCall(case_id=case.case_id, response="Late plan"),
    )
    assert late.status is AccountStatus.RESPONDED


def test_stalemate_escalates_once_and_reopen_restarts(people: Engine, clock: FixedClock) -> None:
    case = open_call(people, clock, date(2027, 1, 15))
    clock.advance(timedelta(days=30))
    fired = [
        run(people, clock, lambda uow: accountability.stalemate(uow, case_id=case.case_id))
        for _ in range(2)
    ]
    assert fired == [True, False]
    answer(people, clock, case.case_id, "pat@police.example", accept=True)
    act(people, clock, "pat@police.example", RespondToCall(case_id=case.case_id, response="Plan"))
    reopened = act(
        people,
        clock,
        "chair@wscb.example",
        JudgeResponse(
            case_id=case.case_id, accept=False, note="Not enough", new_deadline=date(2027, 2, 12)
        ),
    )
    assert (reopened.status, reopened.waiting_on) == (AccountStatus.NEGOTIATING, "partner")


# --- 11.3.5 and 21.1.1 approvals ------------------------------------------------------------


def test_commissioning_needs_the_wscb_before_the_board(people: Engine, clock: FixedClock) -> None:
    req = act(
        people,
        clock,
        "jack@council.example",
        RequestApproval(gate="safeguarding-commissioning", title="Parenting support contract"),
    )
    assert (req.status, req.approver_body) == ("waiting", "wscb")
    with Session(people) as session:
        assert [r.title for r in approvals.waiting_for(session, "wscb")] == [
            "Parenting support contract"
        ]
    with pytest.raises(NotPermitted):  # the Board's chair does not decide for the WSCB
        act(
            people,
            clock,
            "lead@council.example",
            DecideApproval(request_id=req.request_id, approve=True, note="x"),
        )
    ok = act(
        people,
        clock,
        "chair@wscb.example",
        DecideApproval(request_id=req.request_id, approve=True, note="Agreed"),
    )
    assert ok.status == "approved"
    with pytest.raises(WctError, match="already approved"):
        act(
            people,
            clock,
            "chair@wscb.example",
            DecideApproval(request_id=req.request_id, approve=False, note="x"),
        )


def test_unknown_gate_and_wrong_proposer(people: Engine, clock: FixedClock) -> None:
    with pytest.raises(WctError, match="unknown approval gate 'nope'"):
        act(people, clock, "jack@council.example", RequestApproval(gate="nope", title="x"))
    with pytest.raises(NotPermitted):
        act(
            people,
            clock,
            "fran@community.example",
            RequestApproval(gate="strategic-development", title="x"),
        )


def test_cases_list_shows_stage_waiting_and_until(people: Engine, clock: FixedClock) -> None:
    raise_risk(people, clock, "dcs@council.example", likelihood=5, impact=5)
    open_dispute(people, clock)
    open_call(people, clock, date(2027, 1, 15))
    with Session(people) as session:
        views = {v.kind: v for v in list_cases(session, only_open=True)}
        assert session.exec(select(Risk)).one().status == "escalated"
    assert views["dispute"].stage == "informal" and views["dispute"].until == "2026-12-21"
    assert views["call_to_account"].waiting_on == "partner"
    assert views["risk"].waiting_on == "board"


def test_the_sweep_acts_on_every_due_case_step_once(people: Engine, clock: FixedClock) -> None:
    from models.steps.engine import run_due

    def acted_on() -> list[str]:
        return [r.key for r in run_due(people, clock) if r.result == "acted"]

    d = open_dispute(people, clock)
    c = open_call(people, clock, date(2027, 1, 15))
    raise_risk(people, clock, "dcs@council.example", likelihood=2, impact=2)
    assert run_due(people, clock) == []  # nothing due yet
    clock.advance(timedelta(days=45))
    acted = acted_on()
    assert f"dispute:{d.dispute_id}:informal:deadline" in acted
    assert f"account:{c.case_id}:r1:stalemate" in acted  # planned by the case's first change
    before = state(people)
    assert run_due(people, clock) == []  # a second sweep finds nothing left to do
    assert state(people) == before
    clock.advance(timedelta(days=60))  # the Chief Executives' deadline and the risk review
    later = acted_on()
    assert f"dispute:{d.dispute_id}:chief_executives:deadline" in later
    assert any(k.startswith("risk:") for k in later)
