"""Cases from the command line: one clear line and the error's exit code (2 invalid input, 3 not
found, 4 refused by the rules) on bad input, nothing changed."""

from __future__ import annotations

import json

import pytest

from .cases_support import state
from .conftest import DATA, Cli


@pytest.fixture
def ready(cli: Cli) -> Cli:
    assert cli("init").exit_code == 0
    assert cli("members", "import", DATA / "cases-members.csv").exit_code == 0
    return cli


def ok(cli: Cli, *args: str) -> dict[str, object]:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def refused(cli: Cli, *args: str, code: int) -> str:
    before = state(cli.runtime.engine())
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("wct: error: ")
    assert state(cli.runtime.engine()) == before
    return line


RISK = ["risk", "raise", "--title", "Placements", "--owner", "sally@council.example"]


def test_a_likelihood_of_7(ready: Cli) -> None:
    line = refused(
        ready, *RISK, "--likelihood", "7", "--impact", "2", "--as", "dcs@council.example", code=2
    )
    assert "likelihood must be a whole number from 1 to 5, not 7" in line


def test_unknown_person_as_actor_or_owner(ready: Cli) -> None:
    assert "no active member 'ghost@x.example'" in refused(
        ready, *RISK, "--likelihood", "2", "--impact", "2", "--as", "ghost@x.example", code=3
    )
    bad_owner = ["risk", "raise", "--title", "T", "--owner", "nobody@x.example"]
    assert "nobody@x.example" in refused(
        ready,
        *bad_owner, "--likelihood", "2", "--impact", "2", "--as", "dcs@council.example",
        code=3,
    )  # fmt: skip


def test_unknown_organisation(ready: Cli) -> None:
    line = refused(
        ready,
        "dispute", "open", "--title", "T", "--party", "merseyside-police", "--party", "atlantis",
        "--as", "pat@police.example", code=3,
    )  # fmt: skip
    assert "unknown organisation(s): atlantis" in line
    line = refused(
        ready,
        "account", "open", "--organisation", "atlantis", "--evidence", "E",
        "--deadline", "2027-01-15", "--as", "chair@wscb.example", code=3,
    )  # fmt: skip
    assert "unknown organisation 'atlantis'" in line


@pytest.mark.parametrize(
    ("deadline", "words", "code"),
    [
        ("2026-11-01", "not in the future", 2),
        ("2027-09-01", "allows 10 to 60 (MoU 11.5.1)", 4),
        ("2027-02-30", "is not a date", 2),
    ],
)
def test_deadline_in_the_past_outside_the_bounds_or_not_a_date(
    ready: Cli, deadline: str, words: str, code: int
) -> None:
    line = refused(
        ready,
        "account", "open", "--organisation", "merseyside-police", "--evidence", "E",
        "--deadline", deadline, "--as", "chair@wscb.example", code=code,
    )  # fmt: skip
    assert words in line


def test_counter_proposal_after_agreement_and_response_to_a_closed_case(ready: Cli) -> None:
    opened = ok(
        ready,
        "account", "open", "--organisation", "merseyside-police", "--evidence", "S11 audit",
        "--deadline", "2027-01-15", "--as", "chair@wscb.example",
    )  # fmt: skip
    case = str(opened["case_id"])
    agreed = ok(ready, "account", "agree", case, "--as", "pat@police.example")
    assert agreed["agreed_deadline"] == "2027-01-15"
    line = refused(
        ready,
        "account", "counter", case, "--deadline", "2027-01-29", "--as", "pat@police.example",
        code=4,
    )  # fmt: skip
    assert "no longer open to proposals" in line
    ok(ready, "account", "respond", case, "--response", "Plan", "--as", "pat@police.example")
    ok(ready, "account", "accept", case, "--note", "Fine", "--as", "chair@wscb.example")
    line = refused(
        ready, "account", "respond", case, "--response", "x", "--as", "pat@police.example", code=4
    )
    assert "is closed: no response is awaited" in line


def test_someone_not_allowed(ready: Cli) -> None:
    line = refused(
        ready,
        "account", "open", "--organisation", "merseyside-police", "--evidence", "E",
        "--deadline", "2027-01-15", "--as", "lead@council.example", code=4,
    )  # fmt: skip
    assert "may not account.open for wscb: allowed are chair:wscb, deputy:wscb" in line


def test_the_same_trigger_twice_opens_one_case(ready: Cli) -> None:
    args = [
        "dispute", "open", "--title", "Front door", "--party", "merseyside-police",
        "--party", "nhs-wirral", "--as", "pat@police.example",
    ]  # fmt: skip
    first, second = ok(ready, *args), ok(ready, *args)
    assert first["dispute_id"] == second["dispute_id"] and second["created"] is False
    listing = json.loads(ready("cases", "--open", "--json").stdout)
    assert [(c["kind"], c["stage"], c["until"]) for c in listing] == [
        ("dispute", "informal", "2026-12-21")
    ]


def test_dispute_ladder_from_the_cli(ready: Cli) -> None:
    opened = ok(
        ready,
        "dispute", "open", "--title", "Front door", "--party", "merseyside-police",
        "--party", "nhs-wirral", "--as", "pat@police.example",
    )  # fmt: skip
    d = str(opened["dispute_id"])
    up = ok(
        ready, "dispute", "outcome", d, "--stage", "informal", "--unresolved", "--note", "No",
        "--as", "nina@nhs.example",
    )  # fmt: skip
    assert up["stage"] == "chief_executives"
    line = refused(
        ready, "dispute", "outcome", d, "--stage", "informal", "--resolved", "--note", "Yes",
        "--as", "nina@nhs.example", code=4,
    )  # fmt: skip
    assert "not informal" in line
    assert "no cases open" not in ready("cases").output


@pytest.mark.parametrize(
    "group", ["risk", "dispute", "account", "approval", "cases", "risk raise", "account counter"]
)
def test_help(cli: Cli, group: str) -> None:
    result = cli(*group.split(), "--help")
    assert result.exit_code == 0 and "Usage" in result.output
