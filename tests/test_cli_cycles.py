"""`wct meeting|report|review|steps`: the cycles by hand, with clear errors that change nothing."""

from __future__ import annotations

import json
from pathlib import Path

from models.clock import FixedClock

from .conftest import DATA, Cli
from .cycles_support import london


def ready(cli: Cli) -> None:
    assert cli("init").exit_code == 0
    result = cli("members", "import", DATA / "cycles-members.csv")
    assert result.exit_code == 0, result.output


def test_meeting_from_plan_to_minutes(cli: Cli, clock: FixedClock, tmp_path: Path) -> None:
    ready(cli)
    planned = cli("meeting", "plan", "board", "2027-03-09", "--json")
    assert planned.exit_code == 0, planned.output
    steps = json.loads(planned.stdout)["steps"]
    assert [s["run_name"] for s in steps][0] == "board-2027-03-09-call_for_items"
    again = cli("meeting", "plan", "board", "2027-03-09")
    assert "already planned" in again.stdout
    item = cli(
        "meeting",
        "item",
        "board",
        "2027-03-09",
        "--title",
        "Youth offer",
        "--by",
        "eve@council.example",
    )
    assert item.exit_code == 0, item.output
    wrong = cli("meeting", "plan", "board", "2027-03-10")
    assert wrong.exit_code == 2
    assert "board does not meet on 2027-03-10" in wrong.stderr
    clock.set(london(2027, 3, 9, 16, 0))
    assert cli("steps", "--reconcile", "--json").exit_code == 0
    agenda = cli("meeting", "agenda", "board", "2027-03-09")
    assert "Youth offer" in agenda.stdout and "Declarations of interest (18.1)" in agenda.stdout
    record = tmp_path / "record.json"
    record.write_text(
        json.dumps(
            {
                "present": ["lead@council.example", "eve@council.example", "ed@council.example"],
                "motions": [
                    {
                        "text": "Adopt the youth offer",
                        "item": 8,
                        "votes_for": ["eve@council.example"],
                        "votes_against": ["ed@council.example"],
                        "casting_vote": "against",
                    }
                ],
            }
        )
    )
    recorded = cli(
        "meeting",
        "record",
        "board",
        "2027-03-09",
        "--file",
        record,
        "--as",
        "coord@council.example",
    )
    assert recorded.exit_code == 0, recorded.output
    assert "Rejected on the chair's casting vote after a tie" in recorded.stdout
    twice = cli(
        "meeting", "record", "board", "2027-03-09", "--file", record, "--as", "lead@council.example"
    )
    assert twice.exit_code == 4 and "already recorded" in twice.stderr


def test_report_and_review_by_hand(cli: Cli, clock: FixedClock) -> None:
    ready(cli)
    opened = cli("report", "open", "2027-Q1", "--json")
    assert opened.exit_code == 0, opened.output
    assert len(json.loads(opened.stdout)["created"]) == 6
    bad = cli("report", "open", "2027-Q9")
    assert bad.exit_code == 2 and "is not a quarter" in bad.stderr
    submitted = cli(
        "report",
        "submit",
        "wscb-quarterly",
        "wscb",
        "2027-Q1",
        "--as",
        "chair@wscb.example",
        "--document",
        "https://x.example/q1.pdf",
    )
    assert submitted.exit_code == 0, submitted.output
    assert "report:wscb-quarterly:wscb:2027-Q1: submitted" in submitted.stdout
    assert cli("review", "open", "cypp-review", "2027").exit_code == 0
    clock.set(london(2027, 6, 1, 10, 0))
    done = cli(
        "review",
        "complete",
        "cypp-review",
        "2027",
        "--as",
        "dcs@council.example",
        "--outcome",
        "Done",
    )
    assert done.exit_code == 0, done.output
    assert "open to challenge until 2027-06-29" in done.stdout
    challenged = cli(
        "review", "challenge", "cypp-review", "2027", "--as", "A parent", "--text", "Why?"
    )
    assert challenged.exit_code == 0 and "challenge #1" in challenged.stdout
    overdue = cli("steps", "--json")
    keys = [s["key"] for s in json.loads(overdue.stdout)]
    assert "report:strategy-group-performance:be-healthy:2027-Q1:overdue" in keys
    assert not any(k.startswith("report:wscb-quarterly") for k in keys)


def test_meeting_cancel_from_the_cli(cli: Cli) -> None:
    ready(cli)
    assert cli("meeting", "plan", "board", "2027-03-09").exit_code == 0
    missing = cli("meeting", "cancel", "board", "2027-03-09")
    assert missing.exit_code == 2  # --reason is required
    snow = ["--reason", "Snow", "--as", "coord@council.example"]
    done = cli("meeting", "cancel", "board", "2027-03-09", *snow)
    assert done.exit_code == 0 and "cancelled; members told" in done.output
    again = cli("meeting", "cancel", "board", "2027-03-09", *snow)
    assert again.exit_code == 0 and "already cancelled" in again.output
    unknown = cli("meeting", "cancel", "board", "2027-03-10", *snow)
    assert unknown.exit_code == 3 and "no meeting of board planned on 2027-03-10" in unknown.output


def test_a_cli_meeting_command_records_the_member_as_its_actor(cli: Cli) -> None:
    ready(cli)
    assert cli("meeting", "plan", "board", "2027-03-09").exit_code == 0
    members = {
        m["email"]: m["pseudonym"] for m in json.loads(cli("members", "list", "--json").stdout)
    }

    def actors() -> dict[str, str]:
        trail = [json.loads(line) for line in cli("audit", "export").stdout.splitlines()]
        assert not any("@" in e["actor"] for e in trail)  # pseudonyms only, never an email
        return {e["action"]: e["actor"] for e in trail}

    item = ("meeting", "item", "board", "2027-03-09", "--title", "Youth offer")
    assert cli(*item, "--by", "nina@nhs.example").exit_code == 0  # --by: the older name of --as
    assert actors()["meeting.item_submitted"] == members["nina@nhs.example"]
    board = ("meeting", "apologies", "board", "2027-03-09")
    assert cli(*board).exit_code == 2  # who sends them?
    sorry = cli(*board, "--as", "eve@council.example")
    assert sorry.exit_code == 0, sorry.output
    assert actors()["meeting.apologies"] == members["eve@council.example"]
    assert actors()["meeting.planned"] == "operator:cli"
    refused = cli(*item, "--as", "olly@fire.example")  # not on the Board
    assert refused.exit_code == 4 and "may not meeting.item for board" in refused.stderr
