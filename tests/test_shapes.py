"""Shapes as data (issue 13): a dispute ladder of any stages, reports in any months, review
features switched by flags, lead times and planning horizons from the constitution."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from deployments.serve import QUARTERLY_RULE, quarterly_rule, review_rule
from models import disputes, reports, reviews
from models.calendar import add_working_days
from models.cases import Form, awaiting
from models.clock import FixedClock
from models.constitution import Constitution, DisputePolicy, load_constitution
from models.errors import WctError
from models.instructions import (
    ChallengeReview,
    CompleteReview,
    OpenDispute,
    RecordAdr,
    RecordDisputeOutcome,
    SubmitReport,
)
from models.tables import Dispute, DisputeStageRecord, Report

from .cases_support import act, messages
from .cases_support import populate as populate_cases
from .conftest import DATA, Cli
from .cycles_support import fire, london, run
from .cycles_support import populate as populate_cycles

LADDER: list[dict[str, Any]] = [
    {"name": "talk", "days": 5, "notify": ["parties"]},
    {"name": "officers", "days": 7, "notify": ["coordinators"]},
    {"name": "chiefs", "days": 10, "notify": ["party-chief-executives"]},
    {
        "name": "panel",
        "days": 15,
        "notify": ["coordinators", "chief_executive"],
        "final": True,
    },
]
MONTHS = [2, 5, 8, 11]


def shire() -> Constitution:
    """Wirral's partnership (the test members fit it) with other numbering and shapes."""
    data = load_constitution().model_dump(mode="json")
    data["disputes"] = {"stages": LADDER}
    data["planning"] = {"meetings_ahead": 3}
    for spec in data["quarterly_reports"]:
        spec["months"] = MONTHS
    for review in data["reviews"]:
        review["clause"] = {"cypp-review": "9.1", "membership-review": "4.4"}.get(
            review["id"], review["clause"]
        )
        if review["id"] == "mou-review":  # cites Wirral's 7.2, but its flag says no
            review["clause"], review["challenge_window"] = "7.2", False
        if review["id"] == "commissioning-review":
            review["opens_before_days"] = 60
    return Constitution.model_validate(data)


@pytest.fixture(scope="module")
def wirral() -> Constitution:
    return shire()


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate_cases(loaded, clock)
    return loaded


@pytest.fixture
def members(loaded: Engine, clock: FixedClock) -> Engine:
    """The cycle tests' members: a chair for every reporting body."""
    populate_cycles(loaded, clock)
    return loaded


def told(engine: Engine, stage: str) -> Counter[str]:
    """How many dispute messages each person got for `stage`."""
    return Counter(email for key, email in messages(engine, "dispute_stage") if f":{stage}:" in key)


# --- the schema ----------------------------------------------------------------------------


