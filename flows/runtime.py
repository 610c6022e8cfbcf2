"""What every flow needs from outside: the wct database, the clock (the one seam for time), the
partnership's local time and region in force while it runs (`partnership_time`), and the Prefect
options and contexts that keep a flow run's cost to what it must be (`RESULT_STORAGE`,
`one_client`)."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from functools import lru_cache, wraps
from importlib import import_module
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Flow, flow
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.settings import get_current_settings, temporary_settings
from pydantic import validate_call
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.clock import Clock, FixedClock, SystemClock
from models.commands import partnership_of
from models.config import get_settings
from models.db import make_engine
from models.redact import install_log_redaction, remember
from models.tables import Step

#: Flows that talk to the Prefect API or deliver messages retry a transient failure. Each request
#: is first retried by Prefect's client with exponential backoff (429 and 503, up to
#: PREFECT_CLIENT_MAX_RETRIES); a run that fails anyway is retried whole after RETRY_DELAY (every
#: command in it is idempotent); a run that still fails is repaired by the sweep, which re-plans
#: the cycles and acts on every due step.
RETRIES = 3
RETRY_DELAY = 30

#: Every wct flow is declared with `persist_result=False, result_storage=RESULT_STORAGE`. A flow
#: without its own result storage makes Prefect ask the server for its default result-storage
#: block on every run, once per result store it builds (twice for a flow with a run name:
#: prefect/results.py `_get_default_result_storage` from `ResultStore.update_for_flow`), and a
#: flow without `persist_result` asks once more whether to persist
#: (`_aget_default_persist_result`, from flow_engine.py `setup_run_context`). wct keeps no flow
#: result (every command is idempotent and a retry re-runs it), so it persists none, and the
#: storage is the local path Prefect itself would use (PREFECT_RESULTS_LOCAL_STORAGE_PATH, by
#: default PREFECT_HOME/storage), where Prefect writes a failed run's exception. Read when the
#: flows are defined, as Prefect reads its own settings when it is imported.
RESULT_STORAGE = Path(get_current_settings().results.local_storage_path)

P = ParamSpec("P")
R = TypeVar("R")


def wct_flow(
    name: str, *, prefect_validates: bool = False, **options: Any
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Flow[P, Coroutine[Any, Any, R]]]:
    """A wct flow, run at Prefect's least cost per run: `persist_result=False` and
    `result_storage=RESULT_STORAGE` (above), and its parameters checked by a validator built once
    per process (pydantic's `validate_call`, `_validator`) instead of Prefect's, which builds a
    pydantic model of the signature on every run (flows.py `Flow.validate_parameters`: ~5 ms of
    client CPU per run here, measured with `time.process_time`). The check is the same: a served
    run's `as_of`, which arrives as JSON text, becomes a datetime; a parameter of the wrong type
    fails the run before its body does anything, as Prefect's own check fails it. A flow whose
    templated `flow_run_name` reads a model's attribute (`{request.title}`) says
    `prefect_validates=True`: Prefect formats the name from the parameters as its own check
    leaves them, so those flows keep it."""

    declared = {"name": name, "persist_result": False, "result_storage": RESULT_STORAGE, **options}

    def declare(fn: Callable[P, Coroutine[Any, Any, R]]) -> Flow[P, Coroutine[Any, Any, R]]:
        if prefect_validates:
            return flow(**declared)(fn)

        @wraps(fn)
        async def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            run = cast(Callable[P, Coroutine[Any, Any, R]], _validator(fn))
            return await run(*args, **kwargs)

        return flow(validate_parameters=False, **declared)(checked)

    return declare


@lru_cache(maxsize=64)
def _validator(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """`fn` behind its parameters' validator, built on first use in each process and kept out of
    the flow, which a served run receives pickled (the validator does not pickle). In a served
    run's process `fn` is an unpickled copy whose globals hold only the names its code uses, not
    those its annotations name (`datetime`): the validator is built for the function its module
    defines, where they resolve."""
    try:
        declared = getattr(import_module(fn.__module__), fn.__qualname__, None)
    except ImportError:  # defined where it cannot be imported again: its own globals serve
        declared = None
    if isinstance(declared, Flow):
        fn = inspect.unwrap(declared.fn)
    return validate_call(fn)


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    # A flow run's process (and a serving one) hides the secrets it reads in every log record,
    # as the CLI does, from the first time it opens the database.
    install_log_redaction()
    remember(get_settings().secret_values())
    return make_engine(url)


def engine() -> Engine:
    """The engine for the configured database, made once per process on first use."""
    return _engine(get_settings().resolved_database_url)


def database_tag() -> str:
    """A short name for this wct database (a hash of its URL, password left out), so that two
    partnerships, or a test and a simulation, sharing one Prefect server never share a timer."""
    return _tag(get_settings().resolved_database_url)


@lru_cache(maxsize=4)
def _tag(url: str) -> str:
    shown = _engine(url).url.render_as_string(hide_password=True)
    return hashlib.sha256(shown.encode()).hexdigest()[:10]


@contextmanager
def partnership_time() -> Iterator[None]:
    """Within the block, the constitution's time zone and region are in force (its 09:00 and
    17:00, its "today", its bank holidays); Europe/London and England before one is loaded."""
    with partnership_of(engine()):
        yield


@asynccontextmanager
async def one_client() -> AsyncIterator[None]:
    """For a driver that starts many flow runs in this process (the simulation, the benches):
    every run within uses one Prefect client, and one synchronous client for what Prefect does
    synchronously (`resolve_result_storage`), instead of building both, with their TLS
    context from the CA bundle and their server version check, for every run. This is
    Prefect's own way to share a client: `get_client()` returns the client of the client
    context in force (prefect/client/orchestration/__init__.py `get_client`), and the flow
    engine enters `AsyncClientContext.get_or_create()` (flow_engine.py `initialize_run`).
    A served run is its own process and builds its own.

    Within, a flow run sends no heartbeats (`flows.heartbeat_frequency` unset, through Prefect's
    `temporary_settings`): by default every run starts a thread that emits a heartbeat event at
    once and then every 180 s, so that a server can tell a crashed run of a worker or a runner.
    A run here lasts milliseconds inside its driver, whose own end ends the runs; the thread
    and the event cost each run ~2.5 ms here (`bench/step_overhead.py`'s arms, 7%). A served
    run keeps Prefect's heartbeats."""
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        async with AsyncClientContext.get_or_create():
            with SyncClientContext.get_or_create():
                yield


def clock_at(as_of: datetime | None) -> Clock:
    """The injected clock: wall time, or the time a simulation or test says it is."""
    return FixedClock(as_of) if as_of is not None else SystemClock()


#: Prefect's runner starts a run up to 10 s before its scheduled time (prefetch), and the server's
#: wait-for-scheduled-time rule does not hold a run that is already Pending: a timer can start a
#: little early. It waits for its step's time instead of finding it "not due" and leaving it to
#: the next sweep. Longer than this is not a timer firing early: the run ends and the step waits.
EARLY_LIMIT = timedelta(minutes=5)


async def until_due(key: str, as_of: datetime | None) -> None:
    """Wait, on the wall clock only, until step `key` is due if it is due within EARLY_LIMIT."""
    if as_of is not None:
        return  # an injected clock says when it is; a simulation never starts early
    with Session(engine()) as session:
        due = session.exec(select(Step.due_at).where(Step.key == key)).first()
    if due is None:
        return
    early = due - SystemClock().now()
    if timedelta(0) < early <= EARLY_LIMIT:
        await asyncio.sleep(early.total_seconds())
