"""Members' contact list: import, re-import in place, bad rows by line with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.clock import FixedClock
from models.commands import MembersImported, current_constitution, import_members
from models.errors import MembersInvalid
from models.members import parse_members
from models.tables import AuditEvent, Person, PersonRole
from models.uow import UnitOfWork

from .conftest import DATA

HEADER = "name,email,organisation,roles,teams_webhook,channels\n"
GOOD = (DATA / "members.csv").read_text()


def run_import(
    engine: Engine, clock: FixedClock, text: str, *, prune: bool = False
) -> MembersImported:
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        rows = parse_members(text, current_constitution(uow.session), source="members.csv")
        result = import_members(uow, rows=rows, prune=prune)
        uow.commit()
    return result


def snapshot(engine: Engine) -> tuple[list[tuple[str, str, str, str]], list[tuple[int, str]], int]:
    with Session(engine) as s:
        people = [
            (p.email, p.name, p.organisation_id, p.channels)
            for p in s.exec(select(Person).order_by(col(Person.email)))
        ]
        roles = sorted((r.person_id, r.role_id) for r in s.exec(select(PersonRole)))
        events = len(s.exec(select(AuditEvent)).all())
    return people, roles, events


def test_import_then_reimport_updates_in_place(loaded: Engine, clock: FixedClock) -> None:
    first = run_import(loaded, clock, GOOD)
    assert len(first.added) == 6
    changed = GOOD.replace(
        "Sam Police,sam@police.example,merseyside-police,representative,,email",
        "Sam Police,SAM@police.example,merseyside-police,representative;chief-executive,,email",
    )
    second = run_import(loaded, clock, changed)
    assert (len(second.added), len(second.updated), len(second.unchanged)) == (0, 1, 5)
    people, roles, _ = snapshot(loaded)
    assert len(people) == 6
    with Session(loaded) as s:
        sam = s.exec(select(Person).where(Person.email == "sam@police.example")).one()
        held = set(s.exec(select(PersonRole.role_id).where(PersonRole.person_id == sam.id)).all())
    assert held == {"representative", "chief-executive"}
    third = run_import(loaded, clock, changed)
    assert len(third.unchanged) == 6


def test_audit_keeps_names_and_emails_out(loaded: Engine, clock: FixedClock) -> None:
    run_import(loaded, clock, GOOD)
    with Session(loaded) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "member.added")).all()
    assert len(events) == 6
    text = " ".join(e.before + e.after + e.subject for e in events)
    assert "Julia" not in text and "@" not in text and "logic.azure" not in text
    assert all(e.subject.startswith("person:p-") for e in events)


@pytest.mark.parametrize(
    ("row", "column", "words"),
    [
        (
            "Ann,ann@x.example,atlantis,representative,,email",
            "organisation",
            "unknown organisation",
        ),
        ("Ann,ann@x.example,nhs-wirral,wizard,,email", "roles", "unknown role"),
        ("Ann,not-an-email,nhs-wirral,representative,,email", "email", "not an email"),
        (
            "Ann,ann@x.example,nhs-wirral,representative,,email;pigeon",
            "channels",
            "unknown channel",
        ),
        ("Ann,ann@x.example,nhs-wirral,representative,,teams", "teams_webhook", "no teams webhook"),
        (
            "Ann,ann@x.example,nhs-wirral,representative,http://hook.example,email",
            "teams_webhook",
            "https",
        ),
        (",ann@x.example,nhs-wirral,representative,,email", "name", "empty"),
        ("Ann,ann@x.example,merseyside-police,dcs,,email", "roles", "belongs to 'wirral-council'"),
        (
            "Ann,lead.member@wirral.example,wirral-council,lead-member,,email",
            "email",
            "already given",
        ),
    ],
)
def test_a_bad_row_names_its_line_and_nothing_is_written(
    loaded: Engine, clock: FixedClock, row: str, column: str, words: str
) -> None:
    before = snapshot(loaded)
    text = GOOD + row + "\n"
    with pytest.raises(MembersInvalid) as caught:
        run_import(loaded, clock, text)
    [problem] = caught.value.problems
    assert problem.line == 8 and problem.path == column
    assert words in problem.message.lower()
    assert snapshot(loaded) == before


def test_a_header_injection_attempt_is_a_bad_row(loaded: Engine, clock: FixedClock) -> None:
    text = HEADER + '"Eve\r\nBcc: all@x.example",eve@x.example,nhs-wirral,representative,,email\n'
    with pytest.raises(MembersInvalid, match="control character"):
        run_import(loaded, clock, text)


def test_11_1_3_one_person_cannot_chair_both_boards(loaded: Engine) -> None:
    # In Wirral's constitution each chair role belongs to a different organisation, which already
    # stops one person holding both; a partnership whose roles float still gets 11.1.3.
    with Session(loaded) as s:
        c = current_constitution(s)
    floating = c.model_copy(
        update={"roles": [r.model_copy(update={"organisation": None}) for r in c.roles]}
    )
    two = HEADER + "Pat,pat@x.example,wirral-council,lead-member,,email\n"
    two += "Chris,chris@x.example,wscb,wscb-independent-chair,,email\n"
    assert len(parse_members(two, floating, source="m.csv")) == 2
    one = HEADER + "Pat,pat@x.example,wirral-council,lead-member;wscb-independent-chair,,email\n"
    with pytest.raises(MembersInvalid) as caught:
        parse_members(one, floating, source="m.csv")
    [problem] = caught.value.problems
    assert (problem.clause, problem.line, problem.path) == ("11.1.3", 2, "roles")


def test_missing_and_unknown_columns(loaded: Engine, clock: FixedClock) -> None:
    with pytest.raises(MembersInvalid, match="missing column.*roles.*unknown column.*shoe_size"):
        run_import(loaded, clock, "name,email,organisation,shoe_size\n")


def test_prune_deactivates_members_not_in_the_file(loaded: Engine, clock: FixedClock) -> None:
    run_import(loaded, clock, GOOD)
    short = "".join(GOOD.splitlines(keepends=True)[:3])
    kept = run_import(loaded, clock, short)
    assert len(kept.not_in_file) == 4 and not kept.deactivated
    pruned = run_import(loaded, clock, short, prune=True)
    assert len(pruned.deactivated) == 4
    with Session(loaded) as s:
        assert len(s.exec(select(Person).where(col(Person.active).is_(True))).all()) == 2


def test_sample_file_exists() -> None:
    assert Path(DATA / "members.csv").read_text().startswith(HEADER.strip())
