"""Who may take each step of a case: the constitution's `permissions`, for CLI and UI alike."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from models.constitution import CaseAction, Constitution, RoleKind
from models.errors import NotFound, Refused
from models.tables import Person, PersonRole


class NotPermitted(Refused):
    """The acting person may not take this step."""


class UnknownMember(NotFound):
    """No active member has that email or pseudonym."""


@dataclass(frozen=True)
class Actor:
    """A member acting on a case: who, from which organisation, holding which roles."""

    person_id: int
    pseudonym: str
    organisation: str
    roles: frozenset[str]


@dataclass(frozen=True)
class CaseScope:
    """What the relative grants refer to: the case's parties and an approval gate's bodies."""

    parties: frozenset[str] = field(default_factory=frozenset)
    approver_body: str | None = None
    proposer_body: str | None = None


def find_actor(session: Session, who: str) -> Actor:
    """The active member with this email (any case) or pseudonym."""
    key = who.strip().lower()
    person = session.exec(
        select(Person).where(
            col(Person.active).is_(True), (Person.email == key) | (Person.pseudonym == key)
        )
    ).first()
    if person is None or person.id is None:
        raise UnknownMember(f"no active member '{who}' (see `wct members list`)")
    roles = session.exec(select(PersonRole.role_id).where(PersonRole.person_id == person.id)).all()
    return Actor(person.id, person.pseudonym, person.organisation_id, frozenset(roles))


def _sits_on(c: Constitution, actor: Actor, body_id: str) -> bool:
    for seat in c.body(body_id).members:
        if seat.role in actor.roles and seat.organisation in (None, actor.organisation):
            return True
    return False


def _grants(c: Constitution, grant: str, actor: Actor, scope: CaseScope) -> bool:
    form, _, ref = grant.partition(":")
    match form:
        case "anyone":
            return True
        case "party":
            return actor.organisation in scope.parties
        case "party-chief-executive":
            chief = c.roles_of(RoleKind.CHIEF_EXECUTIVE)
            return actor.organisation in scope.parties and bool(actor.roles & chief)
        case "approver-chair":
            return scope.approver_body is not None and _chairs(c, actor, scope.approver_body)
        case "proposer-member":
            return scope.proposer_body is not None and _sits_on(c, actor, scope.proposer_body)
        case "role":
            return ref in actor.roles
        case "kind":
            return bool(actor.roles & c.roles_of(RoleKind(ref)))
        case "chair":
            return c.body(ref).chair in actor.roles
        case "deputy":
            deputy = c.body(ref).deputy
            return deputy is not None and deputy in actor.roles
        case "member":
            return _sits_on(c, actor, ref)
    return False


def _chairs(c: Constitution, actor: Actor, body_id: str) -> bool:
    body = c.body(body_id)
    return body.chair in actor.roles or (body.deputy is not None and body.deputy in actor.roles)


def allowed(c: Constitution, action: CaseAction, actor: Actor, scope: CaseScope) -> bool:
    return any(_grants(c, grant, actor, scope) for grant in c.permissions.get(action, []))


def require(
    c: Constitution,
    action: CaseAction,
    actor: Actor,
    scope: CaseScope,
    *,
    clause: str | None = None,
) -> None:
    """Refuse, naming who may (and the MoU `clause` of the step, when given), unless the
    constitution lets `actor` take `action`."""
    if not allowed(c, action, actor, scope):
        who = ", ".join(c.permissions.get(action, [])) or "nobody (no grant in the constitution)"
        raise NotPermitted(
            f"{actor.pseudonym} may not {action.value}: allowed are {who}", clause=clause
        )