def test_the_older_dispute_shape_loads_as_wirrals_three_stages() -> None:
    policy = DisputePolicy.model_validate({"informal": 5, "chief_executives": 6, "adr": 7})
    assert [(s.name, s.days, s.final) for s in policy.stages] == [
        ("informal", 5, False),
        ("chief_executives", 6, False),
        ("adr", 7, True),
    ]
    assert [s.name for s in DisputePolicy().stages] == ["informal", "chief_executives", "adr"]
    wirral = load_constitution()
    assert wirral.disputes == DisputePolicy()


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"name": "a", "days": 1, "notify": ["parties"]}], "at least 2"),
        (LADDER[:3], "the last stage, and only the last"),
        ([LADDER[0], LADDER[0], LADDER[3]], "unique"),
        ([{"name": "a", "days": 1, "notify": ["nobody"]}, LADDER[3]], "unknown audience"),
    ],
)
def test_a_bad_ladder_is_refused(stages: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DisputePolicy.model_validate({"stages": stages})


def test_review_flags_default_from_older_files_and_follow_the_file_when_given() -> None:
    wirral = {r.id: r for r in load_constitution().reviews}
    assert wirral["cypp-review"].challenge_window and not wirral["mou-review"].challenge_window
    assert wirral["membership-review"].representation_check
    assert all(r.opens_before_days == 45 for r in wirral.values())
    s = {r.id: r for r in shire().reviews}
    assert s["cypp-review"].challenge_window and s["membership-review"].representation_check
    assert not s["mou-review"].challenge_window


# --- a four-stage ladder with other names ----------------------------------------------------


def test_a_four_stage_ladder_runs_end_to_end(people: Engine, clock: FixedClock) -> None:
    opened = act(
        people,
        clock,
        "pat@police.example",
        OpenDispute(title="Shared records", parties=["merseyside-police", "nhs-wirral"]),
    )
    assert opened.stage == "talk"
    start = clock.now().date()
    assert opened.deadline == add_working_days(start, 5)
    # `parties`: each party's members with a Board seat (its chief executive among them).
    assert told(people, "talk") == Counter(
        {
            "pat@police.example": 1,
            "nina@nhs.example": 1,
            "chief@police.example": 1,
            "chief@nhs.example": 1,
        }
    )
    expected = {
        "officers": Counter({"coord@council.example": 1}),
        "chiefs": Counter({"chief@police.example": 1, "chief@nhs.example": 1}),
        "panel": Counter(
            {"coord@council.example": 1, "chief@police.example": 1, "chief@nhs.example": 1}
        ),
    }
    days = {s["name"]: s["days"] for s in LADDER}
    previous = "talk"
    for stage, recipients in expected.items():
        key = f"dispute:{opened.dispute_id}:{previous}:deadline"
        assert fire(people, clock, key) == "acted"  # no outcome by the deadline: up a stage
        with Session(people) as session:
            dispute = session.get(Dispute, opened.dispute_id)
            assert dispute is not None and dispute.stage == stage
            assert dispute.stage_deadline == add_working_days(clock.now().date(), days[stage])
            wait = awaiting(session, "dispute", opened.dispute_id)
        assert wait is not None
        assert wait.form == (Form.ADR_RESULT if stage == "panel" else Form.DISPUTE_OUTCOME)
        assert told(people, stage) == recipients, stage
        previous = stage
    with pytest.raises(WctError, match="provider"):
        act(
            people,
            clock,
            "pat@police.example",
            RecordDisputeOutcome(
                dispute_id=opened.dispute_id, stage="panel", resolved=True, note="x"
            ),
        )
    # The final stage's deadline chases the coordinators, once.
    assert fire(people, clock, f"dispute:{opened.dispute_id}:panel:deadline") == "acted"
    assert Counter(e for k, e in messages(people, "dispute_stage") if ":panel:overdue" in k) == (
        Counter({"coord@council.example": 1})
    )
    done = act(
        people,
        clock,
        "coord@council.example",
        RecordAdr(dispute_id=opened.dispute_id, provider="County panel", resolved=True, note="ok"),
    )
    assert (done.stage, done.outcome) == ("closed", "resolved_panel")
    with Session(people) as session:
        stages = session.exec(
            select(DisputeStageRecord.stage).where(
                DisputeStageRecord.dispute_id == opened.dispute_id
            )
        ).all()
        assert awaiting(session, "dispute", opened.dispute_id) is None
    assert list(stages) == ["talk", "officers", "chiefs", "panel"]


def test_a_party_answers_a_named_stage_and_the_ladder_climbs(
    people: Engine, clock: FixedClock
) -> None:
    opened = act(
        people,
        clock,
        "pat@police.example",
        OpenDispute(title="Referrals", parties=["merseyside-police", "nhs-wirral"]),
    )

    def answer(stage: str, resolved: bool) -> disputes.DisputeResult:
        return act(
            people,
            clock,
            "nina@nhs.example",
            RecordDisputeOutcome(
                dispute_id=opened.dispute_id, stage=stage, resolved=resolved, note="met"
            ),
        )

    assert answer("talk", False).stage == "officers"
    with pytest.raises(WctError, match="is at stage officers, not talk"):
        answer("talk", False)
    with pytest.raises(WctError, match="no dispute stage 'informal'"):
        answer("informal", True)
    assert answer("officers", False).stage == "chiefs"
    closed = answer("chiefs", True)
    assert (closed.stage, closed.outcome) == ("closed", "resolved_chiefs")


# --- reports in months 2, 5, 8 and 11 -------------------------------------------------------


def test_periods_in_any_months() -> None:
    assert reports.period_end("2027-P1", MONTHS) == date(2027, 2, 28)
    assert reports.period_end("2027-P4", MONTHS) == date(2027, 11, 30)
    assert reports.period_end("2027-Q4") == date(2027, 12, 31)
    assert reports.period_of(date(2027, 1, 10), MONTHS) == "2027-P1"
    assert reports.period_of(date(2027, 3, 1), MONTHS) == "2027-P2"
    assert reports.period_of(date(2027, 12, 1), MONTHS) == "2028-P1"
    assert reports.period_of(date(2027, 12, 1)) == "2027-Q4"
    with pytest.raises(WctError, match="not a period of these reports"):
        reports.period_end("2027-Q1", MONTHS)
    with pytest.raises(WctError, match="not a period of these reports"):
        reports.period_end("2027-P5", MONTHS)
    with pytest.raises(WctError, match="is not a quarter"):
        reports.period_end("2027-P1")
    assert reports.current_periods(shire(), date(2027, 4, 1)) == ["2027-P2"]
    assert reports.current_periods(load_constitution(), date(2027, 4, 1)) == ["2027-Q2"]


def test_reports_in_other_months_are_requested_reminded_escalated_and_submitted(
    members: Engine, clock: FixedClock
) -> None:
    people = members
    opened = run(people, clock, lambda uow: reports.open_reports(uow, period="2027-P1"))
    wscb = "report:wscb-quarterly:wscb:2027-P1"
    healthy = "report:strategy-group-performance:be-healthy:2027-P1"
    assert wscb in opened.created and healthy in opened.created
    due = add_working_days(date(2027, 2, 28), 15)
    with Session(people) as session:
        report = session.exec(select(Report).where(Report.period == "2027-P1")).first()
        assert report is not None and report.due_on == due
    with pytest.raises(WctError, match="not a period of these reports"):
        run(people, clock, lambda uow: reports.open_reports(uow, period="2027-Q1"))
    assert fire(people, clock, f"{wscb}:request") == "acted"
    assert messages(people, "report_request")
    assert fire(people, clock, f"{wscb}:reminder-10") == "acted"
    assert any(wscb in k for k, _ in messages(people, "reminder"))
    submitted = act(
        people,
        clock,
        "chair@wscb.example",
        SubmitReport(kind="wscb-quarterly", from_body="wscb", period="2027-P1", document="r.pdf"),
    )
    assert submitted.status == reports.ReportStatus.SUBMITTED
    assert fire(people, clock, f"{wscb}:overdue") == "settled"
    assert fire(people, clock, f"{healthy}:overdue") == "acted"  # not received: escalated
    with Session(people) as session:
        late = session.exec(
            select(Report).where(Report.kind == "strategy-group-performance")
        ).first()
        assert late is not None and late.status == reports.ReportStatus.OVERDUE
    assert any(healthy in k for k, _ in messages(people, "report_overdue"))


# --- review flags under other numbering ----------------------------------------------------


def test_review_flags_switch_the_features_under_other_numbering(
    members: Engine, clock: FixedClock
) -> None:
    people = members

    def open_review(kind: str) -> None:
        run(people, clock, lambda uow: reviews.open_review(uow, kind=kind, year=2027))

    for kind in ("cypp-review", "membership-review", "mou-review"):
        open_review(kind)
    clock.set(london(2027, 6, 1, 10, 0))
    cypp = act(
        people,
        clock,
        "dcs@council.example",
        CompleteReview(kind="cypp-review", year=2027, outcome="Done."),
    )
    assert cypp.status == reviews.PUBLISHED  # challenge_window under clause 9.1
    assert act(
        people,
        clock,
        "dcs@council.example",
        ChallengeReview(kind="cypp-review", year=2027, text="Thin."),
    )
    member = act(
        people,
        clock,
        "lead@council.example",
        CompleteReview(kind="membership-review", year=2027, outcome="Done."),
    )
    assert any("'merseyside-fire'" in gap for gap in member.representation_gaps)
    mou = act(
        people,
        clock,
        "lead@council.example",
        CompleteReview(kind="mou-review", year=2027, outcome="Done."),
    )
    assert mou.status == reviews.COMPLETED  # cites 7.2, but challenge_window: false
    with pytest.raises(WctError, match="not open to public challenge"):
        act(
            people,
            clock,
            "dcs@council.example",
            ChallengeReview(kind="mou-review", year=2027, text="x"),
        )


# --- lead times and horizons ---------------------------------------------------------------


def test_lead_times_and_report_schedules_come_from_the_constitution() -> None:
    assert quarterly_rule(load_constitution()) == QUARTERLY_RULE
    assert "BYMONTH=2,5,8,11;" in quarterly_rule(shire())
    # The simulation opens reports in the same months as the served schedule.
    assert reports.closing_months(load_constitution()) == [3, 6, 9, 12]
    assert reports.closing_months(shire()) == [2, 5, 8, 11]
    assert review_rule(11, 28, timedelta(days=60)).endswith("BYMONTH=9;BYMONTHDAY=29")
    assert review_rule(11, 28).endswith("BYMONTH=10;BYMONTHDAY=14")
    assert load_constitution().planning.meetings_ahead == 2
    assert shire().planning.meetings_ahead == 3


# --- from the command line -------------------------------------------------------------------


def test_the_cli_answers_named_stages_and_opens_periods_in_other_months(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "shire.yaml"
    path.write_text(yaml.safe_dump(shire().model_dump(mode="json")))
    assert cli("init", "--constitution", path).exit_code == 0
    assert cli("members", "import", DATA / "cycles-members.csv").exit_code == 0
    opened = cli(
        "dispute", "open", "--title", "Front door", "--party", "merseyside-police",
        "--party", "nhs-wirral", "--as", "coord@council.example",
    )  # fmt: skip
    assert opened.exit_code == 0 and "talk until" in opened.output, opened.output
    up = cli(
        "dispute", "outcome", "1", "--stage", "talk", "--unresolved", "--note", "No",
        "--as", "nina@nhs.example",
    )  # fmt: skip
    assert up.exit_code == 0 and "now officers" in up.output, up.output
    bad = cli(
        "dispute", "outcome", "1", "--stage", "informal", "--unresolved", "--note", "No",
        "--as", "nina@nhs.example",
    )  # fmt: skip
    assert bad.exit_code == 4 and "no dispute stage 'informal'" in bad.stderr
    assert cli("report", "open", "2027-P2").exit_code == 0
    wrong = cli("report", "open", "2027-Q2")
    assert wrong.exit_code == 2 and "not a period of these reports" in wrong.stderr
    submitted = cli(
        "report", "submit", "wscb-quarterly", "wscb", "2027-P2", "--document", "r.pdf",
        "--as", "chair@wscb.example",
    )  # fmt: skip
    assert submitted.exit_code == 0 and "2027-P2: submitted" in submitted.output
