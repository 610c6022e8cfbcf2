"""Members' contact list: parsed and checked against the constitution before anything is written.

Only what wct needs is kept (UK GDPR data minimisation): name, email, organisation, roles, an
optional Teams webhook, and preferred channels.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from models.constitution import BodyKind, Constitution, Role
from models.errors import MembersInvalid, Problem
from models.tables import Channel
from models.webhooks import teams_webhook_problem

COLUMNS = ("name", "email", "organisation", "roles", "teams_webhook", "channels")
REQUIRED = ("name", "email", "organisation", "roles")
FIELD_LIMIT = 10_000  # characters in one field; csv's own limit (131,072) is far above any real one
MAX_NAME = 200
# Characters no field may hold: C0 and C1 controls (CR and LF let a name forge a mail header),
# bidirectional embeddings, overrides and isolates (they make text display other than it reads),
# and the Unicode line and paragraph separators.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@dataclass(frozen=True)
class MemberRow:
    line: int
    name: str
    email: str
    organisation: str
    roles: tuple[str, ...]
    teams_webhook: str | None
    channels: tuple[Channel, ...]


def decode_members(data: bytes, *, source: str) -> str:
    """A members file's text: UTF-8 (a leading BOM allowed), else MembersInvalid naming the line,
    the byte offset and the byte that is not UTF-8."""
    body = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start + len(data) - len(body)
        line = data.count(b"\n", 0, at) + 1
        column = at - data.rfind(b"\n", 0, at)
        message = (
            f"byte 0x{data[at]:02X} at byte offset {at} (byte {column} of the line) is not "
            "UTF-8: save the file as UTF-8 (CSV UTF-8 in Excel)"
        )
        raise MembersInvalid(source, [Problem("encoding", "", message, line)]) from None


def parse_members(text: str, constitution: Constitution, *, source: str) -> list[MemberRow]:
    """Every row valid, or MembersInvalid naming each bad row by the first line of its record;
    11.1.3 checked per person."""
    problems: list[Problem] = []
    records = _records(text, problems)
    header = [h.strip() for h in (records[0][1] if records else [])]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [_shown(c) for c in header if c not in COLUMNS]
    twice = sorted({c for c in header if header.count(c) > 1})
    if missing or unknown or twice:
        detail = []
        if missing:
            detail.append(f"missing column(s): {', '.join(missing)}")
        if unknown:
            detail.append(f"unknown column(s): {', '.join(unknown)}")
        if twice:
            detail.append(f"column(s) given twice: {', '.join(twice)}")
        expected = ", ".join(COLUMNS)
        problems.insert(0, Problem("header", "", "; ".join(detail) + f" (expected {expected})", 1))
        raise MembersInvalid(source, problems)
    orgs = {o.id for o in constitution.organisations}
    roles = {r.id: r for r in constitution.roles}
    rows: list[MemberRow] = []
    seen: dict[str, int] = {}
    for line, fields in records[1:]:
        if len(fields) > len(header):
            problems.append(Problem("row", "", "more fields than columns", line))
            continue
        raw = {column: fields[i] if i < len(fields) else "" for i, column in enumerate(header)}
        if not any(v.strip() for v in raw.values()):
            continue
        row_problems, values = _check_row(raw, orgs, roles, line)
        email = values["email"]
        if email and email in seen:
            row_problems.append(
                Problem("row", "email", f"'{email}' already given on line {seen[email]}", line)
            )
        if email:
            seen.setdefault(email, line)
        if row_problems:
            problems.extend(row_problems)
            continue
        rows.append(
            MemberRow(
                line=line,
                name=values["name"],
                email=email,
                organisation=values["organisation"],
                roles=tuple(_split(values["roles"])),
                teams_webhook=values.get("teams_webhook") or None,
                channels=tuple(Channel(c) for c in _split(values.get("channels") or "email")),
            )
        )
    problems.extend(_distinct_chair_holders(rows, constitution))
    if problems:
        raise MembersInvalid(source, problems)
    return rows


def _records(text: str, problems: list[Problem]) -> list[tuple[int, list[str]]]:
    """Each CSV record with the first physical line it starts on (a quoted field may span lines);
    a malformed record ends the reading, as a problem naming where that record starts."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    records: list[tuple[int, list[str]]] = []
    end = 0  # the last line the reader has consumed
    try:
        for fields in reader:
            records.append((end + 1, fields))
            end = reader.line_num
    except csv.Error as exc:
        message = str(exc)
        if "field larger than field limit" in message:
            message = f"a field is longer than {FIELD_LIMIT:,} characters (an unclosed quote?)"
        elif "unexpected end of data" in message:
            message = "a quoted field is never closed (unexpected end of file)"
        problems.append(Problem("csv", "", f"not valid CSV: {message}", end + 1))
    return records


