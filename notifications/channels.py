"""The channel layer: every delivery is an apprise notify() to a URL, and its result is checked.

* Email over SMTP is `wctsmtp://HOST:PORT?mode=none|starttls|ssl`, a channel registered in apprise
  with `@notify(on="wctsmtp")`. Why not apprise's own `mailto://`: it opens a new connection and
  builds a new SSL context (`ssl.create_default_context()`, ~75% of its time per email) on every
  notify(), even for a plain connection; it derives the plain-text part from the HTML; and it can
  only attach an invite as a file, not as the `text/calendar; method=REQUEST` alternative Outlook
  turns into Accept/Decline. Our channel receives the finished RFC 5322 message as the body, keeps
  a small pool of open SMTP connections and one SSL context, and sends exactly one message per call.
* The embedded default, with no SMTP host configured, is `wctmail://local?folder=ABS-PATH`: each is
  written as `<key-digest>.eml` in that folder, created atomically with `os.link`, so writing the
  same key twice leaves one file (exactly once, even across crashes). The files are fsynced once
  per chunk (`Channels.sync_mail`) before their receipts commit; the folder also answers "did this
  key arrive?" (`Channels.delivered`), so a crash leaves nothing for a human to settle.
* Teams is our `wctteams://` (notifications/teams.py): the card apprise's `workflows://` posts,
  within Teams' limits (4 requests a second per webhook, Retry-After honoured).

Secrets: the SMTP user and password travel in the apprise URL (as apprise expects) but that URL is
never logged or shown: our channel's `url()` is just `wctsmtp://`, and errors name only host and
port. Webhook URLs (which hold a signature) are not put in error messages either.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import smtplib
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import apprise
from apprise.decorators import notify as apprise_notify

from notifications.config import NotificationSettings, TlsMode

log = logging.getLogger(__name__)

SMTP_SCHEMA = "wctsmtp"
MAILDIR_SCHEMA = "wctmail"
SMTP_TIMEOUT = 30.0

_errors = threading.local()  # the reason the last send on this thread failed (apprise gives a bool)


def _fail(reason: str, *, ambiguous: bool = False, unreachable: bool = False) -> bool:
    _errors.reason = reason
    _errors.ambiguous = ambiguous
    _errors.unreachable = unreachable
    return False


def last_error() -> str:
    return str(getattr(_errors, "reason", "") or "")


def last_was_ambiguous() -> bool:
    """The last failure on this thread may have delivered the message (reply lost mid-DATA)."""
    return bool(getattr(_errors, "ambiguous", False))


def last_was_unreachable() -> bool:
    """The last failure on this thread never reached the server (refused, timed out, cut off
    before any byte of DATA): nothing was delivered."""
    return bool(getattr(_errors, "unreachable", False))


def _clear_error() -> None:
    _errors.reason = ""
    _errors.ambiguous = False
    _errors.unreachable = False


class AmbiguousDelivery(Exception):
    """The connection failed during DATA: the server may have accepted the message."""


# --- SMTP with a connection pool ------------------------------------------------------------


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    mode: TlsMode
    verify: bool
    cafile: str | None
    user: str | None
    password: str | None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@lru_cache(maxsize=8)
def _ssl_context(verify: bool, cafile: str | None) -> ssl.SSLContext:
    """One SSL context per process (building one per message is what makes mailto:// slow)."""
    context = ssl.create_default_context()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmtpPool:
    """Open SMTP connections, kept between messages; each in use by one thread at a time."""

    def __init__(self) -> None:
        self._idle: dict[SmtpTarget, list[smtplib.SMTP]] = {}
        self._lock = threading.Lock()

    def connect(self, target: SmtpTarget) -> smtplib.SMTP:
        connection: smtplib.SMTP
        if target.mode is TlsMode.SSL:
            connection = smtplib.SMTP_SSL(
                target.host,
                target.port,
                timeout=SMTP_TIMEOUT,
                context=_ssl_context(target.verify, target.cafile),
            )
        else:
            connection = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT)
            if target.mode is TlsMode.STARTTLS:
                connection.starttls(context=_ssl_context(target.verify, target.cafile))
        if target.user and target.password:
            connection.login(target.user, target.password)
        return connection

    def acquire(self, target: SmtpTarget) -> tuple[smtplib.SMTP, bool]:
        """A connection, and whether it was reused (a reused one may have been closed by then)."""
        with self._lock:
            idle = self._idle.get(target)
            if idle:
                return idle.pop(), True
        return self.connect(target), False

    def release(self, target: SmtpTarget, connection: smtplib.SMTP) -> None:
        with self._lock:
            self._idle.setdefault(target, []).append(connection)

    def close_all(self) -> None:
        with self._lock:
            connections = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in connections:
            _quietly_quit(connection)


