"""The `wct` command line as a coordinator uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from deployments.cli import app
from models.constitution import default_constitution_path
from models.tables import AuditEvent, Person

from .conftest import DATA, Cli


def audit_count(cli: Cli) -> int:
    with Session(cli.runtime.engine()) as s:
        return len(s.exec(select(AuditEvent)).all())


def broken_constitution(tmp_path: Path) -> Path:
    data = yaml.safe_load(default_constitution_path().read_text())
    data["bodies"][7]["chair"] = "lead-member"  # 11.1.3
    data["bodies"][1]["members"] = data["bodies"][1]["members"][:2]  # 21.3.3 (four leads gone)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_init_is_idempotent_and_status_shows_the_wirral_bodies(cli: Cli) -> None:
    first = cli("init")
    assert first.exit_code == 0, first.output
    assert "Loaded Wirral Children's Trust (9 bodies" in first.output
    again = cli("init")
    assert again.exit_code == 0 and "already up to date" in again.output
    assert audit_count(cli) == 1
    shown = cli("status")
    assert shown.exit_code == 0
    for name in (
        "Wirral Children's Trust Board",
        "Children's Trust Executive",
        "Wirral Safeguarding Children Board",
        "Joint Commissioning Group",
        "Stay Safe Strategy Group",
    ):
        assert name in shown.output
    assert "2027-01-12 14:00" in shown.output  # the Board's next meeting after 23 Nov 2026


def test_status_json_after_importing_members(cli: Cli) -> None:
    cli("init")
    imported = cli("members", "import", DATA / "members.csv")
    assert imported.exit_code == 0 and "6 added" in imported.output
    status = json.loads(cli("status", "--json").stdout)
    assert status["members"] == 6
    board = next(b for b in status["bodies"] if b["id"] == "board")
    assert board["chair"] == "Cllr Tony Example"
    assert board["next_meetings"][:2] == ["2027-01-12T14:00+00:00", "2027-03-09T14:00+00:00"]
    vacant = {(v["role"], v["organisation"]) for v in board["vacancies"]}
    assert ("representative", "merseyside-police") not in vacant
    assert ("representative", "merseyside-fire") in vacant
    assert any("merseyside-fire" in w and "20.3.3" in w for w in status["warnings"])


def test_check_reports_every_failure_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    result = cli("check", broken_constitution(tmp_path))
    assert result.exit_code == 1
    assert "[11.1.3]" in result.output and "bodies[7].chair" in result.output
    assert result.output.count("[21.3.3]") == 4
    assert "Traceback" not in result.output
    home = cli.runtime.settings.home
    assert not home.exists()
    as_json = cli("check", broken_constitution(tmp_path), "--json")
    assert as_json.exit_code == 1
    assert {p["clause"] for p in json.loads(as_json.stdout)["problems"]} == {"11.1.3", "21.3.3"}
    good = cli("check", default_constitution_path())
    assert good.exit_code == 0 and "OK" in good.output


def test_init_with_a_bad_constitution_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    before = audit_count(cli)
    result = cli("init", "--constitution", broken_constitution(tmp_path))
    assert result.exit_code == 2 and "nothing written" in result.output
    assert audit_count(cli) == before


def test_amending_the_constitution_is_audited(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    data = yaml.safe_load(default_constitution_path().read_text())
    data["risk"]["escalation_threshold"] = 12
    amended = tmp_path / "amended.yaml"
    amended.write_text(yaml.safe_dump(data))
    assert cli("init", "--constitution", amended).exit_code == 0
    with Session(cli.runtime.engine()) as s:
        actions = [e.action for e in s.exec(select(AuditEvent))]
    assert actions == ["constitution.loaded", "constitution.amended"]


def test_removing_an_organisation_members_belong_to_is_refused(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    cli("members", "import", DATA / "members.csv")
    data = yaml.safe_load(default_constitution_path().read_text())
    data["rules"].pop("statutory_partners_on_board")
    data["organisations"] = [o for o in data["organisations"] if o["id"] != "merseyside-police"]
    for body in data["bodies"]:
        body["members"] = [
            m for m in body["members"] if m.get("organisation") != "merseyside-police"
        ]
    path = tmp_path / "no-police.yaml"
    path.write_text(yaml.safe_dump(data))
    before = audit_count(cli)
    result = cli("init", "--constitution", path)
    assert result.exit_code == 4 and "merseyside-police" in result.output
    assert audit_count(cli) == before


def test_members_import_bad_row_exits_2_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    bad = tmp_path / "bad.csv"
    bad.write_text((DATA / "members.csv").read_text() + "Eve,eve@x.example,atlantis,dcs,,email\n")
    result = cli("members", "import", bad)
    assert result.exit_code == 2
    assert "line 8, organisation: unknown organisation 'atlantis'" in result.output
    assert "nothing written" in result.output
    with Session(cli.runtime.engine()) as s:
        assert s.exec(select(Person)).all() == []
    assert audit_count(cli) == 1


def test_members_import_of_a_missing_or_binary_file(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    missing = cli("members", "import", tmp_path / "nope.csv")
    assert missing.exit_code == 2 and "No such file" in missing.output
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    result = cli("members", "import", binary)
    assert result.exit_code == 2 and "UTF-8" in result.output


def test_commands_before_init_say_what_to_do(cli: Cli) -> None:
    for args in (("status",), ("audit", "verify"), ("members", "import", DATA / "members.csv")):
        result = cli(*args)
        assert result.exit_code == 3  # not found: no database (or no constitution) yet
        assert "run `wct init`" in result.output
        assert "Traceback" not in result.output


def test_members_list(cli: Cli) -> None:
    cli("init")
    cli("members", "import", DATA / "members.csv")
    listing = json.loads(cli("members", "list", "--json").stdout)
    assert [m["name"] for m in listing][:2] == ["Alex Health", "Cllr Tony Example"]
    julia = next(m for m in listing if m["email"] == "dcs@wirral.example")
    assert (julia["channels"], julia["roles"]) == (["email", "teams"], ["dcs"])
    assert julia["pseudonym"].startswith("p-")


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["init"],
        ["check"],
        ["status"],
        ["members"],
        ["members", "import"],
        ["members", "list"],
        ["audit"],
        ["audit", "verify"],
        ["audit", "export"],
        ["audit", "checkpoint"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.db  # the real `wct` script in a subprocess, with its own SQLite database
def test_the_console_script_runs_in_a_fresh_home(tmp_path: Path) -> None:
    """`wct` as installed: init, status, and a one-line error with a non-zero exit."""
    env = {"WCT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    wct = [sys.executable, "-c", "from deployments.cli import main; main()"]
    init = subprocess.run([*wct, "init"], env=env, capture_output=True, text=True, check=False)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "home" / "wct.db").exists()
    bad = subprocess.run(
        [*wct, "members", "import", str(tmp_path / "none.csv")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2  # invalid input: no such file
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("wct: error:")


def test_another_partnership_runs_its_own_constitution(cli: Cli) -> None:
    anytown = DATA / "anytown.yaml"
    assert cli("check", anytown).exit_code == 0
    assert cli("init", "--constitution", anytown).exit_code == 0
    status = json.loads(cli("status", "--json").stdout)
    assert status["partnership"] == "Anytown Children's Partnership"
    assert [b["id"] for b in status["bodies"]] == ["partnership-board", "safeguarding-partnership"]
    assert status["bodies"][0]["next_meetings"][0] == "2027-01-04T18:00+00:00"


def test_erasing_a_member_keeps_the_audit_trail_whole(cli: Cli) -> None:
    cli("init")
    cli("members", "import", DATA / "members.csv")
    refused = cli("members", "erase", "sam@police.example")
    assert refused.exit_code == 2 and "--yes" in refused.output
    done = cli("members", "erase", "sam@police.example", "--yes")
    assert done.exit_code == 0, done.output
    with Session(cli.runtime.engine()) as s:
        people = s.exec(select(Person)).all()
    assert "Sam Police" not in {p.name for p in people}
    assert not any(p.email == "sam@police.example" for p in people)
    assert cli("audit", "verify").exit_code == 0
    exported = cli("audit", "export").stdout
    assert "member.erased" in exported and "Sam" not in exported
    again = cli("members", "erase", "sam@police.example", "--yes")
    assert again.exit_code == 3 and "no member" in again.output


@pytest.mark.db  # the real `wct` script in a subprocess
@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("WCT_SMTP_TLS", "bogus", "WCT_SMTP_TLS: Input should be 'none', 'starttls' or 'ssl'"),
        ("WCT_SMTP_PORT", "abc", "WCT_SMTP_PORT: Input should be a valid integer, unable to parse"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(
    tmp_path: Path, variable: str, value: str, words: str
) -> None:
    env = {"WCT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", variable: value}
    wct = [sys.executable, "-c", "from deployments.cli import main; main()"]
    result = subprocess.run([*wct, "init"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"wct: error: invalid configuration: {words}")
    assert not (tmp_path / "home" / "wct.db").exists()


def _people_and_events(cli: Cli) -> tuple[list[tuple[str, bool]], int]:
    with Session(cli.runtime.engine()) as s:
        people = sorted((p.email, p.active) for p in s.exec(select(Person)))
    return people, audit_count(cli)


def test_members_import_names_the_line_and_byte_that_is_not_utf8(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(
        (DATA / "members.csv").read_bytes()
        + "Zo\u00eb,zoe@x.example,nhs-wirral,dcs,,email\n".encode("latin-1")
    )
    before = _people_and_events(cli)
    result = cli("members", "import", bad)
    assert result.exit_code == 2
    offset = len((DATA / "members.csv").read_bytes()) + 2
    assert f"line 8: byte 0xEB at byte offset {offset} (byte 3 of the line)" in result.output
    assert "nothing written" in result.output
    assert _people_and_events(cli) == before


def test_members_import_prune_refusals_write_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    assert cli("members", "import", DATA / "members.csv").exit_code == 0
    before = _people_and_events(cli)
    header_only = tmp_path / "header.csv"
    header_only.write_text((DATA / "members.csv").read_text().splitlines()[0] + "\n")
    for args in ((), ("--yes",)):
        empty = cli("members", "import", header_only, "--prune", *args)
        assert empty.exit_code == 4, empty.output
        assert "no member rows" in empty.output and "nothing written" in empty.output
    assert _people_and_events(cli) == before
    two = tmp_path / "two.csv"
    two.write_text("".join((DATA / "members.csv").read_text().splitlines(keepends=True)[:3]))
    refused = cli("members", "import", two, "--prune")
    assert refused.exit_code == 4
    assert "deactivate 4 of the 6 active members" in refused.output and "--yes" in refused.output
    assert _people_and_events(cli) == before
    done = cli("members", "import", two, "--prune", "--yes")
    assert done.exit_code == 0, done.output
    assert "4 deactivated" in done.output
    assert sum(active for _, active in _people_and_events(cli)[0]) == 2


@pytest.mark.db  # the real `wct` script in a subprocess whose reader leaves at once
@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["outbox"], 141),
        (["audit", "export"], 141),
        (["--help"], 1),  # typer's own help: typer pacifies the pipe and exits 1, also quietly
    ],
)
def test_a_reader_that_leaves_early_gets_a_quiet_exit(
    tmp_path: Path, args: list[str], code: int
) -> None:
    env = {"WCT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    wct = [sys.executable, "-c", "from deployments.cli import main; main()"]
    assert subprocess.run([*wct, "init"], env=env, capture_output=True, check=False).returncode == 0
    process = subprocess.Popen(
        [*wct, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # `| head -0`: the reader is gone before anything is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == code
    assert stderr == ""
