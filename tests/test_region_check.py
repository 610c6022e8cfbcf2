"""Issue 13 (part 3): the region's bank holidays, what `wct check` finds in a file alone, and
`wct simulate` on any constitution (never silently Wirral)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deployments.cli import Runtime, app
from models.calendar import (
    add_working_days,
    bank_holiday,
    in_region,
    is_working_day,
    working_days_between,
)
from models.clock import LONDON, FixedClock
from models.config import Settings
from models.constitution import load_constitution, next_meetings, parse_constitution

DATA = Path(__file__).parent / "data"
ANYTOWN = DATA / "anytown.yaml"
SCOTTISH = DATA / "scottish.yaml"

ST_ANDREWS_DAY = date(2027, 11, 30)  # a Tuesday: Scotland's bank holiday, not England's
EASTER_MONDAY = date(2027, 3, 29)  # England's, Wales's and Northern Ireland's, not Scotland's


# --- the region ---------------------------------------------------------------------------


def test_a_scottish_constitution_has_scotlands_bank_holidays() -> None:
    c = load_constitution(SCOTTISH)
    assert c.partnership.region == "scotland"
    region = c.partnership.region
    assert not is_working_day(ST_ANDREWS_DAY, region)
    assert is_working_day(EASTER_MONDAY, region)
    assert bank_holiday(ST_ANDREWS_DAY, region) == "Saint Andrew's Day"
    # Friday 26 Nov + 1 working day skips the weekend and St Andrew's Day in Scotland only.
    assert add_working_days(date(2027, 11, 26), 2, region) == date(2027, 12, 1)
    assert add_working_days(date(2027, 11, 26), 2, "england") == date(2027, 11, 30)
    assert working_days_between(date(2027, 3, 26), date(2027, 3, 29), region) == 1
    assert working_days_between(date(2027, 3, 26), date(2027, 3, 29), "england") == 0


def test_england_is_the_default_and_an_entry_point_can_enter_a_region() -> None:
    assert load_constitution(ANYTOWN).partnership.region == "england"
    assert is_working_day(ST_ANDREWS_DAY) and not is_working_day(EASTER_MONDAY)
    with in_region("scotland"):
        assert not is_working_day(ST_ANDREWS_DAY) and is_working_day(EASTER_MONDAY)
        assert is_working_day(EASTER_MONDAY, "wales") is False  # told a region: that one
    assert is_working_day(ST_ANDREWS_DAY)  # and the block's region ends with it


def test_the_time_zone_is_validated_and_used_to_expand_cadences() -> None:
    c = load_constitution(SCOTTISH)
    assert c.partnership.time_zone == "Europe/London"
    text = SCOTTISH.read_text().replace("time_zone: Europe/London", "time_zone: Europe/Dublin")
    dublin = parse_constitution(text)
    [first] = next_meetings(dublin, datetime(2027, 1, 1, tzinfo=LONDON))["partnership-board"]
    assert (first.date(), first.hour, str(first.tzinfo)) == (date(2027, 1, 4), 18, "Europe/Dublin")


# --- `wct check`: mistakes a partnership will make, each with clause, line and path ----------

BOARD_CADENCE = "FREQ=MONTHLY;INTERVAL=3;BYDAY=1MO,"
SAFEGUARDING_MEMBERS = "      - {role: scrutineer}\n"
ALIAS_ROLE = (
    "  - {id: deputy-leader, name: Deputy Leader, kind: lead_member, "
    "organisation: anytown-council}\n"
)


def _cadence(rule: str) -> Callable[[str], str]:
    return lambda text: text.replace(BOARD_CADENCE, rule + ",")


def _append(snippet: str) -> Callable[[str], str]:
    return lambda text: text + snippet


def _alias_chair(text: str) -> str:
    text = text.replace("  - {id: rep, name:", ALIAS_ROLE + "  - {id: rep, name:")
    text = text.replace("    chair: scrutineer\n", "    chair: deputy-leader\n")
    return text.replace(
        SAFEGUARDING_MEMBERS, SAFEGUARDING_MEMBERS + "      - {role: deputy-leader}\n"
    )


#: (mistake, the file changed, clause, path, words of the message, words on the line it names)
CHECKS: list[tuple[str, Callable[[str], str], str, str, str, str]] = [
    (
        "cadence with COUNT",
        _cadence("FREQ=MONTHLY;INTERVAL=3;BYDAY=1MO;COUNT=4"),
        "cadence",
        "bodies[0].cadence.rrule",
        "ends (count or until)",
        "COUNT=4",
    ),
    (
        "cadence with UNTIL",
        _cadence("FREQ=MONTHLY;BYDAY=1MO;UNTIL=20270601T000000Z"),
        "cadence",
        "bodies[0].cadence.rrule",
        "stop meeting",
        "UNTIL=",
    ),
    (
        "cadence that never occurs",
        _cadence("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31"),
        "cadence",
        "bodies[0].cadence.rrule",
        "never occurs in the 12 months",
        "BYMONTHDAY=31",
    ),
    (
        "alias chairs",
        _alias_chair,
        "3.1",
        "bodies[1].chair",
        "both of kind 'lead_member'",
        "chair: deputy-leader",
    ),
    (
        "a quarterly report without an executive",
        _append(
            "quarterly_reports:\n"
            "  - {id: board-report, title: Board report, clause: '5.2',\n"
            "     from_body: partnership-board, to_body: partnership-board}\n"
        ),
        "5.2",
        "quarterly_reports[0]",
        "kind 'executive'",
        "board-report",
    ),
    (
        "a report from a kind of body the file lacks",
        _append(
            "quarterly_reports:\n"
            "  - {id: groups-report, title: Groups' report, clause: '5.3',\n"
            "     from_kind: strategy_group, to_body: partnership-board}\n"
        ),
        "5.3",
        "quarterly_reports[0].from_kind",
        "no body of kind 'strategy_group'",
        "from_kind",
    ),
    (
        "risk escalation without an executive",
        _append("risk:\n  escalation_threshold: 12\n"),
        "processes",
        "risk",
        "risk escalation needs exactly one body of kind 'executive'",
        "risk:",
    ),
    (
        "a permission for a role kind nobody has",
        _append("permissions:\n  meeting.item: [body-member, kind:coordinator]\n"),
        "processes",
        "permissions.meeting.item[1]",
        "no role of kind 'coordinator'",
        "kind:coordinator",
    ),
    (
        "a permission for a role that does not exist",
        _append("permissions:\n  meeting.item: [role:clerk]\n"),
        "schema",
        "permissions.meeting.item[0]",
        "unknown role 'clerk'",
        "role:clerk",
    ),
    (
        "a review owned by a body that does not exist",
        _append(
            "reviews:\n"
            "  - {id: annual, title: Annual report, clause: '7.1', owner: trust-board,\n"
            "     due_month: 6, due_day: 30}\n"
        ),
        "schema",
        "reviews[0].owner",
        "unknown body 'trust-board'",
        "trust-board",
    ),
    (
        "an unknown time zone",
        lambda text: text.replace("time_zone: Europe/London", "time_zone: Europe/Anytown"),
        "schema",
        "partnership.time_zone",
        "not an iana time zone",
        "Europe/Anytown",
    ),
]


def _runtime(home: Path) -> Runtime:
    return Runtime(
        settings=Settings(home=home, database_url=f"sqlite:///{home / 'wct.db'}"),
        clock=FixedClock(datetime(2026, 12, 1, 9, tzinfo=LONDON)),
    )


@pytest.mark.parametrize(
    ("change", "clause", "path", "words", "on_line"),
    [pytest.param(*row[1:], id=row[0]) for row in CHECKS],
)
def test_wct_check_names_the_clause_line_and_path_of_each_mistake(
    tmp_path: Path,
    change: Callable[[str], str],
    clause: str,
    path: str,
    words: str,
    on_line: str,
) -> None:
    text = change(SCOTTISH.read_text())  # a small partnership: a board and a safeguarding board
    assert text != SCOTTISH.read_text()
    file = tmp_path / "constitution.yaml"
    file.write_text(text)
    result = CliRunner().invoke(app, ["check", str(file), "--json"], obj=_runtime(tmp_path))
    assert result.exit_code == 1, result.output
    problems = json.loads(result.output)["problems"]
    found = [p for p in problems if p["path"] == path and words in p["message"].lower()]
    assert found, problems
    [problem] = found
    assert problem["clause"] == clause
    assert problem["line"] is not None
    assert on_line in text.splitlines()[problem["line"] - 1], problem
    plain = CliRunner().invoke(app, ["check", str(file)], obj=_runtime(tmp_path))
    assert plain.exit_code == 1
    assert f"[{clause}] line {problem['line']}, {path}" in plain.output


def test_wct_check_passes_the_shipped_and_test_constitutions(tmp_path: Path) -> None:
    for file in (None, ANYTOWN, SCOTTISH):
        args = ["check", str(file)] if file else ["check", str(load_path())]
        result = CliRunner().invoke(app, args, obj=_runtime(tmp_path))
        assert result.exit_code == 0, result.output


def load_path() -> Path:
    from models.constitution import default_constitution_path

    return default_constitution_path()


# --- `wct simulate` on any constitution ---------------------------------------------------


def test_simulate_without_a_loaded_constitution_says_so(tmp_path: Path) -> None:
    args = ["simulate", "--from", "2027-01-01", "--to", "2027-01-31", "--json"]
    result = CliRunner().invoke(
        app, [*args, "--home", str(tmp_path / "sim")], obj=_runtime(tmp_path)
    )
    assert result.exit_code != 0
    assert "--constitution" in result.output and "wct init" in result.output
    assert not (tmp_path / "sim" / "wct.db").exists()  # nothing was simulated


def test_simulate_plays_the_named_constitution(
    prefect_harness: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    args = ["simulate", "--constitution", str(ANYTOWN), "--from", "2027-01-01"]
    args += ["--to", "2027-03-31", "--json", "--home", str(tmp_path / "sim")]
    result = CliRunner().invoke(app, args, obj=_runtime(tmp_path))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    # Anytown's Board meets on the first Monday of each quarter: 4 January 2027.
    assert summary["meetings_held"] >= 1, summary
    assert summary["database"].startswith("sqlite:///") and "sim" in summary["database"]
    from sqlalchemy import create_engine, text

    engine = create_engine(summary["database"])
    with engine.connect() as connection:
        bodies = set(connection.execute(text("select distinct body_id from meeting")).scalars())
    engine.dispose()
    assert bodies == {"partnership-board"}
