"""Members' contact list: import, re-import in place, bad rows by line with nothing written;
addresses, free text, CSV, encoding and Teams webhooks checked; a prune that empties or halves the
list refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.clock import FixedClock
from models.commands import MembersImported, current_constitution, import_members
from models.errors import MembersInvalid, Problem, Refused
from models.members import decode_members, parse_members
from models.tables import AuditEvent, Person, PersonRole
from models.uow import UnitOfWork

from .conftest import DATA

HEADER = "name,email,organisation,roles,teams_webhook,channels\n"
GOOD = (DATA / "members.csv").read_text()


def run_import(
    engine: Engine, clock: FixedClock, text: str, *, prune: bool = False, confirmed: bool = False
) -> MembersImported:
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        rows = parse_members(text, current_constitution(uow.session), source="members.csv")
        result = import_members(uow, rows=rows, prune=prune, confirmed=confirmed)
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
    pruned = run_import(loaded, clock, short, prune=True, confirmed=True)
    assert len(pruned.deactivated) == 4
    with Session(loaded) as s:
        assert len(s.exec(select(Person).where(col(Person.active).is_(True))).all()) == 2


def test_prune_of_half_or_fewer_needs_no_confirmation(loaded: Engine, clock: FixedClock) -> None:
    run_import(loaded, clock, GOOD)
    four = "".join(GOOD.splitlines(keepends=True)[:5])  # header and 4 of the 6
    pruned = run_import(loaded, clock, four, prune=True)
    assert len(pruned.deactivated) == 2


def test_prune_of_more_than_half_is_refused_without_confirmation(
    loaded: Engine, clock: FixedClock
) -> None:
    run_import(loaded, clock, GOOD)
    before = snapshot(loaded)
    short = "".join(GOOD.splitlines(keepends=True)[:3])
    with pytest.raises(Refused, match=r"deactivate 4 of the 6 active members.*--yes"):
        run_import(loaded, clock, short, prune=True)
    assert snapshot(loaded) == before


@pytest.mark.parametrize("text", [HEADER, HEADER + "\n,,,,,\n"])
def test_prune_with_no_member_rows_is_always_refused(
    loaded: Engine, clock: FixedClock, text: str
) -> None:
    run_import(loaded, clock, GOOD)
    before = snapshot(loaded)
    with pytest.raises(Refused, match="no member rows"):
        run_import(loaded, clock, text, prune=True, confirmed=True)
    assert snapshot(loaded) == before


ROW = "Ann,ann@x.example,nhs-wirral,representative,,email"


def bad_import(engine: Engine, clock: FixedClock, text: str) -> list[Problem]:
    """Import `text`, which must fail: its problems; and the database must be unchanged."""
    before = snapshot(engine)
    with pytest.raises(MembersInvalid) as caught:
        run_import(engine, clock, text)
    assert snapshot(engine) == before
    return caught.value.problems


@pytest.mark.parametrize(
    ("email", "words"),
    [
        ("a..b@x.example", "two periods"),
        (".ann@x.example", "period"),
        ("ann.@x.example", "period"),
        ("ann@x..example", "period"),
        ("ann@-x.example", "hyphen"),
        ("ann@x", "should have a period"),
        ("ann@" + "x" * 64 + ".example", "too many"),  # a label over 63 characters
        ("ann@" + ("x" * 60 + ".") * 5 + "example", "too long"),  # over 254 in all
        ("a" * 65 + "@x.example", "too long"),
        ("ann@@x.example", "@"),
        ("ann@[127.0.0.1]", "bracketed ip"),
        ("j\u00f6rg@x.example", "internationalized"),
        ('"""ann b""@x.example"', "quoting"),  # the CSV field "ann b"@x.example
        ("ann@x.local", "special-use"),
        ("ann@localhost", "period"),
        ("ann@x_y.example", "invalid character"),
        ("x" * 100_000 + "@x.example", "longer than 10,000 characters"),
    ],
)
def test_an_email_address_that_breaks_the_rfcs_is_refused(
    loaded: Engine, clock: FixedClock, email: str, words: str
) -> None:
    [problem] = bad_import(loaded, clock, GOOD + ROW.replace("ann@x.example", email) + "\n")
    assert (problem.line, problem.path) == (8, "email")
    assert words in problem.message.lower()
    assert len(problem.message) < 300  # the address is cut short in the message


def test_an_email_address_is_normalised(loaded: Engine, clock: FixedClock) -> None:
    run_import(loaded, clock, HEADER + "Ann,Ann@X.Example,nhs-wirral,representative,,email\n")
    run_import(
        loaded, clock, HEADER + "Ann,ann@m\u00fcnchen.example,nhs-wirral,representative,,email\n"
    )
    with Session(loaded) as s:
        emails = set(s.exec(select(Person.email)).all())
    assert emails == {"ann@x.example", "ann@xn--mnchen-3ya.example"}


