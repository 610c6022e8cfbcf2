"""Secrets out of every message: the one redaction used by error printers, logs and settings shown.

Three things are hidden: the password in a URL's user-info (`postgresql://wct:PASSWORD@db/wct`,
`smtp://user:PASSWORD@host`), the value of a secret query parameter (a Teams webhook's `sig=`),
and any known secret value wherever it appears (`secret_values` of the settings: the SMTP password,
the link key, the database password, Prefect's API auth string).
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import unquote, urlsplit

HIDDEN = "***"

# user-info with a password: scheme://user:PASSWORD@ (the password runs to the last '@' before
# the host; it may be empty or hold anything but whitespace, '/' and '@' after it)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)(?P<secret>[^\s/]*)@")
# query parameters that carry a secret: a Workflows webhook's signature and the usual names
SECRET_PARAMETERS = (
    "sig",
    "signature",
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "auth",
    "code",
)
_PARAMETER = re.compile(
    r"(?P<head>[?&;](?:" + "|".join(SECRET_PARAMETERS) + r")=)(?P<secret>[^&;#\s'\"<>]*)",
    re.IGNORECASE,
)
# secret environment variables wct does not read but its processes carry (Prefect's)
SECRET_ENVIRONMENT = (
    "PREFECT_API_AUTH_STRING",
    "PREFECT_SERVER_API_AUTH_STRING",
    "PREFECT_API_KEY",
)
_SHORTEST = 4  # a known secret shorter than this is only hidden where it sits in a URL

_known: set[str] = set()
RecordFactory = Callable[..., logging.LogRecord]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with URL passwords, secret query parameters and known secret values hidden."""
    text = _USERINFO.sub(lambda m: m["head"] + (HIDDEN if m["secret"] else "") + "@", text)
    text = _PARAMETER.sub(lambda m: m["head"] + (HIDDEN if m["secret"] else ""), text)
    for value in sorted({*_known, *secrets}, key=len, reverse=True):
        if len(value) >= _SHORTEST:
            text = text.replace(value, HIDDEN)
    return text


def url_secrets(url: str) -> list[str]:
    """The password of `url`, as written and decoded (so either form is hidden wherever shown)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    if not password:
        return []
    return sorted({password, unquote(password)})


def remember(values: Iterable[str | None]) -> None:
    """Hide these values in every later `redact` in this process (secrets read from settings)."""
    _known.update(v for v in values if v and len(v) >= _SHORTEST)


def environment_secrets(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Secret values the process's environment holds for Prefect (see `SECRET_ENVIRONMENT`)."""
    return [environ[name] for name in SECRET_ENVIRONMENT if environ.get(name)]


def redacted_traceback(exc: BaseException) -> str:
    """The traceback Python would print for `exc`, redacted."""
    return redact("".join(traceback.format_exception(exc)))


def _redacting_factory(make: RecordFactory) -> RecordFactory:
    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for logging to report
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redacted_traceback(record.exc_info[1]).rstrip("\n")
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    factory.wct_redacting = True  # type: ignore[attr-defined]
    return factory


def install_log_redaction() -> None:
    """Every log record made in this process from now on is redacted when it is made, so no
    handler (console, file, Prefect's API handler) ever sees a secret. Safe to call again."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "wct_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(current))