def _quietly_quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()


POOL = SmtpPool()


def _transmit(target: SmtpTarget, sender: str, recipients: list[str], wire: bytes) -> None:
    """Send one message. A reused connection that turns out dead before MAIL FROM is accepted is
    replaced once (nothing was sent on it); any later failure propagates (the caller retries)."""
    connection, reused = POOL.acquire(target)
    try:
        try:
            connection.ehlo_or_helo_if_needed()
            code, response = connection.mail(sender)
        except (smtplib.SMTPServerDisconnected, OSError):
            if not reused:
                raise
            connection.close()
            connection = POOL.connect(target)
            connection.ehlo_or_helo_if_needed()
            code, response = connection.mail(sender)
        if code != 250:
            connection.rset()
            raise smtplib.SMTPSenderRefused(code, response, sender)
        for recipient in recipients:
            code, response = connection.rcpt(recipient)
            if code not in (250, 251):
                connection.rset()
                raise smtplib.SMTPRecipientsRefused({recipient: (code, response)})
        try:
            code, response = connection.data(wire)
        except smtplib.SMTPResponseException:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise AmbiguousDelivery(f"{type(exc).__name__}: {exc}") from exc
        if code != 250:
            connection.rset()
            raise smtplib.SMTPDataError(code, response)
    except BaseException:
        connection.close()
        raise
    POOL.release(target, connection)


def _header_fields(message: str) -> dict[str, str]:
    """The top-level headers of a message wct built (one line each, except a folded Subject):
    a string scan, because `email.parser` costs more than the rest of a send on loopback."""
    end = message.find("\r\n\r\n")
    fields: dict[str, str] = {}
    for line in message[: end if end >= 0 else len(message)].split("\r\n"):
        name, sep, value = line.partition(":")
        if sep and not line[:1].isspace():
            fields.setdefault(name.strip().lower(), value.strip())
    return fields


def _address(value: str) -> str:
    """`Name <a@b>` or `a@b` -> `a@b` (our addresses are checked to hold no angle brackets)."""
    if "<" in value:
        return value[value.rfind("<") + 1 : value.rfind(">")].strip()
    return value.strip()


def _smtp_channel(
    body: str, _title: str, *_args: Any, meta: dict[str, Any], **_kwargs: Any
) -> bool:
    """apprise channel `wctsmtp://`: `body` is a complete RFC 5322 message."""
    qsd = meta.get("qsd", {})
    target = SmtpTarget(
        host=str(meta.get("host", "")),
        port=int(meta.get("port") or 25),
        mode=TlsMode(qsd.get("mode", "none")),
        verify=qsd.get("verify", "yes") != "no",
        cafile=qsd.get("cafile") or None,
        # apprise hands custom channels the URL's user and password still percent-encoded
        user=unquote(str(meta["user"])) if meta.get("user") else None,
        password=unquote(str(meta["password"])) if meta.get("password") else None,
    )
    fields = _header_fields(body)
    # The envelope's sender: the mailbox that sends (`Sender:`, when the partnership's From is
    # another address), else From.
    sender = _address(fields.get("sender") or fields.get("from", ""))
    recipients = [_address(fields["to"])] if fields.get("to") else []
    if not sender or not recipients:
        return _fail("the message has no From or no To address")
    try:
        _transmit(target, sender, recipients, body.encode("utf-8"))
    except AmbiguousDelivery as exc:
        return _fail(
            f"SMTP {target.where}: connection lost during DATA ({exc}); the server may have "
            "accepted it",
            ambiguous=True,
        )
    except smtplib.SMTPResponseException as exc:
        detail = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return _fail(f"SMTP {target.where} refused: {exc.smtp_code} {detail}")
    except smtplib.SMTPRecipientsRefused as exc:
        return _fail(f"SMTP {target.where} refused the recipient: {exc.recipients}")
    except ssl.SSLCertVerificationError as exc:  # reached, and refused by us: not an outage
        return _fail(f"SMTP {target.where} failed: {type(exc).__name__}: {exc}")
    except (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, OSError) as exc:
        # before any byte of DATA (a failure during DATA is AmbiguousDelivery, above)
        return _fail(
            f"SMTP {target.where} unreachable: {type(exc).__name__}: {exc}", unreachable=True
        )
    except smtplib.SMTPException as exc:
        return _fail(f"SMTP {target.where} failed: {type(exc).__name__}: {exc}")
    return True


