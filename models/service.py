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
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from models.audit import Recorded
from models.calendar import in_partnership
from models.clock import Clock
from models.commands import current_constitution
from models.constitution import Action, Constitution
from models.errors import Refused, WctError
from models.permissions import Actor, Principal, Scope, require, resolve
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
    def of(cls, event: Recorded) -> Signal:
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
        result = _checked_run(uow, who, command, {})
        uow.commit()
    return Executed(result, tuple(Signal.of(e) for e in uow.recorded))


def _checked_run(
    uow: UnitOfWork, who: str | Principal, command: Command[T], actors: dict[Action, Principal]
) -> T:
    """Resolve who acts (once per action within one unit of work: `actors`), check the
    constitution's permission, and run the command in the partnership's time."""
    c = command.constitution(uow)
    asked = command.permission(uow)
    actor = actors.get(asked.action)
    if actor is None:
        actor = actors[asked.action] = resolve(uow.session, c, who, asked.action)
    uow.actor = actor.audit_name
    require(c, asked.action, actor, asked.scope, clause=asked.clause)
    with in_partnership(c.partnership):  # its working days and local time
        return command.run(uow, actor)


@dataclass(frozen=True)
class Failed(Generic[T]):
    """A command of a batch that was refused or failed: it rolled back alone (`error` says why);
    the others of its batch committed."""

    command: Command[T]
    error: Exception


#: How many commands of a batch commit together.
BATCH = 200


def execute_many(
    engine: Engine,
    clock: Clock,
    who: str | Principal,
    commands: Sequence[Command[T]],
    *,
    batch: int = BATCH,
    claim: Callable[[UnitOfWork, Sequence[Command[T]]], None] | None = None,
) -> list[Executed[T] | Failed[T]]:
    """Run many commands as `who`, as `execute` runs one, committing `batch` at a time: one that
    is refused or fails (a domain error or a database one) rolls back alone, with its audit
    events and outbox rows, and is returned as `Failed`; the rest of its batch commits, each
    change with its audit record and its outbox rows. A batch first runs in one transaction
    without savepoints; if any of its commands fails, all of it rolls back and it runs again with
    each command in its own savepoint (so nothing of the first run commits, and a batch that
    fails nowhere pays for no savepoint). `claim`, given a batch's commands, takes their locks up
    front in one global order (so a batch never waits for a row while holding what another
    transaction waits for); if it fails, each command takes its own locks as it runs. A crash
    loses at most the batch in flight, none of it committed: run again, the commands find what
    is already done."""
    if batch < 1:
        raise ValueError("a batch holds at least one command")
    done: list[Executed[T] | Failed[T]] = []
    for start in range(0, len(commands), batch):
        chunk = commands[start : start + batch]
        ran = _batch(engine, clock, who, chunk, claim, alone=False)
        if ran is None:  # one of them failed: the batch rolled back; again, each alone
            ran = _batch(engine, clock, who, chunk, claim, alone=True)
            assert ran is not None
        outcomes, recorded = ran
        events = [Signal.of(e) for e in recorded]
        for outcome in outcomes:
            if isinstance(outcome, Failed):
                done.append(outcome)
            else:
                _, result, first, last = outcome
                done.append(Executed(result, tuple(events[first:last])))
    return done


def _batch(
    engine: Engine,
    clock: Clock,
    who: str | Principal,
    chunk: Sequence[Command[T]],
    claim: Callable[[UnitOfWork, Sequence[Command[T]]], None] | None,
    *,
    alone: bool,
) -> tuple[list[tuple[Command[T], T, int, int] | Failed[T]], list[Recorded]] | None:
    """One transaction for `chunk`, committed. `alone`: each command in its own savepoint, so one
    that fails rolls back alone; otherwise none, and None if any fails (all of it rolled back)."""
    outcomes: list[tuple[Command[T], T, int, int] | Failed[T]] = []
    with UnitOfWork(engine, clock=clock, actor=UNRESOLVED) as uow:
        if claim is not None:
            try:
                with uow.savepoint():
                    claim(uow, chunk)
            except (WctError, SQLAlchemyError):
                pass  # each command locks what it needs as it runs
        actors: dict[Action, Principal] = {}
        for command in chunk:
            first = len(uow.recorded)
            try:
                with uow.savepoint() if alone else nullcontext():
                    result = _checked_run(uow, who, command, actors)
            except Exception as exc:  # noqa: BLE001 -- reported; the batch goes on
                if not alone:
                    return None  # leaving the unit of work rolls all of it back
                outcomes.append(Failed(command, exc))
                continue
            outcomes.append((command, result, first, len(uow.recorded)))
        if not alone:
            try:
                uow.flush()  # a row the database refuses: as if its command failed
            except SQLAlchemyError:
                return None
        uow.commit()
    return outcomes, uow.recorded


def member(actor: Principal, action: Action) -> Actor:
    """The member acting, for what only a member can do (it is about their person)."""
    if not isinstance(actor, Actor):
        raise Refused(f"{actor.audit_name} is not a member: only a member may {action.value}")
    return actor
