"""Commands: each checks its input, changes state and audits it, in the caller's unit of work."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, delete, select

from models.calendar import in_partnership
from models.constitution import Constitution
from models.db import READS_ONLY
from models.errors import NotFound, NotInitialised, Refused
from models.members import MemberRow
from models.tables import (
    Body,
    ConstitutionRecord,
    Organisation,
    Person,
    PersonRole,
    Role,
    Seat,
)
from models.uow import UnitOfWork

# Where a session keeps the constitution it has read, for the rest of its transaction.
_CONSTITUTION = "wct.constitution"


def current_constitution(session: Session) -> Constitution:
    """The constitution in force, as loaded by `apply_constitution`: read once per transaction
    (kept in `session.info` until the transaction ends, an amendment in it, or a savepoint rolled
    back), and parsed once per process for the same document."""
    cached = session.info.get(_CONSTITUTION)
    if isinstance(cached, Constitution):
        return cached
    document = session.exec(_CURRENT_DOCUMENT).first()
    if document is None:
        raise NotInitialised()
    constitution = _parsed(document)
    session.info[_CONSTITUTION] = constitution
    return constitution


@lru_cache(maxsize=8)
def _parsed(document: str) -> Constitution:
    """A stored constitution document, parsed (the model is frozen, so one copy serves all)."""
    return Constitution.model_validate_json(document)


@contextmanager
def partnership_of(engine: Engine) -> Iterator[None]:
    """Within the block, the time zone and region of the partnership whose constitution the
    database holds are in force (its wall times, its days, its bank holidays); Europe/London
    and England before one is loaded. A database that fails to answer is an error here, not a
    reason to run in London's time."""
    with engine.connect() as connection:  # every flow run and page: one statement
        connection.execution_options(**READS_ONLY)  # not held up by a write in progress
        try:
            document = connection.execute(_CURRENT_DOCUMENT).scalar()
        except DBAPIError:
            connection.rollback()  # PostgreSQL: a failed statement ends the transaction
            if sa_inspect(connection).has_table(ConstitutionRecord.__tablename__):
                raise  # the database failed to answer: not a reason for London's time
            document = None  # not initialised: the caller says so where it matters
    if document is None:
        yield
        return
    with in_partnership(_parsed(document).partnership):
        yield


#: The constitution in force, as stored: read by a transaction (`current_constitution`) and by
#: every flow run and page for its partnership's time (`partnership_of`). Built once.
_CURRENT_DOCUMENT = select(ConstitutionRecord.document).where(
    col(ConstitutionRecord.current).is_(True)
)


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_constitution(session: OrmSession, transaction: SessionTransaction) -> None:
    """A new transaction reads the constitution afresh: another may have amended it meanwhile."""
    if transaction.parent is None:
        session.info.pop(_CONSTITUTION, None)


@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_rolled_back(session: OrmSession, previous_transaction: SessionTransaction) -> None:
    """A savepoint rolled back may have held an amendment: read the constitution again."""
    del previous_transaction  # any rollback, of the whole or of a savepoint
    session.info.pop(_CONSTITUTION, None)


@dataclass(frozen=True)
class ConstitutionApplied:
    changed: bool
    digest: str
    previous_digest: str | None


def apply_constitution(
    uow: UnitOfWork, *, constitution: Constitution, source: str
) -> ConstitutionApplied:
    """Load a checked constitution; the same content twice changes nothing and audits nothing."""
    session = uow.session
    digest = constitution.digest()
    previous = session.exec(
        select(ConstitutionRecord).where(col(ConstitutionRecord.current).is_(True))
    ).first()
    if previous is not None and previous.digest == digest:
        return ConstitutionApplied(False, digest, digest)
    _refuse_orphans(session, constitution)
    _sync_structure(session, constitution)
    if previous is not None:
        previous.current = False
        session.add(previous)
    session.info.pop(_CONSTITUTION, None)  # this transaction reads the new one from now on
    session.add(
        ConstitutionRecord(
            partnership_id=constitution.partnership.id,
            digest=digest,
            source=source[-500:],
            document=constitution.model_dump_json(),
            loaded_at=uow.clock.now(),
        )
    )
    uow.record(
        "constitution.loaded" if previous is None else "constitution.amended",
        f"partnership:{constitution.partnership.id}",
        before={"digest": previous.digest} if previous else None,
        after={
            "digest": digest,
            "bodies": sorted(b.id for b in constitution.bodies),
            "organisations": sorted(o.id for o in constitution.organisations),
        },
        organisations=[o.id for o in constitution.organisations],
    )
    return ConstitutionApplied(True, digest, previous.digest if previous else None)