def _split(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[;|]", value) if part.strip()]


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'control character').lower()})"


def _shown(value: str, limit: int = 60) -> str:
    """`value` safe to print in one line of an error: forbidden characters escaped, cut short."""
    cut = value[:limit]
    shown = "".join(f"\\u{ord(c):04x}" if _FORBIDDEN.match(c) else c for c in cut)
    return shown + ("..." if len(value) > limit else "")


def _check_row(
    raw: dict[str, str], orgs: set[str], roles: dict[str, Role], line: int
) -> tuple[list[Problem], dict[str, str]]:
    """The row's problems, and its values stripped (the email normalised and lower-cased)."""
    found: list[Problem] = []
    broken: set[str] = set()

    def bad(column: str, message: str) -> None:
        found.append(Problem("row", column, message, line))
        broken.add(column)

    for column, value in raw.items():
        if len(value) > FIELD_LIMIT:
            bad(column, f"is longer than {FIELD_LIMIT:,} characters")
        elif (char := _FORBIDDEN.search(value)) is not None:
            bad(
                column,
                f"contains {_describe(char.group())} at character {char.start() + 1}: control "
                "characters, bidirectional controls and line separators are not allowed",
            )
    values = {k: ("" if k in broken else v.strip()) for k, v in raw.items()}
    for column in REQUIRED:
        if column not in broken and not values.get(column):
            bad(column, "is empty")
    if len(values["name"]) > MAX_NAME:
        bad("name", f"is longer than {MAX_NAME} characters")
    if values["email"]:
        try:
            checked = validate_email(
                values["email"], check_deliverability=False, allow_smtputf8=False, strict=True
            )
        except EmailNotValidError as exc:
            bad("email", f"'{_shown(values['email'])}' is not an email address: {exc}")
            values["email"] = ""
        else:
            values["email"] = (checked.ascii_email or checked.normalized).lower()
    organisation = values["organisation"]
    if organisation and organisation not in orgs:
        bad("organisation", f"unknown organisation '{_shown(organisation)}'")
    for role_id in _split(values["roles"]):
        role = roles.get(role_id)
        if role is None:
            bad("roles", f"unknown role '{_shown(role_id)}'")
        elif role.organisation not in (None, organisation):
            bad("roles", f"role '{role_id}' belongs to '{role.organisation}', not '{organisation}'")
    channels = _split(values.get("channels") or "email")
    for channel in channels:
        if channel not in {c.value for c in Channel}:
            bad("channels", f"unknown channel '{_shown(channel)}' (use email and/or teams)")
    webhook = values.get("teams_webhook", "")
    if "teams" in channels and not webhook and "teams_webhook" not in broken:
        bad("teams_webhook", "channel 'teams' chosen but no Teams webhook URL given")
    if webhook and (problem := teams_webhook_problem(webhook)) is not None:
        bad("teams_webhook", problem)
    return found, values


def _distinct_chair_holders(rows: list[MemberRow], c: Constitution) -> list[Problem]:
    """11.1.3 for people: no one may hold both the Board's and the Safeguarding Board's chair."""
    clause = next((v for k, v in c.rules.items() if k == "distinct_chairs"), None)
    boards = c.bodies_of(BodyKind.BOARD)
    wscbs = c.bodies_of(BodyKind.SAFEGUARDING_BOARD)
    if clause is None or len(boards) != 1 or len(wscbs) != 1:
        return []
    board_chair, wscb_chair = boards[0].chair, wscbs[0].chair
    return [
        Problem(
            clause,
            "roles",
            f"holds both '{board_chair}' and '{wscb_chair}': the Board and the Safeguarding Board "
            "must be chaired by different people",
            row.line,
        )
        for row in rows
        if board_chair in row.roles and wscb_chair in row.roles
    ]
