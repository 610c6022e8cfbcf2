"""The one way in: every entry point (the CLI, a flow, the simulation, a member's web page) hands a
command to `execute`, which resolves who acts, checks the constitution's permission for it, runs it
in one unit of work with the constitution read once, records that actor in every audit event, and
returns the result with the events to relay.

    done = execute(engine, clock, "dcs@council.example", SubmitReport(...))
    done.result, done.events

A command is a frozen dataclass named as an instruction (`models/instructions.py`): it says which
action it is and what it is about (`permission`), and does it (`run`) with the domain functions.
Nothing else opens a unit of work to change state on someone's behalf.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy.engine import Engine

from models.calendar import in_partnership
from models.clock import Clock
from models.commands import current_constitution
from models.constitution import Action, Constitution
from models.errors import Refused
from models.permissions import Actor, Principal, Scope, require, resolve
from models.tables import AuditEvent
from models.uow import UnitOfWork

R = TypeVar("R", covariant=True)
T = TypeVar("T")

UNRESOLVED = "unresolved"  # the unit of work's actor until `execute` knows who acts


@dataclass(frozen=True)
class Permission:
    """What a command asks permission for: its action, what it is about, and the MoU clause a
    refusal cites."""

    action: Action
    scope: Scope = Scope()
    clause: str | None = None


class Command(Generic[R]):
    """An instruction to the domain. Subclasses are frozen dataclasses that set `action` (and
    `clause`), override `permission` when the grant depends on what the command is about, and
    `run` the domain functions."""

    action: ClassVar[Action]
    clause: ClassVar[str | None] = None

    def constitution(self, uow: UnitOfWork) -> Constitution:
        """The constitution whose permissions decide (the one in force)."""
        return current_constitution(uow.session)

    def permission(self, uow: UnitOfWork) -> Permission:  # noqa: ARG002 -- read by overrides
        """The action and what it is about: by default the class's `action` and `clause`."""
        return Permission(self.action, Scope(), self.clause)

    def run(self, uow: UnitOfWork, actor: Principal) -> R:
        raise NotImplementedError


@dataclass(frozen=True)
class Signal:
    """An audit event this command recorded, as plain data for the Prefect event relay."""

    seq: int
    action: str
    subject: str
    actor: str
    after: Any

    @classmethod
    def of(cls, event: AuditEvent) -> Signal:
        return cls(event.seq, event.action, event.subject, event.actor, json.loads(event.after))


@dataclass(frozen=True)
class Executed(Generic[T]):
    """What a command returned, and the audit events it recorded (committed), to relay."""

    result: T
    events: tuple[Signal, ...]


def execute(engine: Engine, clock: Clock, who: str | Principal, command: Command[T]) -> Executed[T]:
    """Run `command` as `who` (an email or pseudonym, or a principal): refused unless the
    constitution permits it; all of it committed, or none of it."""
    with UnitOfWork(engine, clock=clock, actor=UNRESOLVED) as uow:
        c = command.constitution(uow)
        asked = command.permission(uow)
        actor = resolve(uow.session, c, who, asked.action)
        uow.actor = actor.audit_name
        require(c, asked.action, actor, asked.scope, clause=asked.clause)
        with in_partnership(c.partnership):  # its working days and local time
            result = command.run(uow, actor)
        uow.commit()
    return Executed(result, tuple(Signal.of(e) for e in uow.recorded))


def member(actor: Principal, action: Action) -> Actor:
    """The member acting, for what only a member can do (it is about their person)."""
    if not isinstance(actor, Actor):
        raise Refused(f"{actor.audit_name} is not a member: only a member may {action.value}")
    return actor
