"""Who may do what: the principals that act (a member, the system, an outside party) and the
constitution's `permissions`, checked by `models.service.execute` for every command."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from models.constitution import Action, CaseAction, Constitution, RoleKind
from models.errors import InvalidInput, NotFound, Refused
from models.tables import Person, PersonRole

__all__ = [
    "OPERATOR",
    "SWEEP",
    "SYSTEM_CYCLE",
    "TIMER",
    "Actor",
    "CaseAction",
    "CaseScope",
    "NotPermitted",
    "Outsider",
    "Principal",
    "Scope",
    "System",
    "UnknownMember",
    "allowed",
    "find_actor",
    "require",
    "resolve",
]


class NotPermitted(Refused):
    """The acting person may not take this step."""


class UnknownMember(NotFound):
    """No active member has that email or pseudonym."""


@dataclass(frozen=True)
class Actor:
    """A member acting: who, from which organisation, holding which roles. A coordinator is a
    member whose role is of kind `coordinator`."""

    person_id: int
    pseudonym: str
    organisation: str
    roles: frozenset[str]

    @property
    def audit_name(self) -> str:
        """Who the audit chain says acted: the pseudonym, never a name or an email."""
        return self.pseudonym


_SYSTEM_NAME = re.compile(r"^(system|operator):[a-z0-9][a-z0-9-]{0,40}$")


@dataclass(frozen=True)
class System:
    """A named system principal: a timer, a sweep, a cycle run (`system:...`), or an operator
    running wct by hand (`operator:cli`). It may do what the system does, nothing a member must."""

    name: str

    def __post_init__(self) -> None:
        if not _SYSTEM_NAME.match(self.name):
            raise InvalidInput(f"'{self.name}' is not a system principal (system:NAME)")

    @property
    def audit_name(self) -> str:
        return self.name


@dataclass(frozen=True)
class Outsider:
    """An interested party outside the partnership (7.2), known only by the name they give,
    which goes in the message and never in the audit chain."""

    name: str

    @property
    def audit_name(self) -> str:
        return "public"


Principal = Actor | System | Outsider

TIMER = System("system:timer")
SWEEP = System("system:sweep")
SYSTEM_CYCLE = System("system:cycle")
OPERATOR = System("operator:cli")


@dataclass(frozen=True)
class Scope:
    """What the relative grants refer to: the body a command is about (`body-*`), a case's
    parties, an approval gate's bodies."""

    body: str | None = None
    parties: frozenset[str] = field(default_factory=frozenset)
    approver_body: str | None = None
    proposer_body: str | None = None
    owner: int | None = None  # the person an action tracker's action belongs to


CaseScope = Scope  # the name before every command had a scope


def find_actor(session: Session, who: str) -> Actor:
    """The active member with this email (any case) or pseudonym."""
    (person,) = active_people(session, [who])
    assert person.id is not None
    roles = session.exec(select(PersonRole.role_id).where(PersonRole.person_id == person.id)).all()
    return Actor(person.id, person.pseudonym, person.organisation_id, frozenset(roles))


def active_people(session: Session, whos: Sequence[str]) -> list[Person]:
    """The active members with these emails (any case) or pseudonyms, in the order named, read
    in one query; the first named who is not one is the error."""
    keys = [who.strip().lower() for who in whos]
    if not keys:
        return []
    wanted = sorted(set(keys))
    found: dict[str, Person] = {}
    for person in session.exec(
        select(Person).where(
            col(Person.active).is_(True),
            col(Person.email).in_(wanted) | col(Person.pseudonym).in_(wanted),
        )
    ):
        found.setdefault(person.email, person)
        found.setdefault(person.pseudonym, person)
    people: list[Person] = []
    for who, key in zip(whos, keys, strict=True):
        named = found.get(key)
        if named is None or named.id is None:
            raise UnknownMember(f"no active member '{who}' (see `wct members list`)")
        people.append(named)
    return people


def resolve(session: Session, c: Constitution, who: str | Principal, action: Action) -> Principal:
    """Who acts: a principal as given; else the member with that email or pseudonym; else, when
    the constitution lets anyone do `action` (7.2's challenge), an outside party by that name."""
    if not isinstance(who, str):
        return who
    try:
        return find_actor(session, who)
    except UnknownMember:
        if "anyone" not in c.grants(action):
            raise
    name = " ".join(who.split())
    if not name:
        raise InvalidInput("say who is acting (an email, or for the public a name)")
    if len(name) > 200:
        raise InvalidInput("the name of who is acting is longer than 200 characters")
    return Outsider(name)


def _sits_on(c: Constitution, actor: Actor, body_id: str) -> bool:
    for seat in c.body(body_id).members:
        if seat.role in actor.roles and seat.organisation in (None, actor.organisation):
            return True
    return False


def _grants(c: Constitution, grant: str, actor: Principal, scope: Scope) -> bool:
    form, _, ref = grant.partition(":")
    if isinstance(actor, System):
        return form == "system"
    if form == "anyone":
        return True
    if isinstance(actor, Outsider):
        return False
    match form:
        case "member":
            return True if not ref else _sits_on(c, actor, ref)
        case "party":
            return actor.organisation in scope.parties
        case "party-chief-executive":
            chief = c.roles_of(RoleKind.CHIEF_EXECUTIVE)
            return actor.organisation in scope.parties and bool(actor.roles & chief)
        case "approver-chair":
            return scope.approver_body is not None and _chairs(c, actor, scope.approver_body)
        case "proposer-member":
            return scope.proposer_body is not None and _sits_on(c, actor, scope.proposer_body)
        case "action-owner":
            return scope.owner is not None and actor.person_id == scope.owner
        case "body-member":
            return scope.body is not None and _sits_on(c, actor, scope.body)
        case "body-chair":
            return scope.body is not None and c.body(scope.body).chair in actor.roles
        case "body-deputy":
            return scope.body is not None and _holds_deputy(c, actor, scope.body)
        case "role":
            return ref in actor.roles
        case "kind":
            return bool(actor.roles & c.roles_of(RoleKind(ref)))
        case "chair":
            return c.body(ref).chair in actor.roles
        case "deputy":
            return _holds_deputy(c, actor, ref)
    return False


def _holds_deputy(c: Constitution, actor: Actor, body_id: str) -> bool:
    deputy = c.body(body_id).deputy
    return deputy is not None and deputy in actor.roles


def _chairs(c: Constitution, actor: Actor, body_id: str) -> bool:
    return c.body(body_id).chair in actor.roles or _holds_deputy(c, actor, body_id)


def allowed(c: Constitution, action: Action, actor: Principal, scope: Scope) -> bool:
    """Whether any of the constitution's grants for `action` covers `actor` in `scope`."""
    return any(_grants(c, grant, actor, scope) for grant in c.grants(action))


def require(
    c: Constitution,
    action: Action,
    actor: Principal,
    scope: Scope,
    *,
    clause: str | None = None,
) -> None:
    """Refuse, naming who may (and the `clause` of the step, when the constitution gives one,
    after what the partnership calls its agreement where space is short: Wirral's `(MoU 16.1)`),
    unless the constitution lets `actor` take `action`."""
    if not allowed(c, action, actor, scope):
        who = ", ".join(c.grants(action)) or "nobody (no grant in the constitution)"
        where = f" for {scope.body}" if scope.body else ""
        p = c.partnership
        raise NotPermitted(
            f"{actor.audit_name} may not {action.value}{where}: allowed are {who}",
            clause=clause,
            agreement=p.agreement_short_name or p.agreement_name,
        )
