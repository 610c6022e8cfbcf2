"""What every `wct` command shares: the runtime (settings, clock, engine), apps, errors."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
from collections.abc import Callable
from contextlib import ExitStack
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from deployments.server import Running, api, healthy
from models.calendar import in_partnership
from models.clock import Clock, SystemClock
from models.commands import current_constitution
from models.config import Settings, get_settings
from models.db import make_engine, schema_is_current
from models.errors import (
    ConstitutionInvalid,
    InvalidInput,
    MembersInvalid,
    NotFound,
    NotInitialised,
    Refused,
    WctError,
)
from models.permissions import OPERATOR, Principal, System
from models.redact import redact, redacted_traceback, remember
from models.service import Command, execute

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


@dataclass
class Runtime:
    """What a command needs from outside: settings, the clock (the one seam for time), an engine,
    and who runs wct by hand when no member is named (the operator, a system principal)."""

    settings: Settings = field(default_factory=get_settings)
    clock: Clock = field(default_factory=SystemClock)
    operator: System = OPERATOR
    _engine: Engine | None = None

    def __post_init__(self) -> None:
        remember(self.settings.secret_values())  # hidden in every message from now on

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.resolved_database_url)
        return self._engine

    def ready_engine(self) -> Engine:
        """The engine of an initialised database, or a clear error. From here to the end of the
        command, the partnership's time zone and region are in force (`_local_time`)."""
        engine = self.engine()
        if not schema_is_current(engine):
            raise NotInitialised(
                f"database {self.settings.shown_database_url} is not initialised or is out of "
                "date: run `wct init`"
            )
        _local_time(engine)
        return engine

    def act(self, who: str | Principal, command: Command[T]) -> T:
        """Every change the CLI makes: `execute` the command as `who`, then relay its events."""
        done = execute(self.ready_engine(), self.clock, who, command)
        self.relay()
        return done.result

    def relay(self) -> int:
        """Relay the audit trail's new events to Prefect now when a Prefect API is configured
        (PREFECT_API_URL, or the running `wct up` of this home) and answers; otherwise the
        sweep relays them later. Returns how many were relayed."""
        url = os.environ.get("PREFECT_API_URL")
        if not url:
            running = Running.read(self.settings.home)
            url = running.api_url if running is not None else None
        if not url or not healthy(url):
            return 0
        from prefect.events.worker import EventsWorker

        from flows.signals import relay

        with api(url):
            relayed = relay(self.ready_engine())
            if relayed:
                EventsWorker.instance().wait_until_empty()  # sent before this process exits
        return relayed


app = typer.Typer(
    help="wct: the Wirral Children's Trust MoU (or your partnership's) as running workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
members_app = typer.Typer(help="The members' contact list (personal data).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail any member may inspect (4.1).", no_args_is_help=True)
app.add_typer(members_app, name="members")
app.add_typer(audit_app, name="audit")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@dataclass
class _Command:
    """What one `wct` command holds until it ends: the partnership's local time, once entered."""

    scope: ExitStack
    where: tuple[int, int | None]
    entered: bool = False


def _where() -> tuple[int, int | None]:
    """The thread and asyncio task running: the scope is entered only where the command began
    (a context variable set in a task or thread could not be reset from the command)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return threading.get_ident(), id(task) if task is not None else None


_COMMAND: ContextVar[_Command | None] = ContextVar("wct_cli_command", default=None)


def _local_time(engine: Engine) -> None:
    """Enter the loaded constitution's time zone and region for the rest of the command (its
    "today", the times it reads and shows); nothing before a constitution is loaded."""
    command = _COMMAND.get()
    if command is None or command.entered or command.where != _where():
        return
    with Session(engine) as session:
        try:
            partnership = current_constitution(session).partnership
        except NotInitialised:
            return
    command.scope.enter_context(in_partnership(partnership))
    command.entered = True


def runtime(ctx: typer.Context) -> Runtime:
    if not isinstance(ctx.obj, Runtime):
        ctx.obj = Runtime()
    return ctx.obj


# The exit code of each kind of error (typer's own usage errors exit 2 too); anything else is 1.
EXIT_CODES: tuple[tuple[type[WctError], int], ...] = (
    (InvalidInput, 2),
    (NotFound, 3),
    (Refused, 4),
)


def exit_code(exc: BaseException) -> int:
    """2 for invalid input, 3 for something not found, 4 for a refusal by the rules, else 1."""
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 1)


# 128 + SIGPIPE: how a shell reports a program stopped because its reader left (`wct ... | head`)
SIGPIPE_EXIT = 141


class ReaderLeft(Exception):
    """Our stdout was closed early (`wct outbox | head`): carried past typer (which would print
    nothing but exit 1) to `main`, which exits quietly with SIGPIPE_EXIT."""


def fail(message: str, details: list[str] | None = None, *, code: int = 1) -> typer.Exit:
    """Print an error (and its detail lines) on stderr, secrets redacted; the Exit to raise."""
    typer.echo(redact(f"wct: error: {message}"), err=True)
    for line in details or []:
        typer.echo(redact(f"  {line}"), err=True)
    return typer.Exit(code)


def problems_found(exc: ConstitutionInvalid | MembersInvalid, *, code: int) -> typer.Exit:
    """A file's problems, one a line under a summary: nothing from it was written."""
    noun = "problem" if len(exc.problems) == 1 else "problems"
    return fail(
        f"{exc.source}: {len(exc.problems)} {noun}, nothing written",
        [str(p) for p in exc.problems],
        code=code,
    )


def errors(command: Callable[P, R]) -> Callable[P, R]:
    """One clear line on stderr for any failure, with its exit code (`EXIT_CODES`); the
    traceback only with WCT_DEBUG=1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with ExitStack() as scope:
                token = _COMMAND.set(_Command(scope, _where()))
                try:
                    return command(*args, **kwargs)
                finally:
                    _COMMAND.reset(token)
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            raise ReaderLeft() from None
        except (ConstitutionInvalid, MembersInvalid) as exc:
            raise problems_found(exc, code=exit_code(exc)) from None
        except WctError as exc:
            raise fail(str(exc), code=exit_code(exc)) from None
        except ValidationError as exc:
            raise fail(_validation_message(exc)) from None
        except Exception as exc:
            if os.environ.get("WCT_DEBUG"):
                typer.echo(redacted_traceback(exc), err=True, nl=False)
                raise typer.Exit(1) from None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise fail(
                f"{type(exc).__name__}: {first} (set WCT_DEBUG=1 to see the traceback)"
            ) from None

    return wrapper


def _validation_message(exc: ValidationError) -> str:
    """Name the setting (as its environment variable) or the field that is wrong, and why."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        name = f"WCT_{field.upper()}" if exc.title == "Settings" else field
        parts.append(f"{name}: {error['msg']}")
    what = "configuration" if exc.title == "Settings" else exc.title
    return f"invalid {what}: " + "; ".join(parts)


def redacted(value: Any) -> Any:
    """`value` (JSON-like) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))