def _refuse_orphans(session: Session, c: Constitution) -> None:
    """An amendment may not remove an organisation or role that an active member still has."""
    orgs = {o.id for o in c.organisations}
    roles = {r.id for r in c.roles}
    problems = []
    for person in session.exec(select(Person).where(col(Person.active).is_(True))):
        if person.organisation_id not in orgs:
            problems.append(f"member {person.pseudonym} belongs to '{person.organisation_id}'")
    held = session.exec(
        select(PersonRole.role_id, Person.pseudonym)
        .join(Person, col(Person.id) == col(PersonRole.person_id))
        .where(col(Person.active).is_(True))
    )
    for role_id, pseudonym in held:
        if role_id not in roles:
            problems.append(f"member {pseudonym} holds role '{role_id}'")
    if problems:
        raise Refused(
            "the new constitution removes what members still use: "
            + "; ".join(sorted(set(problems))[:10])
            + " (re-import members first)"
        )


def _sync_structure(session: Session, c: Constitution) -> None:
    for org in c.organisations:
        session.merge(
            Organisation(
                id=org.id,
                name=org.name,
                statutory_partner=org.statutory_partner,
                category=org.category,
                active=True,
            )
        )
    for role in c.roles:
        session.merge(
            Role(
                id=role.id,
                name=role.name,
                kind=role.kind.value,
                organisation_id=role.organisation,
                active=True,
            )
        )
    session.flush()
    session.exec(delete(Seat))
    for body in c.bodies:
        cadence = body.cadence
        session.merge(
            Body(
                id=body.id,
                name=body.name,
                kind=body.kind.value,
                chair_role_id=body.chair,
                deputy_role_id=body.deputy,
                outcome=body.outcome,
                cadence_rrule=cadence.rrule if cadence else None,
                cadence_first=cadence.first_local if cadence else None,
                duration_minutes=cadence.duration_minutes if cadence else 120,
                location=cadence.location if cadence else None,
                active=True,
            )
        )
    session.flush()
    for body in c.bodies:
        for seat in body.members:
            session.add(
                Seat(
                    body_id=body.id,
                    role_id=seat.role,
                    organisation_id=seat.organisation,
                    count=seat.count,
                )
            )
    # Rows the constitution no longer names are kept for history (meetings and cases refer to
    # them) but marked inactive.
    _retire(session, session.exec(select(Organisation)).all(), {o.id for o in c.organisations})
    _retire(session, session.exec(select(Role)).all(), {r.id for r in c.roles})
    _retire(session, session.exec(select(Body)).all(), {b.id for b in c.bodies})


def _retire(session: Session, rows: Sequence[Organisation | Role | Body], keep: set[str]) -> None:
    for row in rows:
        if row.id not in keep and row.active:
            row.active = False
            session.add(row)


@dataclass
class MembersImported:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_in_file: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)


def _public(person: Person, roles: list[str]) -> dict[str, object]:
    """What the audit may say about a person: no name, no email, no webhook."""
    return {
        "organisation": person.organisation_id,
        "roles": sorted(roles),
        "channels": person.channels,
        "teams": bool(person.teams_webhook),
        "active": person.active,
    }


