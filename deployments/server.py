"""The local Prefect servers: the one `wct up` runs, started with its UI pointed at the right API,
its output kept in a rotated log under WCT_HOME, and a small runtime file so `wct status` can find
it; and the throwaway one `wct simulate` makes for itself when it is given none."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

from models.clock import SystemClock
from models.errors import WctError
from models.redact import redact

if TYPE_CHECKING:
    from prefect.settings.legacy import Setting

START_WAIT_SECONDS = 120.0
LOG_BYTES = 5_000_000
LOG_BACKUPS = 4
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 -- names of the wildcard, not a binding
#: A CA bundle of one certificate whose key was discarded when it was made: it trusts nothing.
#: Prefect's API clients build an SSL context from a CA bundle even for a plain-http API, which
#: never uses it (client/orchestration `PrefectClient` and `SyncPrefectClient`, and the server
#: version check, _internal/version_checking.py): from certifi's bundle that costs ~16 ms each,
#: three times in every process that talks to the API, and so in every served flow run's
#: process. From this file it costs ~0.3 ms. `api` points Prefect's PREFECT_API_SSL_CERT_FILE
#: here for an http:// API on this machine (`wct up`'s own server, and the runs it serves),
#: unless a bundle was chosen for Prefect: not for another host, which may redirect to https
#: (Prefect's client follows redirects and would then verify against this file).
UNUSED_CA = Path(__file__).with_name("unused-ca.pem")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Running:
    """What `wct up` writes to WCT_HOME/run/up.json while it runs."""

    pid: int
    api_url: str
    ui_url: str
    log: str | None
    started_at: str

    @staticmethod
    def path(home: Path) -> Path:
        return home / "run" / "up.json"

    def write(self, home: Path) -> None:
        target = self.path(home)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        partial.replace(target)

    @classmethod
    def read(cls, home: Path) -> Running | None:
        """The running `wct up` of this home, or None (no file, or its process is gone)."""
        try:
            data = json.loads(cls.path(home).read_text(encoding="utf-8"))
            running = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        return running if _alive(running.pid) else None

    @classmethod
    def clear(cls, home: Path) -> None:
        cls.path(home).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def ui_api_url(host: str, port: int) -> str:
    """Where the browser finds the API: PREFECT_UI_API_URL when set; for a server listening on
    every interface, this machine's name (a browser elsewhere cannot reach 0.0.0.0)."""
    given = os.environ.get("PREFECT_UI_API_URL")
    if given:
        return given
    shown = socket.getfqdn() if host in WILDCARD_HOSTS else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/api"


def server_log(home: Path) -> Path:
    return home / "logs" / "prefect-server.log"