# --- The mail folder (embedded default) -----------------------------------------------------


def eml_name(key: str) -> str:
    """The file a key is written to: stable, so the same key can never make two files."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:40] + ".eml"


def write_eml(folder: Path, key: str, wire: str, *, sync: bool = True) -> bool:
    """Create `folder/<digest>.eml` atomically; False if it already existed (sent before).

    `sync=False` leaves the fsync to `sync_files` (once per chunk, before the receipts commit)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / eml_name(key)
    if final.exists():
        return False
    # Not `.eml`: a file a killed writer leaves is no message to a mail client or a count.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(wire.encode("utf-8"))
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        try:
            os.link(tmp, final)  # fails if the file exists: never two copies of one key
        except FileExistsError:
            return False
        if sync:
            _fsync_dir(folder)
        return True
    finally:
        os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_files(folder: Path, names: list[str]) -> None:
    """Make files written with `sync=False` durable: fsync each, then the folder once (their
    names). Raises OSError if any cannot be (the caller must not record them as sent)."""
    for name in names:
        fd = os.open(folder / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(folder)


class _Unsynced:
    """The mail-folder files written but not yet fsynced, per folder (shared by the threads)."""

    def __init__(self) -> None:
        self._names: dict[Path, list[str]] = {}
        self._lock = threading.Lock()

    def add(self, folder: Path, name: str) -> None:
        with self._lock:
            self._names.setdefault(folder, []).append(name)

    def take(self, folder: Path) -> list[str]:
        with self._lock:
            return self._names.pop(folder, [])


UNSYNCED = _Unsynced()


TMP_PREFIX, TMP_SUFFIX = ".tmp-", ".part"
#: A half-written file older than this was left by a writer that died (a write takes ms).
STALE_PART = 3600.0


def delivered_to_folder(folder: Path, keys: list[str]) -> dict[str, bool]:
    """Whether the message of each key is in the mail folder (its file exists); the files found
    are fsynced first, so a message counted as delivered is on disk. Half-written files that
    dead writers left long ago are removed."""
    cutoff = time.time() - STALE_PART
    for part in folder.glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):  # another process may remove it first
            if part.stat().st_mtime < cutoff:
                part.unlink()
    found = {key: (folder / eml_name(key)).exists() for key in keys}
    present = [eml_name(k) for k, there in found.items() if there]
    if present:
        sync_files(folder, present)
    return found


def _maildir_channel(
    body: str, _title: str, *_args: Any, meta: dict[str, Any], **_kwargs: Any
) -> bool:
    """apprise channel `wctmail://local?folder=PATH`: `body`, a complete message, becomes a file."""
    key = _header_fields(body).get("x-wct-key", "")
    if not key:
        return _fail("the message has no X-WCT-Key header")
    folder = Path(str(meta.get("qsd", {}).get("folder", "")))
    if not folder.is_absolute():
        return _fail("the mail folder channel needs ?folder=ABSOLUTE-PATH")
    try:
        write_eml(folder, key, body, sync=False)
        UNSYNCED.add(folder, eml_name(key))  # written now or before: fsynced before the receipt
    except OSError as exc:
        return _fail(f"cannot write to the mail folder {folder}: {exc.strerror or exc}")
    return True


@lru_cache(maxsize=1)
def register_channels() -> None:
    """Register wct's apprise channels once per process (on first use, not at import)."""
    apprise_notify(on=SMTP_SCHEMA, name="wct SMTP")(_smtp_channel)  # type: ignore[no-untyped-call]
    apprise_notify(on=MAILDIR_SCHEMA, name="wct mail folder")(_maildir_channel)  # type: ignore[no-untyped-call]


