"""Signed links: how a member answers from the message itself, with no account and no password.

A link carries a token bound to one person, one action and one subject, with an expiry and a
nonce, signed with the partnership's link key (settings, never the repo):

    token = base64url(payload JSON) "." base64url(HMAC-SHA256(key, "wct-link-v1." payload))

`verify` says whether a token is genuine and in date; it does not say whether it was already used
(that is the database's job: the nonce of a link whose action was done is recorded in the same
transaction as the action, so a replay changes nothing). A refusal names its reason, so the page
can say what happened without saying anything an attacker could use.

Pure: no database, no network, no clock of its own (the caller passes `now`); only `link_key`
touches a file (the key kept under WCT_HOME when none is configured).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import SecretStr

from models.errors import WctError

VERSION = "wct-link-v1"
NONCE_BYTES = 12
MAX_TOKEN = 1024  # a longer "token" is refused before any work is done on it
MIN_KEY_BYTES = 32

#: How long a link works, unless the caller says: a member may answer a few weeks later.
DEFAULT_LIFETIME = timedelta(days=30)


class Refusal(StrEnum):
    """Why a link does not work. The page says which, in plain words."""

    MALFORMED = "malformed"  # not a token at all (cut short by a mail client, say)
    TAMPERED = "tampered"  # the signature does not match: altered, or signed with another key
    EXPIRED = "expired"


class LinkRefused(WctError):
    """A link that is not genuine or is out of date."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(f"link refused: {reason.value}")
        self.reason = reason


@dataclass(frozen=True)
class Link:
    """What a genuine link lets its holder do: `action` on `subject`, as the person whose
    pseudonym is `person`, until `expires`. `nonce` makes each link distinct (and is what a used
    link is remembered by)."""

    person: str
    action: str
    subject: str
    expires: datetime
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, f"{VERSION}.{payload}".encode(), hashlib.sha256).digest())


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the link key must be at least {MIN_KEY_BYTES} bytes")


def new_key() -> bytes:
    """A fresh random link key."""
    return secrets.token_bytes(MIN_KEY_BYTES)


def mint(
    key: bytes,
    *,
    person: str,
    action: str,
    subject: str,
    now: datetime,
    lifetime: timedelta = DEFAULT_LIFETIME,
    nonce: str | None = None,
) -> str:
    """A token for `person` to do `action` on `subject` until `now + lifetime`."""
    _check_key(key)
    payload = {
        "p": person,
        "a": action,
        "s": subject,
        "e": int((now + lifetime).timestamp()),
        "n": nonce or _b64(secrets.token_bytes(NONCE_BYTES)),
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_signature(key, body)}"


def verify(key: bytes, token: str, *, now: datetime) -> Link:
    """The link a token stands for, if it is genuine and in date; else `LinkRefused`."""
    _check_key(key)
    if not token or len(token) > MAX_TOKEN or token.count(".") != 1:
        raise LinkRefused(Refusal.MALFORMED)
    body, signature = token.split(".")
    if not hmac.compare_digest(signature.encode(), _signature(key, body).encode()):
        raise LinkRefused(Refusal.TAMPERED)
    try:
        data = json.loads(_unb64(body))
        link = Link(
            person=str(data["p"]),
            action=str(data["a"]),
            subject=str(data["s"]),
            expires=datetime.fromtimestamp(int(data["e"]), tz=UTC),
            nonce=str(data["n"]),
        )
    except (binascii.Error, ValueError, KeyError, TypeError):  # signed by us, so never in practice
        raise LinkRefused(Refusal.MALFORMED) from None
    if now >= link.expires:
        raise LinkRefused(Refusal.EXPIRED)
    return link


#: A personal page link works for longer: it is in every message, and only shows.
PERSONAL_LIFETIME = timedelta(days=180)
PERSONAL_ACTION = "me"
KEY_FILE = Path("secrets") / "link.key"


def parse_key(text: str) -> bytes:
    """A configured key, written as hex or base64url; `ValueError` if neither or too short."""
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            key = _unb64(text)
        except (binascii.Error, ValueError):
            raise ValueError("the link key must be hex or base64url") from None
    _check_key(key)
    return key


def link_key(home: Path, configured: SecretStr | None) -> bytes:
    """The partnership's link key: the configured one (WCT_LINK_KEY), else the one kept in
    WCT_HOME/secrets/link.key, created on first use (file 0600 in a 0700 folder, written
    atomically so two processes starting at once agree on one key)."""
    if configured is not None:
        return parse_key(configured.get_secret_value())
    path = home / KEY_FILE
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".link.key.")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, _b64(new_key()).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made it first: keep theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return parse_key(path.read_text(encoding="ascii"))


def action_url(
    web_url: str,
    key: bytes,
    *,
    person: str,
    action: str,
    subject: str,
    now: datetime,
    lifetime: timedelta | None = None,
) -> str:
    """The link a message carries for `person` (a pseudonym) to do `action` on `subject`."""
    token = mint(
        key,
        person=person,
        action=action,
        subject=subject,
        now=now,
        lifetime=DEFAULT_LIFETIME if lifetime is None else lifetime,
    )
    return f"{web_url.rstrip('/')}/l/{token}"


def personal_url(web_url: str, key: bytes, *, person: str, now: datetime) -> str:
    """The link to `person`'s own page (what is due from them; their meetings)."""
    return action_url(
        web_url,
        key,
        person=person,
        action=PERSONAL_ACTION,
        subject=f"person:{person}",
        now=now,
        lifetime=PERSONAL_LIFETIME,
    )