class LogPump:
    """Copies the server's output, line by line, into a rotated log; calls `on_error` for lines
    Prefect logged at ERROR (or tracebacks), so the console can say something is wrong."""

    def __init__(self, stream: IO[bytes], path: Path, on_error: Callable[[str], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._stream = stream
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name="wct-server-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for raw in iter(self._stream.readline, b""):
            line = redact(raw.decode("utf-8", errors="replace").rstrip("\n"))
            self._handler.emit(logging.makeLogRecord({"msg": line, "args": None}))
            if "| ERROR" in line or line.startswith("Traceback"):
                self._on_error(line)
        self._handler.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@dataclass(frozen=True)
class Server:
    api_url: str
    ui_url: str
    log: Path | None


@contextmanager
def prefect_server(
    host: str, port: int, *, home: Path, on_error: Callable[[str], None]
) -> Iterator[Server]:
    """PREFECT_API_URL when set (someone else runs the server); otherwise a local
    `prefect server start` for as long as needed, its output in WCT_HOME/logs."""
    given = os.environ.get("PREFECT_API_URL")
    if given:
        yield Server(given, given.removesuffix("/api"), None)
        return
    api_url = f"http://{'127.0.0.1' if host in WILDCARD_HOSTS else host}:{port}/api"
    if healthy(api_url):
        raise WctError(
            f"a Prefect server already answers on {host}:{port}: to use it, set "
            f"PREFECT_API_URL={api_url}; to start another, choose --port"
        )
    browser_api = ui_api_url(host, port)
    env = {
        **os.environ,
        # The server's database belongs to this wct home, not to ~/.prefect, which every other
        # Prefect on the machine (another wct home, another project) would share.
        "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(home / "prefect")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get(
            "PREFECT_SERVER_ANALYTICS_ENABLED", "false"
        ),
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": api_url,
        "PREFECT_UI_API_URL": browser_api,
    }
    log = server_log(home)
    start = [sys.executable, "-m", "prefect", "server", "start"]
    command = [*start, "--host", host, "--port", str(port)]
    with sigterm_unwinds():
        process = subprocess.Popen(
            orphan_guarded(command),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        pump = LogPump(process.stdout, log, on_error)
        try:
            deadline = time.monotonic() + START_WAIT_SECONDS
            while not healthy(api_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise WctError(f"the Prefect server did not start on {host}:{port}; see {log}")
                time.sleep(0.5)
            os.environ["PREFECT_API_URL"] = api_url
            yield Server(api_url, browser_api.removesuffix("/api"), log)
        finally:
            _sigterm(signal.SIG_IGN)  # stopping: the server's own stop is not cut short
            os.environ.pop("PREFECT_API_URL", None)
            stop(process)
            pump.join(timeout=5)


#: Run in the child before it becomes `prefect server start` (argv: the starter's pid, then the
#: command): Linux's parent-death signal, so that the server gets SIGTERM, and stops as it does
#: when stopped, if the process that started it dies without stopping it (SIGKILL, the kernel's
#: out-of-memory killer). Set in the child's own interpreter, then exec: `preexec_fn` would do it
#: between fork and exec, which is unsafe in a process with threads. A starter already gone by
#: then leaves nothing to guard: the child exits.
_ORPHAN_GUARD = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


def orphan_guarded(command: list[str]) -> list[str]:
    """`command`, to be started so that it ends with the thread that starts it (Linux, and only
    from the main thread, whose end is the process's: the signal follows the starting thread)."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return command
    return [sys.executable, "-c", _ORPHAN_GUARD, str(os.getpid()), *command]


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a Prefect process as its own SIGTERM handling expects: terminate, wait up to 30 s for
    it to finish, then kill."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (a service manager's stop, `kill`, `timeout`) unwinds this block as Ctrl-C does,
    so that what it started is stopped on the way out, from its first moment. Prefect's runner
    sets a handler of its own while it serves, which exits the same way (`Runner.handle_sigterm`:
    `sys.exit(0)`); before it does, SIGTERM's default would end the process at once and leave the
    Prefect server running, holding its port (the next `wct up` refuses it) and its database.
    Ends with the handler there was before. Signal handlers are the main thread's: elsewhere
    (a test runner's worker thread) this changes nothing."""

    def unwind(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = _sigterm(unwind)
    try:
        yield
    finally:
        if previous is not None:
            _sigterm(previous)


def _sigterm(
    handler: Callable[[int, FrameType | None], object] | int | None,
) -> Callable[[int, FrameType | None], object] | int | None:
    """Set SIGTERM's handler in the main thread; returns the one it replaced (None elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or handler is None:
        return None
    return signal.signal(signal.SIGTERM, handler)


@contextmanager
def api(api_url: str) -> Iterator[None]:
    """Talk to this Prefect server, whatever the settings were when prefect was imported; for a
    plain-http one on this machine, without loading a CA bundle it never uses (UNUSED_CA). The
    flow runs a runner serves within inherit both, as Prefect passes its settings to them."""
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings

    updates: dict[Setting, str] = {PREFECT_API_URL: api_url}
    url = urlsplit(api_url)
    chosen = PREFECT_API_SSL_CERT_FILE.value() not in (None, os.environ.get("SSL_CERT_FILE"))
    if url.scheme == "http" and url.hostname in LOOPBACK_HOSTS and not chosen:
        updates[PREFECT_API_SSL_CERT_FILE] = str(UNUSED_CA)
    with temporary_settings(updates=updates):
        yield


#: What a throwaway Prefect server (`wct simulate`'s own, which goes with it) need not do, by
#: Prefect's settings: nobody can watch it (it serves no UI) or has made an automation on it, so
#: it keeps no event, evaluates no trigger, records no task run, streams no event or log to a
#: watcher and sends no telemetry. Those services work on every event of every run in the
#: server's one process, and their writes meet the API's in its SQLite database: with them, a
#: simulated year (590 flow runs) took 70 s here (`bench/simulate.py`), and 3 to 9 of its flow
#: runs' creations were answered 503 ("database is locked", counted on the client), each followed
#: by Prefect's client's 2 s wait; without them, 56 s and none.
UNWATCHED: Mapping[str, bool] = MappingProxyType(
    {
        "server.services.event_persister.enabled": False,
        "server.services.triggers.enabled": False,
        "server.services.task_run_recorder.enabled": False,
        "server.events.stream_out_enabled": False,
        "server.logs.stream_out_enabled": False,
        "server.analytics_enabled": False,
    }
)


@contextmanager
def throwaway_server() -> Iterator[str]:
    """A Prefect server and database of this process's own for the length of the block (Prefect's
    test harness: a subprocess, a temporary SQLite file), without the services nobody can use
    (UNWATCHED); yields its API URL, which Prefect's settings name within."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates=dict(UNWATCHED)), prefect_test_harness(int(START_WAIT_SECONDS)):
        yield str(PREFECT_API_URL.value())


@contextmanager
def announced(server: Server, home: Path) -> Iterator[Running]:
    """The runtime file for `wct status`, for as long as `wct up` runs."""
    running = Running(
        pid=os.getpid(),
        api_url=server.api_url,
        ui_url=server.ui_url,
        log=str(server.log) if server.log else None,
        started_at=_now_iso(),
    )
    running.write(home)
    try:
        yield running
    finally:
        Running.clear(home)


def _now_iso() -> str:
    now: datetime = SystemClock().now()
    return now.isoformat(timespec="seconds")