# --- URLs and sending -----------------------------------------------------------------------


def email_url(settings: NotificationSettings) -> str:
    """The apprise URL email goes to: SMTP when WCT_SMTP_HOST is set, else the mail folder."""
    common = "overflow=upstream&format=text"
    if not settings.smtp_host:
        folder = quote(str(settings.mail_dir.resolve()), safe="")
        return f"{MAILDIR_SCHEMA}://local?folder={folder}&{common}"
    auth = ""
    if settings.smtp_user:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        auth = f"{quote(settings.smtp_user, safe='')}:{quote(password, safe='')}@"
    verify = "yes" if settings.smtp_verify else "no"
    cafile = (
        f"&cafile={quote(str(settings.smtp_ca_file), safe='')}" if settings.smtp_ca_file else ""
    )
    return (
        f"{SMTP_SCHEMA}://{auth}{settings.smtp_host}:{settings.port}"
        f"?mode={settings.smtp_tls.value}&verify={verify}{cafile}&{common}"
    )


@dataclass(frozen=True)
class Outcome:
    """What one send came to. `ambiguous`: failed in a way that may still have delivered (never
    resend). `unreachable`: the channel could not be reached at all (a refused or timed-out
    connection: nothing was delivered; the dispatcher's circuit breaker counts these per channel).
    `retry_after`: the receiver asked us to wait this many seconds before trying again (Teams'
    429 with Retry-After): nothing was delivered, and the next try is not before then."""

    ok: bool
    error: str | None = None
    ambiguous: bool = False
    unreachable: bool = False
    retry_after: float | None = None


class Channels:
    """The apprise objects one dispatcher sends through; safe to share between threads."""

    def __init__(self, settings: NotificationSettings) -> None:
        register_channels()
        self.settings = settings
        self._email = apprise.Apprise()
        if not self._email.add(email_url(settings)):
            raise ValueError(f"apprise rejected the email channel for {self.describe_email()}")
        from notifications.teams import Teams  # here: teams.py builds on this module's Outcome

        self._teams = Teams()
        self._lock = threading.Lock()

    @property
    def mail_folder(self) -> Path | None:
        """Where email is written when there is no SMTP server (a transport that can be asked
        whether a message arrived), else None."""
        return None if self.settings.smtp_host else self.settings.mail_dir.resolve()

    def email_breaker(self) -> str | None:
        """The name of the email channel's circuit breaker; None for the mail folder."""
        s = self.settings
        return f"SMTP {s.smtp_host}:{s.port}" if s.smtp_host else None

    def sync_mail(self) -> None:
        """Make the mail-folder files written since the last call durable (one chunk's worth)."""
        folder = self.mail_folder
        if folder is not None:
            names = UNSYNCED.take(folder)
            if names:
                sync_files(folder, names)

    def delivered(self, keys: list[str]) -> dict[str, bool] | None:
        """For the mail folder, whether each key's message is there; None when the transport
        cannot tell (SMTP)."""
        folder = self.mail_folder
        if folder is None:
            return None
        return delivered_to_folder(folder, keys) if keys else {}

    def describe_email(self) -> str:
        s = self.settings
        if not s.smtp_host:
            return f"mail folder {s.mail_dir}"
        return f"SMTP {s.smtp_host}:{s.port} ({s.smtp_tls.value})"

    def send_email(self, wire: str, subject: str) -> Outcome:
        _clear_error()
        result = self._email.notify(body=wire, title=subject, body_format=apprise.NotifyFormat.TEXT)
        if result is True:
            return Outcome(True)
        reason = last_error() or f"{self.describe_email()} did not accept it"
        return Outcome(
            False, reason, ambiguous=last_was_ambiguous(), unreachable=last_was_unreachable()
        )

    def send_teams(
        self, webhook: str, subject: str, markdown: str, *, key: str | None = None
    ) -> Outcome:
        """Post a card to a Teams Workflows webhook within its limits (notifications/teams.py);
        `key`, the outbox key, travels in an X-WCT-Key header."""
        return self._teams.send(webhook, subject, markdown, key=key)

    def close(self) -> None:
        POOL.close_all()
