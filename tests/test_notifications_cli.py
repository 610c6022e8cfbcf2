"""`wct preview`, `wct outbox`, `wct outbox retry`, `wct dispatch`, `wct calendar`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import icalendar
from sqlmodel import Session

from models.clock import LONDON, FixedClock
from models.outbox import Status
from models.tables import Meeting
from notifications.samples import sample
from tests.conftest import Cli
from tests.notifications_fixtures import add_person, queue, row


def test_preview_renders_every_part_of_a_kind(cli: Cli) -> None:
    result = cli("preview", "meeting_notice")
    assert result.exit_code == 0, result.output
    for part in ("subject", "text", "html", "teams"):
        assert f"===== {part} =====" in result.output
    assert "Wirral Children's Trust Board meeting, Tuesday 12 January 2027" in result.output
    subject = cli("preview", "agenda", "--part", "subject")
    assert (
        subject.output.strip()
        == "Agenda: Wirral Children's Trust Board, Tuesday 12 January 2027 at 10:00"
    )
    as_json = json.loads(cli("preview", "reminder", "--json").output)
    assert as_json["kind"] == "reminder" and "What to do:" in as_json["text"]


def test_preview_of_an_unknown_kind_lists_the_known(cli: Cli) -> None:
    result = cli("preview", "memo")
    assert result.exit_code == 3
    known = "unknown message kind 'memo' (known: action_overdue, action_reminder, agenda"
    assert known in result.output


def test_preview_with_a_context_file_shows_its_problems(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps({"recipient": "X", "clause": "1", "action": "Do"}))
    result = cli("preview", "reminder", "--context", path)
    assert result.exit_code == 2
    assert "context for 'reminder' is invalid: what: Field required" in result.output


def test_outbox_lists_dispatches_and_retries(cli: Cli, clock: FixedClock, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    engine = cli.runtime.engine()
    person = add_person(engine, clock=clock)
    good = queue(
        engine, person_id=person, kind="reminder", context=sample("reminder"), key="g", clock=clock
    )
    broken = {**sample("reminder"), "what": "x\r\ny"}
    bad = queue(engine, person_id=person, kind="reminder", context=broken, key="b", clock=clock)

    listing = json.loads(cli("outbox", "--json").output)
    assert listing["counts"] == {"pending": 2}
    assert [m["key"] for m in listing["messages"]] == ["g", "b"]

    dispatched = cli("dispatch", "--json")
    assert dispatched.exit_code == 0, dispatched.output
    assert json.loads(dispatched.output)["sent"] == 1
    assert len(list((tmp_path / "home" / "mail").glob("*.eml"))) == 1  # the embedded default

    failed = cli("outbox", "--failed")
    assert failed.exit_code == 0
    assert f"#{bad}  failed" in failed.output
    assert "line break" in failed.output
    assert f"#{good} " not in failed.output

    retried = cli("outbox", "retry", str(bad), "--json")
    assert json.loads(retried.output) == {"retried": [bad], "not_retryable": []}
    assert row(engine, bad).status == Status.PENDING
    assert cli("outbox", "retry", str(good)).exit_code == 1  # sent: nothing to retry
    assert cli("outbox", "retry").exit_code == 2
    all_failed = cli("outbox", "retry", "--all-failed")
    assert all_failed.exit_code == 0 and "0 message(s)" in all_failed.output


def test_calendar_writes_a_feed_of_a_bodys_meetings(cli: Cli, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    with Session(cli.runtime.engine()) as session:
        for day, status, sequence in ((12, "planned", 0), (19, "cancelled", 2)):
            session.add(
                Meeting(
                    body_id="board",
                    starts_at=datetime(2027, 1, day, 10, 0, tzinfo=LONDON),
                    ends_at=datetime(2027, 1, day, 12, 0, tzinfo=LONDON),
                    status=status,
                    ical_uid=f"board-202701{day}@wct",
                    ical_sequence=sequence,
                )
            )
        session.commit()
    out = tmp_path / "board.ics"
    result = cli("calendar", "--body", "board", "--output", out)
    assert result.exit_code == 0, result.output
    cal = icalendar.Calendar.from_ical(out.read_text())
    events = [c for c in cal.walk() if c.name == "VEVENT"]
    assert [(str(e["UID"]), int(str(e["SEQUENCE"])), str(e["STATUS"])) for e in events] == [
        ("board-20270112@wct", 0, "CONFIRMED"),
        ("board-20270119@wct", 2, "CANCELLED"),
    ]
    assert events[0].decoded("DTSTART") == datetime(2027, 1, 12, 10, 0, tzinfo=LONDON)
    unknown = cli("calendar", "--body", "nope")
    assert unknown.exit_code == 3 and "unknown body 'nope'" in unknown.output
