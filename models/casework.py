"""What every case shares: finding the people to tell, telling them, and recording due steps."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date, datetime, time
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.clock import local_zone
from models.commands import current_constitution
from models.constitution import Constitution, RoleKind
from models.errors import InvalidInput
from models.messages import Brand, MessageContext, MessageMalformed, serialise
from models.outbox import channels_of, enqueue, enqueue_all, outbox_row
from models.permissions import Actor, Scope, allowed
from models.tables import (
    Channel,
    Person,
    PersonRole,
    Step,
)
from models.uow import UnitOfWork, remembered

CLOSE_OF_BUSINESS = time(17, 0)


class StepStatus(StrEnum):
    """What a step is: waiting to fire; fired (acted or found satisfied); stopped because what it
    waited for happened; or fired too late to be of use (see models/steps/engine.py)."""

    PENDING = "pending"
    DONE = "done"
    SETTLED = "settled"
    SKIPPED = "skipped"


def close_of_business(day: date) -> datetime:
    """A deadline day ends at 17:00 in the partnership's time zone."""
    return datetime.combine(day, CLOSE_OF_BUSINESS, tzinfo=local_zone())


def holders(
    session: Session, roles: Iterable[str], organisations: Iterable[str] | None = None
) -> list[Person]:
    """Active members holding any of `roles` (within `organisations`, when given); read once in
    a transaction that remembers roles."""
    wanted = tuple(roles)
    within = None if organisations is None else tuple(organisations)

    def read() -> list[Person]:
        if within is None:
            found = session.exec(_HOLDERS, params={"roles": list(wanted)})
        else:
            found = session.exec(
                _HOLDERS_IN, params={"roles": list(wanted), "organisations": list(within)}
            )
        return distinct(found.all())

    return list(remembered(session, ("holders", wanted, within), read))


# Built once (their cache keys too): every message a step sends asks one of them.
_HOLDERS = (
    select(Person)
    .join(PersonRole, col(PersonRole.person_id) == col(Person.id))
    .where(
        col(Person.active).is_(True),
        col(PersonRole.role_id).in_(sa.bindparam("roles", expanding=True)),
    )
    .order_by(col(Person.id))
)
_HOLDERS_IN = _HOLDERS.where(
    col(Person.organisation_id).in_(sa.bindparam("organisations", expanding=True))
)


def distinct(people: Iterable[Person]) -> list[Person]:
    """Each person once, in first-seen order."""
    seen: dict[int | None, Person] = {}
    for person in people:
        seen.setdefault(person.id, person)
    return list(seen.values())


def chairs(session: Session, c: Constitution, body_id: str) -> list[Person]:
    return holders(session, [c.body(body_id).chair])


def coordinators(session: Session, c: Constitution) -> list[Person]:
    return holders(session, c.roles_of(RoleKind.COORDINATOR))


def notify(
    uow: UnitOfWork,
    context: MessageContext,
    *,
    people: Iterable[Person],
    key: str,
    was_due: datetime | None = None,
    scope: Scope | None = None,
    body_channel: str | None = None,
) -> int:
    """Queue the message `context` (its kind's typed model, models/messages.py) for each person on
    each of their channels, addressed to them; a key already queued is skipped. The context is
    checked first: one that does not fit its kind raises MessageMalformed before anything is
    queued, and the command's transaction rolls back. `key` is the stem that makes the message
    distinct (see models/messages.py); `was_due`: the message is sent late, and says when it was
    due. A message that asks for an action (`context.ask`) names the `scope` the constitution's
    permission is checked in: only a recipient it lets take the action gets the ask (the button);
    the others get the same message as information. A message to a body's members
    (`body_channel`) is also posted once to that body's Teams channel, when its constitution
    names one (`teams_channel`), as information. The message carries the partnership's
    branding, and the clause of a process the constitution's `clauses:` names (`context.cites`),
    from the constitution in force (`branded`)."""
    payload = serialise(branded(current_constitution(uow.session), context), was_due=was_due)
    if context.ask is not None and scope is None:
        raise MessageMalformed(
            f"the {context.kind} message asks for {context.ask.action.value} "
            "but names no scope to check who may do it"
        )
    informative = {k: v for k, v in payload.items() if k != "ask"}
    recipients = distinct(people)
    may_act = _permitted(uow, recipients, context, scope) if scope is not None else frozenset[int]()
    queued = enqueue_all(
        uow.session,
        [
            outbox_row(
                key=f"{key}:{person.pseudonym}:{channel.value}",
                kind=context.kind,
                person=person,
                channel=channel,
                context={
                    **(payload if person.id in may_act else informative),
                    "recipient": person.name,
                },
                now=uow.clock.now(),
            )
            for person in recipients
            for channel in channels_of(person)
        ],
    )
    if body_channel is not None:
        group = current_constitution(uow.session).body(body_channel)
        if group.teams_channel:
            post = enqueue(
                uow.session,
                key=f"{key}:body-{group.id}:{Channel.TEAMS.value}",
                kind=context.kind,
                person=None,
                body_id=group.id,
                channel=Channel.TEAMS,
                context={**informative, "recipient": f"members of the {group.name}"},
                now=uow.clock.now(),
            )
            queued += post is not None
    return queued


