"""Members' contact list: parsed and checked against the constitution before anything is written.

Only what wct needs is kept (UK GDPR data minimisation): name, email, organisation, roles, an
optional Teams webhook, and preferred channels.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from models.constitution import BodyKind, Constitution, Role
from models.errors import MembersInvalid, Problem
from models.tables import Channel

COLUMNS = ("name", "email", "organisation", "roles", "teams_webhook", "channels")
REQUIRED = ("name", "email", "organisation", "roles")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class MemberRow:
    line: int
    name: str
    email: str
    organisation: str
    roles: tuple[str, ...]
    teams_webhook: str | None
    channels: tuple[Channel, ...]


def parse_members(text: str, constitution: Constitution, *, source: str) -> list[MemberRow]:
    """Every row valid, or MembersInvalid naming each bad row by line; 11.1.3 checked per person."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    problems: list[Problem] = []
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        detail = []
        if missing:
            detail.append(f"missing column(s): {', '.join(missing)}")
        if unknown:
            detail.append(f"unknown column(s): {', '.join(unknown)}")
        expected = ", ".join(COLUMNS)
        raise MembersInvalid(
            source, [Problem("header", "", "; ".join(detail) + f" (expected {expected})", 1)]
        )
    reader.fieldnames = header
    orgs = {o.id for o in constitution.organisations}
    roles = {r.id: r for r in constitution.roles}
    rows: list[MemberRow] = []
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        if None in raw:
            problems.append(Problem("row", "", "more fields than columns", line))
            continue
        values = {k: (v or "").strip() for k, v in raw.items()}
        if not any(values.values()):
            continue
        row_problems = _check_row(values, orgs, roles, line)
        email = values["email"].lower()
        if email in seen:
            row_problems.append(
                Problem("row", "email", f"'{email}' already given on line {seen[email]}", line)
            )
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


def _split(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[;|]", value) if part.strip()]


def _check_row(
    values: dict[str, str], orgs: set[str], roles: dict[str, Role], line: int
) -> list[Problem]:
    found: list[Problem] = []

    def bad(column: str, message: str) -> None:
        found.append(Problem("row", column, message, line))

    for column in REQUIRED:
        if not values.get(column):
            bad(column, "is empty")
    for column, value in values.items():
        if _CONTROL.search(value):
            bad(column, "contains a control character (CR, LF, tab or similar)")
    if len(values.get("name", "")) > 200:
        bad("name", "is longer than 200 characters")
    email = values.get("email", "")
    if email and not _EMAIL.match(email):
        bad("email", f"'{email}' is not an email address")
    organisation = values.get("organisation", "")
    if organisation and organisation not in orgs:
        bad("organisation", f"unknown organisation '{organisation}'")
    for role_id in _split(values.get("roles", "")):
        role = roles.get(role_id)
        if role is None:
            bad("roles", f"unknown role '{role_id}'")
        elif role.organisation not in (None, organisation):
            bad("roles", f"role '{role_id}' belongs to '{role.organisation}', not '{organisation}'")
    channels = _split(values.get("channels") or "email")
    for channel in channels:
        if channel not in {c.value for c in Channel}:
            bad("channels", f"unknown channel '{channel}' (use email and/or teams)")
    webhook = values.get("teams_webhook", "")
    if "teams" in channels and not webhook:
        bad("teams_webhook", "channel 'teams' chosen but no Teams webhook URL given")
    if webhook and not webhook.startswith("https://"):
        bad("teams_webhook", "must be an https:// Power Automate Workflows URL")
    return found


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
