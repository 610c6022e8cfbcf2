"""The one way in (models/service.py): who acts, whether the constitution lets them, one unit of
work, the real actor in every audit event, and the events to relay."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models import reviews
from models.clock import FixedClock
from models.constitution import (
    DEFAULT_GRANTS,
    SIMPLE_GRANTS,
    Action,
    Constitution,
    RoleKind,
    default_constitution_path,
    parse_constitution,
    reference_problems,
)
from models.errors import ConstitutionInvalid, InvalidInput, NotFound
from models.instructions import (
    ChallengeReview,
    CompleteReview,
    LoadConstitution,
    OpenReports,
    OpenReview,
    PlanMeeting,
    SendApologies,
    SubmitItem,
    SubmitReport,
)
from models.permissions import (
    OPERATOR,
    SYSTEM_CYCLE,
    TIMER,
    Actor,
    NotPermitted,
    Outsider,
    Scope,
    System,
    UnknownMember,
    allowed,
)
from models.service import execute
from models.tables import AuditEvent, OutboxMessage, Person, Report

from .cases_support import act, state
from .cycles_support import london, populate, recipients

HEALTHY = "report:strategy-group-performance:be-healthy:2027-Q1"


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def pseudonym(engine: Engine, email: str) -> str:
    with Session(engine) as session:
        return session.exec(select(Person.pseudonym).where(Person.email == email)).one()


def audit_actors(engine: Engine, action: str) -> list[str]:
    with Session(engine) as session:
        rows = session.exec(
            select(AuditEvent.actor)
            .where(AuditEvent.action == action)
            .order_by(col(AuditEvent.seq))
        ).all()
    return list(rows)


def healthy_report(engine: Engine, clock: FixedClock) -> SubmitReport:
    act(engine, clock, OPERATOR, OpenReports(period="2027-Q1"))
    return SubmitReport(
        kind="strategy-group-performance",
        from_body="be-healthy",
        period="2027-Q1",
        document="https://x.example/q1.pdf",
    )


# --- the constitution says who may: every action, for every partnership ----------------------


def test_every_action_has_a_grant_in_the_wirral_constitution_and_a_default() -> None:
    wirral = parse_constitution(default_constitution_path().read_text())
    assert set(wirral.permissions) == set(Action)
    assert set(DEFAULT_GRANTS) == set(Action)
    assert all(DEFAULT_GRANTS[a] for a in Action)
    # A default names no body or role, so it holds in any partnership's constitution.
    kinds = {f"kind:{k.value}" for k in RoleKind}
    assert all(g in SIMPLE_GRANTS or g in kinds for gs in DEFAULT_GRANTS.values() for g in gs)
    assert reference_problems(wirral) == []


def without_new_permissions() -> str:
    """Wirral's constitution as a file written before meetings, reports and reviews had
    permissions: only the case actions it had then."""
    data: dict[str, Any] = yaml.safe_load(default_constitution_path().read_text())
    data["permissions"] = {
        action: grants
        for action, grants in data["permissions"].items()
        if action.split(".")[0] in ("risk", "dispute", "account", "approval")
        and action != "dispute.declare"
    }
    return yaml.safe_dump(data, sort_keys=False)


def test_a_constitution_without_the_new_permissions_loads_with_the_defaults() -> None:
    older = parse_constitution(without_new_permissions(), source="older.yaml")
    assert Action.REPORT_SUBMIT not in older.permissions
    for action in Action:
        given = older.permissions.get(action)
        assert older.grants(action) == (
            given if given is not None else list(DEFAULT_GRANTS[action])
        )
    bare = parse_constitution(
        yaml.safe_dump({**yaml.safe_load(without_new_permissions()), "permissions": {}})
    )
    assert all(bare.grants(a) == list(DEFAULT_GRANTS[a]) for a in Action)


def test_a_constitution_without_the_new_permissions_behaves_as_the_defaults_say(
    engine: Engine, clock: FixedClock
) -> None:
    older = parse_constitution(without_new_permissions(), source="older.yaml")
    act(engine, clock, OPERATOR, LoadConstitution(document=older, source="older.yaml"))
    populate(engine, clock)
    submission = healthy_report(engine, clock)
    with pytest.raises(NotPermitted, match="may not report.submit for be-healthy"):
        act(engine, clock, "fran@community.example", submission)  # a member, not the chair
    assert act(engine, clock, "hana@nhs.example", submission).status == "submitted"
    meeting = act(engine, clock, OPERATOR, PlanMeeting(body="board", day=date(2027, 3, 9)))
    act(engine, clock, "eve@council.example", SendApologies(meeting_id=meeting.meeting_id))
    with pytest.raises(NotPermitted, match="meeting.item for board"):
        act(
            engine, clock, "olly@fire.example", SubmitItem(meeting_id=meeting.meeting_id, title="x")
        )


def test_a_file_may_name_its_own_grants_for_the_new_actions() -> None:
    data: dict[str, Any] = yaml.safe_load(without_new_permissions())
    data["permissions"]["report.submit"] = ["body-member"]
    data["permissions"]["review.challenge"] = ["member"]
    c = parse_constitution(yaml.safe_dump(data))
    assert c.grants(Action.REPORT_SUBMIT) == ["body-member"]
    data["permissions"]["report.submit"] = ["body-everyone"]
    with pytest.raises(
        ConstitutionInvalid, match=r"permissions\.report\.submit\[0\].*'body-everyone'"
    ):
        parse_constitution(yaml.safe_dump(data))


# --- a report submitted by someone who is not its author (22.2.1) ----------------------------


def test_a_report_submitted_by_the_groups_family_representative_is_refused_and_writes_nothing(
    people: Engine, clock: FixedClock
) -> None:
    submission = healthy_report(people, clock)
    before = state(people)
    with pytest.raises(NotPermitted) as refused:
        act(people, clock, "fran@community.example", submission)  # sits on be-healthy
    assert refused.value.clause == "22.2.1"
    assert "may not report.submit for be-healthy: allowed are body-chair" in str(refused.value)
    assert str(refused.value).endswith(" (MoU 22.2.1)")  # Wirral's clause, after its MoU's name
    assert state(people) == before
    with Session(people) as session:
        report = session.exec(select(Report).where(Report.from_body_id == "be-healthy")).one()
        assert (report.status, report.submitted_by) == ("requested", None)
    done = act(people, clock, "hana@nhs.example", submission)  # the group's strategy lead
    assert (done.status, done.submitted_by) == ("submitted", pseudonym(people, "hana@nhs.example"))


def test_a_coordinator_may_submit_on_the_chairs_behalf(people: Engine, clock: FixedClock) -> None:
    submission = healthy_report(people, clock)
    done = act(people, clock, "coord@council.example", submission)
    assert done.submitted_by == pseudonym(people, "coord@council.example")


# --- principals: the system, and the public of 7.2 -------------------------------------------


def test_a_system_principal_does_what_the_system_does_and_nothing_a_member_must(
    people: Engine, clock: FixedClock
) -> None:
    submission = healthy_report(people, clock)  # the operator opened the quarter
    meeting = act(people, clock, SYSTEM_CYCLE, PlanMeeting(body="board", day=date(2027, 3, 9)))
    before = state(people)
    for principal in (TIMER, SYSTEM_CYCLE, OPERATOR):
        with pytest.raises(NotPermitted, match=f"{principal.name} may not report.submit"):
            act(people, clock, principal, submission)
        with pytest.raises(NotPermitted, match="may not meeting.apologies"):
            act(people, clock, principal, SendApologies(meeting_id=meeting.meeting_id))
    assert state(people) == before
    # ... and a member's --as cannot name one: a string is a member (or, for 7.2, the public).
    with pytest.raises(UnknownMember, match="no active member 'system:timer'"):
        act(people, clock, "system:timer", SendApologies(meeting_id=meeting.meeting_id))
    with pytest.raises(InvalidInput, match="not a system principal"):
        System("timer")
    assert audit_actors(people, "meeting.planned") == ["system:cycle"]
    assert audit_actors(people, "report.opened") == ["operator:cli"] * 6


def test_a_challenge_under_7_2_by_someone_outside_the_partnership_is_accepted(
    people: Engine, clock: FixedClock
) -> None:
    act(people, clock, OPERATOR, OpenReview(kind="cypp-review", year=2027))
    clock.set(london(2027, 6, 1, 10, 0))
    act(
        people,
        clock,
        "dcs@council.example",
        CompleteReview(kind="cypp-review", year=2027, outcome="Done"),
    )
    challenge = ChallengeReview(kind="cypp-review", year=2027, text="Youth services are thin.")
    done = execute(people, clock, "Jo Bloggs, a parent in Birkenhead", challenge)
    assert done.result == 1
    assert [(e.action, e.actor) for e in done.events] == [("review.challenged", "public")]
    key = "review:cypp-review:2027:challenge-1"
    assert recipients(people, "reminder", key) == ["coord@council.example", "dcs@council.example"]
    with Session(people) as session:
        context = json.loads(
            session.exec(
                select(OutboxMessage.context).where(col(OutboxMessage.key).startswith(key))
            ).first()
            or "{}"
        )
        trail = " ".join(f"{e.actor} {e.after}" for e in session.exec(select(AuditEvent)))
    assert context["challenger"] == "Jo Bloggs, a parent in Birkenhead"
    assert "Jo Bloggs" not in trail  # the public's own words stay out of the audit chain
    # A member who challenges is named by their pseudonym in the trail.
    again = execute(people, clock, "olly@fire.example", challenge)
    assert [e.actor for e in again.events] == [pseudonym(people, "olly@fire.example")]


def test_a_non_member_is_unknown_where_the_public_may_not_act(
    people: Engine, clock: FixedClock
) -> None:
    meeting = act(people, clock, OPERATOR, PlanMeeting(body="board", day=date(2027, 3, 9)))
    with pytest.raises(UnknownMember, match="no active member 'Jo Bloggs'"):
        act(people, clock, "Jo Bloggs", SubmitItem(meeting_id=meeting.meeting_id, title="x"))
    with pytest.raises(NotFound, match="no annual review 'nope'"):
        act(people, clock, "Jo Bloggs", ChallengeReview(kind="nope", year=2027, text="x"))


def test_grants_by_principal(wirral: Constitution) -> None:
    scope = Scope(body="be-healthy")
    coordinator = Actor(1, "p-c", "wirral-council", frozenset({"governance-coordinator"}))
    assert allowed(wirral, Action.REVIEW_CHALLENGE, Outsider("a parent"), scope)
    assert not allowed(wirral, Action.MEETING_ITEM, Outsider("a parent"), scope)
    assert allowed(wirral, Action.MEETING_ITEM, coordinator, scope)
    assert allowed(wirral, Action.MEETING_PLAN, TIMER, scope)
    assert not allowed(wirral, Action.REVIEW_CHALLENGE, TIMER, scope)
    assert not allowed(wirral, Action.MEETING_RECORD, TIMER, scope)


# --- one unit of work, the real actor in every event, the events to relay --------------------


def test_every_audit_event_of_a_command_names_who_gave_it(
    people: Engine, clock: FixedClock
) -> None:
    act(people, clock, OPERATOR, OpenReview(kind="membership-review", year=2027))
    lee = pseudonym(people, "lead@council.example")
    done = execute(
        people,
        clock,
        "lead@council.example",
        CompleteReview(kind="membership-review", year=2027, outcome="Seen"),
    )
    assert done.result.status == reviews.COMPLETED and done.result.representation_gaps
    assert [e.action for e in done.events] == ["review.completed"]
    assert {e.actor for e in done.events} == {lee}
    assert done.events[0].after["by"] == lee
    with Session(people) as session:
        head = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc())).first()
        assert head is not None and (head.seq, head.actor) == (done.events[-1].seq, lee)
