"""The constitution schema and the MoU's structural rules, each broken in a copy of Wirral's."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.clock import LONDON
from models.constitution import (
    BodyKind,
    Constitution,
    StructuralRule,
    default_constitution_path,
    next_meetings,
    parse_constitution,
)
from models.errors import ConstitutionInvalid, Problem

Data = dict[str, Any]


@pytest.fixture(scope="module")
def wirral_data() -> Data:
    loaded: Data = yaml.safe_load(default_constitution_path().read_text())
    return loaded


def body(data: Data, body_id: str) -> Data:
    found: Data = next(b for b in data["bodies"] if b["id"] == body_id)
    return found


def index(data: Data, body_id: str) -> int:
    return next(n for n, b in enumerate(data["bodies"]) if b["id"] == body_id)


def problems_of(data: Data) -> list[Problem]:
    with pytest.raises(ConstitutionInvalid) as caught:
        parse_constitution(yaml.safe_dump(data, sort_keys=False), source="copy.yaml")
    return caught.value.problems


def drop_seat(data: Data, body_id: str, role: str, organisation: str | None = None) -> None:
    seats = body(data, body_id)["members"]
    body(data, body_id)["members"] = [
        s
        for s in seats
        if not (
            s["role"] == role and (organisation is None or s.get("organisation") == organisation)
        )
    ]


def test_the_shipped_wirral_constitution_passes_every_rule(wirral: Constitution) -> None:
    assert wirral.partnership.short_name == "WCT"
    assert set(wirral.rules) == set(StructuralRule)
    assert len(wirral.bodies_of(BodyKind.STRATEGY_GROUP)) == 5
    assert {b.kind for b in wirral.bodies} >= {
        BodyKind.BOARD,
        BodyKind.EXECUTIVE,
        BodyKind.SAFEGUARDING_BOARD,
        BodyKind.COMMISSIONING_GROUP,
    }


Breaker = Callable[[Data], None]


def _same_chair(d: Data) -> None:
    body(d, "wscb")["chair"] = "lead-member"


def _board_chair_dcs(d: Data) -> None:
    body(d, "board")["chair"] = "dcs"


def _exec_chair_lead(d: Data) -> None:
    body(d, "executive")["members"].append({"role": "lead-member"})
    body(d, "executive")["chair"] = "lead-member"


def _dcs_off_wscb(d: Data) -> None:
    drop_seat(d, "wscb", "dcs")


def _police_off_board(d: Data) -> None:
    drop_seat(d, "board", "representative", "merseyside-police")


def _lead_off_exec(d: Data) -> None:
    drop_seat(d, "executive", "lead-stay-safe")


def _no_family(d: Data) -> None:
    drop_seat(d, "economic-wellbeing", "family-representative")


def _wscb_chair_off_board(d: Data) -> None:
    drop_seat(d, "board", "wscb-independent-chair")


def _outcome_without_group(d: Data) -> None:
    d["outcomes"].append({"id": "be-heard", "name": "Be heard"})


CASES: list[tuple[str, Breaker, str, str, str]] = [
    # (rule, how to break it, clause, path, words in the message)
    ("distinct chairs", _same_chair, "11.1.3", "bodies[{wscb}].chair", "different people"),
    ("board chair", _board_chair_dcs, "20.3.1", "bodies[{board}].chair", "lead_member"),
    ("executive chair", _exec_chair_lead, "21.3.1", "bodies[{executive}].chair", "director"),
    ("dcs on both", _dcs_off_wscb, "11.1.5", "bodies[{wscb}].members", "director"),
    ("statutory partners", _police_off_board, "20.3.3-20.3.4", "organisations[3]", "police"),
    ("strategy leads", _lead_off_exec, "21.3.3", "bodies[{executive}].members", "stay-safe"),
    ("family", _no_family, "22.3.2", "bodies[{economic-wellbeing}].members", "family"),
    ("wscb chair", _wscb_chair_off_board, "11.2.5", "bodies[{board}].members", "independent"),
    ("outcomes", _outcome_without_group, "21.2.1", "outcomes[5]", "be-heard"),
]


@pytest.mark.parametrize(
    ("breaker", "clause", "path", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_structural_rule_names_its_clause_and_path(
    wirral_data: Data, breaker: Breaker, clause: str, path: str, words: str
) -> None:
    data = copy.deepcopy(wirral_data)
    breaker(data)
    expected_path = path.format(**{b["id"]: n for n, b in enumerate(data["bodies"])})
    found = problems_of(data)
    assert [(p.clause, p.path) for p in found] == [(clause, expected_path)], found
    assert words in found[0].message.lower() or words in found[0].message
    assert found[0].line is not None and found[0].line > 1


def test_every_failure_is_reported_at_once(wirral_data: Data) -> None:
    # Every rule at once, except moving the Board's chair, which would mend 11.1.3.
    cases = [case for case in CASES if case[0] != "board chair"]
    data = copy.deepcopy(wirral_data)
    for _, breaker, *_ in cases:
        breaker(data)
    clauses = {p.clause for p in problems_of(data)}
    assert clauses == {case[2] for case in cases}


def test_a_partnership_without_a_rule_switches_it_off(wirral_data: Data) -> None:
    data = copy.deepcopy(wirral_data)
    _same_chair(data)
    del data["rules"]["distinct_chairs"]
    parsed = parse_constitution(yaml.safe_dump(data), source="other.yaml")
    assert parsed.body("wscb").chair == "lead-member"


def test_clause_numbers_come_from_the_constitution(wirral_data: Data) -> None:
    data = copy.deepcopy(wirral_data)
    _no_family(data)
    data["rules"]["family_representation_in_strategy_groups"] = "4.2 (Anytown MoU)"
    assert [p.clause for p in problems_of(data)] == ["4.2 (Anytown MoU)"]


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda d: body(d, "board").update(chair="nobody"), "bodies[0].chair", "unknown role"),
        (
            lambda d: body(d, "board")["members"].append({"role": "dcs", "organisation": "mars"}),
            "bodies[0].members[13].organisation",
            "unknown organisation",
        ),
        (lambda d: body(d, "board").update(deputy="dcs-x"), "bodies[0].deputy", "unknown role"),
        (
            lambda d: body(d, "board")["cadence"].update(rrule="FREQ=SOMETIMES"),
            "bodies[0].cadence.rrule",
            "rrule",
        ),
        (lambda d: d["roles"].append(dict(d["roles"][0])), "roles[15].id", "duplicate"),
        (lambda d: d["risk"].update(escalation_threshold=30), "risk.escalation_threshold", "25"),
        (lambda d: body(d, "board").update(kind="parliament"), "bodies[0].kind", "board"),
        (lambda d: d.update(colour="blue"), "colour", "extra"),
        (
            lambda d: d["partnership"].update(timezone="Mars/Olympus"),
            "partnership.timezone",
            "time zone",
        ),
        (lambda d: d["partnership"].update(region="wessex"), "partnership.region", "england"),
        (
            lambda d: d["reviews"][0].update(due_month=2, due_day=30),
            "reviews[0]",
            "not a date",
        ),
        (
            lambda d: d["call_to_account"].update(min_deadline=70),
            "call_to_account.min_deadline",
            "greater",
        ),
        (
            lambda d: body(d, "executive").update(chair="lead-member"),
            "bodies[1].chair",
            "no seat",
        ),
    ],
)
def test_schema_and_reference_errors_name_the_path(
    wirral_data: Data, mutate: Callable[[Data], object], path: str, words: str
) -> None:
    data = copy.deepcopy(wirral_data)
    mutate(data)
    found = problems_of(data)
    assert any(p.path == path and words in p.message.lower() for p in found), found
    assert all(p.clause == "schema" for p in found)


def test_syntax_errors_and_duplicate_keys_give_the_line() -> None:
    with pytest.raises(ConstitutionInvalid) as caught:
        parse_constitution("version: 1\npartnership: [\n", source="bad.yaml")
    assert caught.value.problems[0].clause == "yaml"
    assert caught.value.problems[0].line is not None
    with pytest.raises(ConstitutionInvalid) as caught:
        parse_constitution("version: 1\nversion: 2\n", source="dup.yaml")
    [problem] = caught.value.problems
    assert (problem.path, problem.line) == ("version", 2)
    assert "twice" in problem.message


def test_line_numbers_point_into_the_file() -> None:
    text = (
        default_constitution_path()
        .read_text()
        .replace("chair: lead-member                      # 20.3.1", "chair: dcs")
    )
    with pytest.raises(ConstitutionInvalid) as caught:
        parse_constitution(text, source="wirral-copy.yaml")
    [problem] = caught.value.problems
    line = text.splitlines()[problem.line - 1] if problem.line else ""
    assert problem.clause == "20.3.1"
    assert "chair: dcs" in line


def test_unreadable_file_is_a_clear_problem(tmp_path: Path) -> None:
    from models.constitution import load_constitution

    with pytest.raises(ConstitutionInvalid, match="No such file"):
        load_constitution(tmp_path / "missing.yaml")


def test_digest_is_stable_and_content_sensitive(wirral_data: Data, wirral: Constitution) -> None:
    again = parse_constitution(yaml.safe_dump(wirral_data), source="again.yaml")
    assert again.digest() == wirral.digest()
    changed = copy.deepcopy(wirral_data)
    changed["risk"]["escalation_threshold"] = 16
    assert parse_constitution(yaml.safe_dump(changed)).digest() != wirral.digest()


def test_next_meetings_follow_each_cadence(wirral: Constitution) -> None:
    upcoming = next_meetings(wirral, datetime(2027, 2, 1, tzinfo=LONDON), count=2)
    assert upcoming["board"] == [
        datetime(2027, 3, 9, 14, 0, tzinfo=LONDON),
        datetime(2027, 5, 11, 14, 0, tzinfo=LONDON),
    ]
    assert set(upcoming) == {b.id for b in wirral.bodies}


# --- What the processes need from the file alone (`wct check`) -------------------------------


def _wscb_chaired_by_a_second_lead_member(d: Data) -> None:
    d["roles"].append({"id": "deputy-leader", "name": "Deputy Leader", "kind": "lead_member"})
    body(d, "wscb")["members"].append({"role": "deputy-leader"})
    body(d, "wscb")["chair"] = "deputy-leader"


def _without(kind: str) -> Callable[[Data], None]:
    """The bodies of `kind` become of kind `other`: every reference still resolves."""

    def retype(d: Data) -> None:
        for b in d["bodies"]:
            if b["kind"] == kind:
                b["kind"] = "other"
        d["rules"] = {}  # the structural rules would name the missing body first

    return retype


@pytest.mark.parametrize(
    ("mutate", "clause", "path", "words"),
    [
        (
            lambda d: body(d, "board")["cadence"].update(rrule="FREQ=MONTHLY;BYDAY=2TU;COUNT=3"),
            "20.4.1",
            "bodies[0].cadence.rrule",
            "ends",
        ),
        (
            lambda d: body(d, "wscb")["cadence"].update(
                rrule="FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=31"
            ),
            "11.2.1",
            "bodies[7].cadence.rrule",
            "never occurs",
        ),
        (_wscb_chaired_by_a_second_lead_member, "11.1.3", "bodies[7].chair", "both of kind"),
        (_without("executive"), "processes", "risk", "kind 'executive'"),
        (_without("safeguarding_board"), "processes", "call_to_account", "safeguarding_board"),
        (_without("strategy_group"), "22.2.1", "quarterly_reports[0].from_kind", "strategy_group"),
        (
            lambda d: d["roles"].__setitem__(
                slice(None), [r for r in d["roles"] if r["kind"] != "coordinator"]
            ),
            "processes",
            "permissions.",
            "no role of kind 'coordinator'",
        ),
    ],
)
def test_check_finds_what_the_processes_need(
    wirral_data: Data, mutate: Callable[[Data], object], clause: str, path: str, words: str
) -> None:
    data = copy.deepcopy(wirral_data)
    mutate(data)
    found = problems_of(data)
    assert any(
        p.clause == clause and p.path.startswith(path) and words in p.message for p in found
    ), found