def import_members(
    uow: UnitOfWork, *, rows: list[MemberRow], prune: bool = False, confirmed: bool = False
) -> MembersImported:
    """Add or update each member by email; with `prune`, deactivate members not in the file.
    A prune is refused outright for a file with no member rows, and refused without `confirmed`
    when it would deactivate more than half the active members (a truncated or wrong file)."""
    session = uow.session
    current_constitution(session)  # refuse before a constitution is loaded
    result = MembersImported()
    now = uow.clock.now()
    emails = {row.email for row in rows}
    if prune:
        _check_prune(session, emails, confirmed=confirmed)
    for row in rows:
        person = session.exec(select(Person).where(Person.email == row.email)).first()
        before = None
        if person is None:
            person = Person(
                pseudonym=f"p-{secrets.token_hex(6)}",
                name=row.name,
                email=row.email,
                organisation_id=row.organisation,
                updated_at=now,
            )
        else:
            before = _public(person, _roles_of(session, person))
            personal_before = (person.name, person.teams_webhook)
        person.name = row.name
        person.organisation_id = row.organisation
        person.teams_webhook = row.teams_webhook
        person.channels = ",".join(c.value for c in row.channels)
        person.active = True
        after = _public(person, list(row.roles))
        if (
            before is not None
            and before == after
            and personal_before
            == (
                person.name,
                person.teams_webhook,
            )
        ):
            result.unchanged.append(person.pseudonym)
            continue
        person.updated_at = now
        session.add(person)
        session.flush()
        assert person.id is not None
        session.exec(delete(PersonRole).where(col(PersonRole.person_id) == person.id))
        for role_id in sorted(set(row.roles)):
            session.add(PersonRole(person_id=person.id, role_id=role_id))
        action = "member.added" if before is None else "member.updated"
        (result.added if before is None else result.updated).append(person.pseudonym)
        uow.record(
            action,
            f"person:{person.pseudonym}",
            before=before,
            after=after,
            organisations=[person.organisation_id],
        )
    others = session.exec(
        select(Person).where(col(Person.active).is_(True), col(Person.email).not_in(emails))
    ).all()
    for person in others:
        result.not_in_file.append(person.pseudonym)
        if prune:
            before = _public(person, _roles_of(session, person))
            person.active = False
            person.updated_at = now
            session.add(person)
            result.deactivated.append(person.pseudonym)
            uow.record(
                "member.deactivated",
                f"person:{person.pseudonym}",
                before=before,
                after=_public(person, before["roles"]),  # type: ignore[arg-type]
                organisations=[person.organisation_id],
            )
    session.flush()
    return result


def _check_prune(session: Session, emails: set[str], *, confirmed: bool) -> None:
    """Refuse, before anything is written, a prune that would empty or halve the members list."""
    active = session.exec(select(Person.email).where(col(Person.active).is_(True))).all()
    leaving = sum(1 for email in active if email not in emails)
    if not emails:
        raise Refused(
            "the file has no member rows: --prune would deactivate every active member "
            f"({len(active)}); nothing written"
        )
    if leaving * 2 > len(active) and not confirmed:
        raise Refused(
            f"--prune would deactivate {leaving} of the {len(active)} active members (more than "
            "half): check the file is complete, then run again with --yes to confirm; "
            "nothing written"
        )


def _roles_of(session: Session, person: Person) -> list[str]:
    return list(
        session.exec(select(PersonRole.role_id).where(PersonRole.person_id == person.id)).all()
    )


def erase_member(uow: UnitOfWork, *, who: str) -> str:
    """UK GDPR erasure: remove a member's name, email and webhook; the audit trail, which only
    ever held the pseudonym, stays whole and verifiable."""
    session = uow.session
    key = who.strip().lower()
    person = session.exec(
        select(Person).where((Person.email == key) | (Person.pseudonym == key))
    ).first()
    if person is None or person.email.endswith("@erased.invalid"):
        raise NotFound(f"no member '{who}' to erase")
    before = _public(person, _roles_of(session, person))
    person.name = "(erased)"
    person.email = f"{person.pseudonym}@erased.invalid"
    person.teams_webhook = None
    person.channels = ""
    person.active = False
    person.updated_at = uow.clock.now()
    session.add(person)
    session.exec(delete(PersonRole).where(col(PersonRole.person_id) == person.id))
    uow.record(
        "member.erased",
        f"person:{person.pseudonym}",
        before=before,
        after=_public(person, []),
        organisations=[person.organisation_id],
    )
    return person.pseudonym