@pytest.mark.parametrize(
    ("char", "column"),
    [
        ("\u202e", "name"),  # right-to-left override
        ("\u202a", "name"),
        ("\u2066", "name"),  # left-to-right isolate
        ("\u2069", "organisation"),
        ("\u2028", "name"),  # line separator
        ("\u2029", "name"),
        ("\x85", "name"),  # NEL, a C1 control
        ("\x1b", "name"),
        ("\t", "roles"),
        ("\x00", "name"),
    ],
)
def test_control_and_bidi_characters_are_refused_by_code_point(
    loaded: Engine, clock: FixedClock, char: str, column: str
) -> None:
    row = {"name": "Ann", "organisation": "nhs-wirral", "roles": "representative"}
    row[column] = row[column][:2] + char + row[column][2:]
    text = f"{row['name']},ann@x.example,{row['organisation']},{row['roles']},,email\n"
    [problem] = bad_import(loaded, clock, GOOD + text)
    assert (problem.line, problem.path) == (8, column)
    assert f"U+{ord(char):04X}" in problem.message and "at character 3" in problem.message


def test_a_quoted_multi_line_record_is_named_by_its_first_line(
    loaded: Engine, clock: FixedClock
) -> None:
    text = GOOD + '"Ann\nExample",a..b@x.example,nhs-wirral,representative,,email\n'
    text += ROW.replace("nhs-wirral", "atlantis").replace("ann@", "bo@") + "\n"
    problems = bad_import(loaded, clock, text)
    assert [(p.line, p.path) for p in problems] == [(8, "name"), (8, "email"), (10, "organisation")]


@pytest.mark.parametrize(
    ("tail", "words"),
    [
        ('"Ann,ann@x.example,nhs-wirral,representative,,email\n' + ROW + "\n", "never closed"),
        ("B" * 1_000_000 + "," + ROW[4:] + "\n", "longer than 10,000 characters"),
        ('"Ann"x,ann@x.example,nhs-wirral,representative,,email\n', "not valid csv"),
    ],
)
def test_a_broken_csv_record_is_named_by_its_first_line(
    loaded: Engine, clock: FixedClock, tail: str, words: str
) -> None:
    [problem] = bad_import(loaded, clock, GOOD + tail)
    assert problem.line == 8
    assert words in problem.message.lower()


def test_a_field_over_the_limit_is_named(loaded: Engine, clock: FixedClock) -> None:
    [problem] = bad_import(loaded, clock, GOOD + ROW.replace("Ann", "A" * 10_001) + "\n")
    assert (problem.line, problem.path) == (8, "name")
    assert "longer than 10,000 characters" in problem.message


def test_bytes_that_are_not_utf8_are_named_by_line_and_offset() -> None:
    data = GOOD.encode() + b"Ann,ann@x.example,nhs-wirral,repr\xe9sentative,,email\n"
    with pytest.raises(MembersInvalid) as caught:
        decode_members(data, source="m.csv")
    [problem] = caught.value.problems
    offset = len(GOOD.encode()) + 33
    assert problem.line == 8
    assert f"byte 0xE9 at byte offset {offset} (byte 34 of the line)" in problem.message
    bom = b"\xef\xbb\xbf" + GOOD.encode()
    assert decode_members(bom, source="m.csv") == GOOD


WEBHOOK = (
    "https://prod-00.westeurope.logic.azure.example:443/workflows/abc/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SECRETsig"
)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example:443", "localhost"), "localhost"),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example", "127.0.0.1"), "loopback"),
        (
            WEBHOOK.replace("prod-00.westeurope.logic.azure.example", "169.254.169.254"),
            "link-local",
        ),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example", "10.1.2.3"), "private"),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example", "192.168.0.9"), "private"),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example", "172.16.0.1"), "private"),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example", "0.0.0.0"), "unspecified"),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example:443", "[::1]"), "loopback"),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example:443", "[fe80::1]"), "link-local"),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example:443", "[fd00::1]"), "private"),
        (WEBHOOK.replace("prod-00.westeurope.logic.azure.example", "2130706433"), "host"),
        (WEBHOOK.replace("https:", "http:"), "https"),
        (WEBHOOK.replace("/triggers/manual/paths/invoke", ""), "path"),
        (WEBHOOK.replace("sig=SECRETsig", "sig=SECRET%2Bsig"), "signature"),
        (WEBHOOK.replace("&sig=SECRETsig", ""), "signature"),
        (WEBHOOK + "&template=/etc/passwd", "unexpected query parameter"),
    ],
)
def test_a_teams_webhook_that_cannot_work_is_refused_at_import(
    loaded: Engine, clock: FixedClock, url: str, words: str
) -> None:
    text = GOOD + f"Ann,ann@x.example,nhs-wirral,representative,{url},email;teams\n"
    [problem] = bad_import(loaded, clock, text)
    assert (problem.line, problem.path) == (8, "teams_webhook")
    assert words in problem.message.lower()
    assert "SECRET" not in problem.message  # the signature is never shown


def test_a_working_teams_webhook_is_kept(loaded: Engine, clock: FixedClock) -> None:
    run_import(
        loaded, clock, HEADER + f"Ann,ann@x.example,nhs-wirral,representative,{WEBHOOK},teams\n"
    )
    with Session(loaded) as s:
        assert s.exec(select(Person.teams_webhook)).one() == WEBHOOK


def test_sample_file_exists() -> None:
    assert Path(DATA / "members.csv").read_text().startswith(HEADER.strip())