def branded(c: Constitution, context: MessageContext) -> MessageContext:
    """`context` as the partnership of `c` sends it: its name, agreement, contact and logo, and
    the clause `c` gives the process it cites ("" when the file gives none). Anything else is
    left for `serialise` to refuse."""
    if not isinstance(context, MessageContext):
        return context
    p = c.partnership
    brand = Brand(
        partnership=p.name,
        agreement=p.agreement_name,
        agreement_short=p.agreement_short_name or p.agreement_name,
        contact_name=p.coordinator.name if p.coordinator else None,
        contact_email=p.coordinator.email if p.coordinator else None,
        logo_url=p.logo_url,
    )
    update: dict[str, object] = {"brand": brand}
    if context.cites is not None:
        update["clause"] = c.cite(context.cites)
    return context.model_copy(update=update)


def _permitted(
    uow: UnitOfWork, people: list[Person], context: MessageContext, scope: Scope
) -> frozenset[int]:
    """The ids of `people` the constitution lets take the action `context` asks for."""
    if context.ask is None or not people:
        return frozenset()
    c = current_constitution(uow.session)
    ids = tuple(p.id for p in people if p.id is not None)

    def read() -> dict[int, frozenset[str]]:
        held: dict[int, set[str]] = {i: set() for i in ids}
        for person_id, role_id in uow.session.exec(_ROLES_OF, params={"ids": list(ids)}):
            held[person_id].add(role_id)
        return {i: frozenset(r) for i, r in held.items()}

    roles = remembered(uow.session, ("roles_of", ids), read)
    return frozenset(
        p.id
        for p in people
        if p.id is not None
        and allowed(
            c,
            context.ask.action,
            Actor(p.id, p.pseudonym, p.organisation_id, roles[p.id]),
            scope,
        )
    )


_ROLES_OF = select(PersonRole.person_id, PersonRole.role_id).where(
    col(PersonRole.person_id).in_(sa.bindparam("ids", expanding=True))
)


def settle(session: Session, *, subject: str, now: datetime, kinds: Iterable[str] = ()) -> int:
    """Mark the pending steps of `subject` (of `kinds`, when given) done: they no longer fire."""
    query = select(Step).where(Step.subject == subject, Step.status == StepStatus.PENDING)
    wanted = list(kinds)
    if wanted:
        query = query.where(col(Step.kind).in_(wanted))
    steps = session.exec(query).all()
    for step in steps:
        step.status, step.done_at = StepStatus.SETTLED, now
        session.add(step)
    return len(steps)


def clean_text(value: str, *, what: str, limit: int, multiline: bool = False) -> str:
    """User text for a case: not empty, not too long, no control characters (CR/LF only when
    `multiline`, since single-line text ends up in email subjects)."""
    text = value.strip()
    if not text:
        raise InvalidInput(f"{what} is empty")
    if len(text) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    allowed = {"\n", "\r", "\t"} if multiline else set()
    if any((ord(ch) < 32 or ord(ch) == 127) and ch not in allowed for ch in text):
        raise InvalidInput(
            f"{what} contains a control character (line breaks are not allowed here)"
        )
    return text


def trigger_key(kind: str, *parts: str) -> str:
    """The identity of a case's trigger: the same trigger twice opens one case."""
    normal = "\x1f".join(" ".join(p.lower().split()) for p in parts)
    return f"{kind}:{hashlib.sha256(normal.encode()).hexdigest()[:24]}"
