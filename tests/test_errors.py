"""Errors come in three kinds, each with its own exit code: invalid input 2, not found 3, refused
by the rules 4 (citing the MoU clause when one applies); any other failure exits 1. Whatever the
kind: one line on stderr, and the database exactly as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from deployments.cli_base import exit_code
from models.decision import InvalidVote
from models.errors import (
    ConstitutionInvalid,
    InvalidInput,
    MembersInvalid,
    NotFound,
    NotInitialised,
    Refused,
    WctError,
)
from models.permissions import NotPermitted, UnknownMember
from models.tables import AuditHead

from .conftest import DATA, Cli


def test_every_kind_is_a_wct_error_and_the_named_errors_have_their_kind() -> None:
    for kind in (InvalidInput, NotFound, Refused):
        assert issubclass(kind, WctError)
    named: list[tuple[type[WctError], type[WctError]]] = [
        (ConstitutionInvalid, InvalidInput),
        (MembersInvalid, InvalidInput),
        (InvalidVote, InvalidInput),
        (NotInitialised, NotFound),
        (UnknownMember, NotFound),
        (NotPermitted, Refused),
    ]
    for error, its_kind in named:
        assert issubclass(error, its_kind), error


@pytest.mark.parametrize(
    ("message", "clause", "shown"),
    [
        ("risk #3 is already closed", "16.1", "risk #3 is already closed (MoU 16.1)"),
        ("not under 7.2", "7.2", "not under 7.2"),  # already cited: not twice
        ("see 17.2", "7.2", "see 17.2 (MoU 7.2)"),  # 17.2 is another clause
        ("see 7.2.1", "7.2", "see 7.2.1 (MoU 7.2)"),
        ("the meeting has started", None, "the meeting has started"),
    ],
)
def test_a_refusal_cites_its_clause_once(message: str, clause: str | None, shown: str) -> None:
    refusal = Refused(message, clause=clause, agreement="MoU")
    assert (str(refusal), refusal.clause) == (shown, clause)


@pytest.mark.parametrize(
    ("clause", "agreement", "shown"),
    [
        ("", "MoU", "risk #3 is already closed"),  # the file gives none: cite none
        (None, "Partnership Agreement", "risk #3 is already closed"),
        ("7.1", None, "risk #3 is already closed (7.1)"),
        ("7.1", "Partnership Agreement", "risk #3 is already closed (Partnership Agreement 7.1)"),
    ],
)
def test_a_refusal_cites_only_the_clause_given_of_the_agreement_named(
    clause: str | None, agreement: str | None, shown: str
) -> None:
    refusal = Refused("risk #3 is already closed", clause=clause, agreement=agreement)
    assert (str(refusal), refusal.clause) == (shown, clause or None)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("x"), 2),
        (InvalidVote("x"), 2),
        (NotFound("x"), 3),
        (NotInitialised(), 3),
        (UnknownMember("x"), 3),
        (Refused("x", clause="16.1"), 4),
        (NotPermitted("x"), 4),
        (WctError("x"), 1),
        (RuntimeError("x"), 1),
    ],
)
def test_exit_code_of_each_kind(error: Exception, code: int) -> None:
    assert exit_code(error) == code


def snapshot(engine: Engine) -> dict[str, object]:
    """Every table's row count and the audit chain's head: what a failed command leaves alone."""
    with Session(engine) as session:
        counts: dict[str, object] = {
            table.name: session.exec(select(func.count()).select_from(table)).one()
            for table in SQLModel.metadata.sorted_tables
        }
        head = session.exec(select(AuditHead)).one()
    return counts | {"audit head": (head.seq, head.hash)}


@pytest.fixture
def ready(cli: Cli) -> Cli:
    assert cli("init").exit_code == 0
    assert cli("members", "import", DATA / "cycles-members.csv").exit_code == 0
    assert cli("meeting", "plan", "board", "2027-03-09").exit_code == 0
    return cli


def fails(cli: Cli, *args: str | Path, code: int) -> str:
    """Run a command that must fail with `code`: one line on stderr, nothing written."""
    before = snapshot(cli.runtime.engine())
    result = cli(*args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("wct: error: ") and "Traceback" not in line
    assert snapshot(cli.runtime.engine()) == before
    return line


BOARD = ("board", "2027-03-09")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        # invalid input: never right as given
        (("report", "open", "2027-Q9"), 2, "'2027-Q9' is not a quarter"),
        (("meeting", "plan", "board", "2027-03-10"), 2, "board does not meet on 2027-03-10"),
        (("meeting", "plan", "board", "9 March"), 2, "'9 March' is not a date"),
        (
            ("meeting", "item", *BOARD, "--title", " ", "--by", "eve@council.example"),
            2,
            "item title is empty",
        ),
        (("members", "erase", "eve@council.example"), 2, "repeat with --yes"),
        # not found: names what does not exist
        (("meeting", "agenda", "board", "2027-05-11"), 3, "no meeting of board planned"),
        (("meeting", "plan", "atlantis", "2027-03-09"), 3, "no body 'atlantis'"),
        (("report", "submit", "wscb-quarterly", "wscb", "2027-Q1", "--by", "chair@wscb.example",
          "--document", "q1.pdf"), 3, "no wscb-quarterly report from wscb for 2027-Q1"),
        (
            ("meeting", "item", *BOARD, "--title", "Youth offer", "--by", "ghost@x.example"),
            3,
            "no active member 'ghost@x.example'",
        ),
        # refused: well formed, but the rules say no
        (
            ("meeting", "item", *BOARD, "--title", "Youth offer", "--by", "olly@fire.example"),
            4,
            "may not meeting.item for board: allowed are body-member, kind:coordinator",
        ),
        (
            ("review", "challenge", "mou-review", "2027", "--by", "A parent", "--text", "Why?"),
            4,
            "mou-review is not open to public challenge (only reviews under 7.2 are)",
        ),
    ],
)  # fmt: skip
def test_each_kind_of_error_reaches_its_exit_code(
    ready: Cli, args: tuple[str, ...], code: int, words: str
) -> None:
    assert words in fails(ready, *args, code=code)


def test_a_refusal_by_the_rules_cites_the_clause(ready: Cli) -> None:
    raised = ready(
        "risk", "raise", "--title", "Placements", "--owner", "sally@council.example",
        "--likelihood", "2", "--impact", "2", "--as", "dcs@council.example", "--json",
    )  # fmt: skip
    assert raised.exit_code == 0, raised.output
    risk = str(json.loads(raised.stdout)["risk_id"])
    assert ready("risk", "close", risk, "--as", "dcs@council.example").exit_code == 0
    line = fails(ready, "risk", "close", risk, "--as", "dcs@council.example", code=4)
    assert line == f"wct: error: risk #{risk} is already closed (MoU 16.1)"
    line = fails(ready, "risk", "close", "99", "--as", "dcs@council.example", code=3)
    assert line == "wct: error: no risk #99"
    line = fails(ready, "risk", "close", risk, "--as", "eve@council.example", code=4)
    assert "may not risk.close for executive: allowed are chair:executive, deputy:executive" in line
    assert line.endswith("(MoU 16.1)")


def test_any_other_failure_exits_1(ready: Cli, tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"present": "not a list"}))
    recorder = ("--as", "coord@council.example")
    line = fails(ready, "meeting", "record", *BOARD, "--file", record, *recorder, code=1)
    assert "invalid MeetingRecord" in line


def test_a_usage_error_is_typers_own_exit_2(ready: Cli) -> None:
    before = snapshot(ready.runtime.engine())
    assert ready("meeting", "cancel", *BOARD).exit_code == 2  # --reason is required
    assert snapshot(ready.runtime.engine()) == before
