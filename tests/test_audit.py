"""4.1: the hash-chained audit trail catches edits, deletions, reordering and a cut tail."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import audit
from models.clock import FixedClock
from models.tables import AuditEvent, AuditHead
from models.uow import UnitOfWork

from .conftest import Cli


def write_events(engine: Engine, clock: FixedClock, count: int, org: str = "nhs-wirral") -> None:
    for n in range(count):
        with UnitOfWork(engine, clock=clock, actor="test") as uow:
            uow.record(
                "test.event", f"thing:{n}", before={"n": n}, after={"n": n + 1}, organisations=[org]
            )
            uow.commit()


def findings(engine: Engine) -> list[audit.Finding]:
    with Session(engine) as session:
        return audit.verify(session)


def sql(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(statement)


def test_an_untouched_trail_verifies(loaded: Engine, clock: FixedClock) -> None:
    write_events(loaded, clock, 5)
    assert findings(loaded) == []


def test_an_edited_event_is_named(loaded: Engine, clock: FixedClock) -> None:
    write_events(loaded, clock, 5)
    sql(loaded, """UPDATE audit_event SET "after" = '{"n":99}' WHERE seq = 3""")
    assert [(f.seq, f.kind) for f in findings(loaded)] == [(3, "edited")]


def test_a_changed_actor_or_time_is_an_edit(loaded: Engine, clock: FixedClock) -> None:
    write_events(loaded, clock, 3)
    sql(loaded, "UPDATE audit_event SET actor = 'someone-else' WHERE seq = 2")
    assert [(f.seq, f.kind) for f in findings(loaded)] == [(2, "edited")]


def test_a_deleted_event_is_named(loaded: Engine, clock: FixedClock) -> None:
    write_events(loaded, clock, 5)
    sql(loaded, "DELETE FROM audit_event WHERE seq = 4")
    found = findings(loaded)
    assert [(f.seq, f.kind) for f in found] == [(4, "deleted")]
    assert "event 4 is missing" in found[0].message


def test_reordered_events_are_named(loaded: Engine, clock: FixedClock) -> None:
    write_events(loaded, clock, 5)
    sql(loaded, "UPDATE audit_event SET seq = -1 WHERE seq = 2")
    sql(loaded, "UPDATE audit_event SET seq = 2 WHERE seq = 3")
    sql(loaded, "UPDATE audit_event SET seq = 3 WHERE seq = -1")
    found = findings(loaded)
    assert {(f.seq, f.kind) for f in found} == {(2, "reordered"), (3, "reordered")}
    assert any("written as event 3" in f.message for f in found)


def test_a_cut_tail_is_caught(loaded: Engine, clock: FixedClock) -> None:
    write_events(loaded, clock, 5)
    sql(loaded, "DELETE FROM audit_event WHERE seq >= 5")
    assert [(f.seq, f.kind) for f in findings(loaded)] == [(5, "truncated")]


def test_a_rewritten_chain_is_caught_by_a_published_checkpoint(
    loaded: Engine, clock: FixedClock
) -> None:
    write_events(loaded, clock, 3)
    with Session(loaded) as session:
        published = audit.checkpoint(session)
    # Someone with write access rebuilds the whole chain consistently from event 2 on.
    sql(loaded, "DELETE FROM audit_event WHERE seq >= 2")
    with Session(loaded) as session:
        first = session.get(AuditEvent, 1)
        head = session.get(AuditHead, 1)
        assert first is not None and head is not None
        head.seq, head.hash = 1, first.hash
        session.add(head)
        session.commit()
    write_events(loaded, clock, 3, org="merseyside-police")
    assert findings(loaded) == []
    with Session(loaded) as session:
        caught = audit.verify(session, checkpoint=published)
    assert [f.kind for f in caught] == ["checkpoint"]


def test_concurrent_writers_keep_one_unbroken_chain(loaded: Engine, clock: FixedClock) -> None:
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            write_events(loaded, clock, 15)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert findings(loaded) == []
    with Session(loaded) as session:
        assert audit.checkpoint(session)[0] == 1 + 45


def test_a_rolled_back_command_leaves_no_event(loaded: Engine, clock: FixedClock) -> None:
    with Session(loaded) as session:
        before = audit.checkpoint(session)
    with pytest.raises(RuntimeError), UnitOfWork(loaded, clock=clock, actor="t") as uow:
        uow.record("test.event", "x", before=None, after={"a": 1})
        raise RuntimeError("the command failed after auditing")
    with Session(loaded) as session:
        assert audit.checkpoint(session) == before
    assert findings(loaded) == []


# --- through the CLI ------------------------------------------------------------------------


def test_cli_verify_reports_the_tampered_event_and_exits_1(cli: Cli) -> None:
    assert cli("init").exit_code == 0
    write_events(cli.runtime.engine(), cli.runtime.clock, 4)  # type: ignore[arg-type]
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and "intact: 5 events" in ok.output
    sql(cli.runtime.engine(), "DELETE FROM audit_event WHERE seq = 2")
    broken = cli("audit", "verify")
    assert broken.exit_code == 1
    assert "deleted: event 2 is missing" in broken.output
    as_json = cli("audit", "verify", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["findings"][0]["seq"] == 2


def test_cli_checkpoint_round_trips(cli: Cli) -> None:
    cli("init")
    point = cli("audit", "checkpoint").stdout.strip()
    assert cli("audit", "verify", "--checkpoint", point).exit_code == 0
    bad = cli("audit", "verify", "--checkpoint", "1:nothex")
    assert bad.exit_code == 2 and "is not SEQ:SHA256" in bad.output


def test_cli_export_jsonl_csv_and_by_organisation(cli: Cli) -> None:
    cli("init")
    engine = cli.runtime.engine()
    write_events(engine, cli.runtime.clock, 2, org="nhs-wirral")  # type: ignore[arg-type]
    write_events(engine, cli.runtime.clock, 1, org="merseyside-police")  # type: ignore[arg-type]
    lines = cli("audit", "export", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4]
    police = cli("audit", "export", "--organisation", "merseyside-police").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in police] == [1, 4]  # the constitution + its own
    rows = list(csv.DictReader(io.StringIO(cli("audit", "export", "--format", "csv").stdout)))
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[1]["hash"] == json.loads(lines[1])["hash"]
    unknown = cli("audit", "export", "--organisation", "atlantis")
    assert unknown.exit_code == 3 and "unknown organisation 'atlantis'" in unknown.output
    wrong = cli("audit", "export", "--format", "xml")
    assert wrong.exit_code == 2


def test_every_exported_hash_can_be_recomputed(cli: Cli) -> None:
    cli("init")
    write_events(cli.runtime.engine(), cli.runtime.clock, 3)  # type: ignore[arg-type]
    prev = "0" * 64
    for line in cli("audit", "export").stdout.splitlines():
        row = json.loads(line)
        assert row["prev_hash"] == prev
        prev = row["hash"]
