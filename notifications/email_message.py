"""Build the RFC 5322 email for one rendered message: text + HTML alternatives, and an invite.

Outlook and Gmail show an invite with Accept/Decline when the calendar is a `text/calendar;
method=...` alternative of the message; the same object is attached as `invite.ics` for clients
that only offer attachments. A message may carry other attachments too (the meeting papers with
an agenda), each `Content-Disposition: attachment`. The idempotency key travels in `X-WCT-Key`,
and the Message-ID is derived from it, so a duplicate (the one gap SMTP leaves) is recognisable
and often dropped.

The message is assembled directly rather than through `email.message.EmailMessage`, whose header
registry costs ~1.5 ms a message (most of a fan-out's time); every header value is checked for line
breaks first, non-ASCII values are RFC 2047-encoded by `email.header`, and every body part is
base64, so the result is 7-bit clean with CRLF line ends. Tests parse it with the stdlib parser.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr

from models.calendar_invite import Method
from models.errors import WctError
from notifications.render import HeaderInjection, Rendered, single_line

KEY_HEADER = "X-WCT-Key"
CRLF = "\r\n"
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)


_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


class AddressInvalid(WctError):
    """An email address wct cannot send to."""


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message: a plain file name (letters, digits, `.`, `_`, `-`), its MIME
    type with parameters (`text/html; charset="utf-8"`), and its text."""

    filename: str
    content_type: str
    content: str

    def part(self) -> str:
        if not _FILENAME.match(self.filename):
            raise HeaderInjection(f"attachment file name {self.filename!r} is not a plain name")
        single_line(self.content_type, what="the attachment's type")
        return _part(
            f'{self.content_type}; name="{self.filename}"',
            self.content,
            (f'Content-Disposition: attachment; filename="{self.filename}"',),
        )


@dataclass(frozen=True)
class Mailbox:
    name: str
    email: str

    @property
    def domain(self) -> str:
        return self.email.rsplit("@", 1)[1]

    def header(self) -> str:
        return formataddr((self.name, self.email), charset="utf-8")


def checked_address(name: str, email: str, *, what: str) -> Mailbox:
    """A mailbox from a display name and an address; refuses line breaks and bad addresses."""
    single_line(name, what=f"the {what} name")
    single_line(email, what=f"the {what} address")
    if not _ADDRESS.match(email) or ".." in email:
        raise AddressInvalid(f"the {what} address {email!r} is not a valid email address")
    return Mailbox(name, email)


def message_id(key: str, domain: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _header_value(value: str) -> str:
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(maxlinelen=76).replace("\n", CRLF)


def _part(content_type: str, body: str, extra: tuple[str, ...] = ()) -> str:
    encoded = base64.encodebytes(body.encode("utf-8")).decode("ascii").replace("\n", CRLF)
    headers = [f"Content-Type: {content_type}", "Content-Transfer-Encoding: base64", *extra]
    return CRLF.join(headers) + CRLF + CRLF + encoded


def _multipart(subtype: str, boundary: str, parts: list[str]) -> str:
    lines = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"', ""]
    for part in parts:
        lines += [f"--{boundary}", part]
    lines.append(f"--{boundary}--")
    return CRLF.join(lines) + CRLF


def build_email(
    rendered: Rendered,
    *,
    key: str,
    to_name: str,
    to_email: str,
    from_name: str,
    from_email: str,
    now: datetime,
    invite: str | None = None,
    method: Method = Method.REQUEST,
    attachments: Sequence[Attachment] = (),
    sent_by: tuple[str, str] | None = None,
) -> str:
    """The message as SMTP sends it, with the invite and `attachments` if given; HeaderInjection
    or AddressInvalid if a header would break. `sent_by` (name, email): the mailbox that sends
    on behalf of `From` when it is another one (a `Sender:` header, and the SMTP envelope's)."""
    sender = checked_address(from_name, from_email, what="sender")
    recipient = checked_address(to_name, to_email, what="recipient")
    agent = None
    if sent_by is not None and sent_by[1].lower() != from_email.lower():
        agent = checked_address(*sent_by, what="sending mailbox")
    subject = single_line(rendered.subject, what="the subject")
    single_line(key, what="the idempotency key")
    token = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    headers = [
        f"From: {sender.header()}",
        *([f"Sender: {agent.header()}"] if agent is not None else []),
        f"To: {recipient.header()}",
        f"Subject: {_header_value(subject)}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {message_id(key, sender.domain)}",
        f"{KEY_HEADER}: {_header_value(key)}",
        "Auto-Submitted: auto-generated",  # RFC 3834: no vacation replies to a robot
        "MIME-Version: 1.0",
    ]
    alternatives = [
        _part('text/plain; charset="utf-8"', rendered.text),
        _part('text/html; charset="utf-8"', rendered.html),
    ]
    files = [a.part() for a in attachments]
    if invite is not None:
        alternatives.append(_part(f'text/calendar; charset="utf-8"; method={method.value}', invite))
        attachment = _part(
            'application/ics; name="invite.ics"',
            invite,
            ('Content-Disposition: attachment; filename="invite.ics"',),
        )
        files.insert(0, attachment)
    inner = _multipart("alternative", f"=_alt_{token}", alternatives)
    body = inner if not files else _multipart("mixed", f"=_mix_{token}", [inner, *files])
    return CRLF.join(headers) + CRLF + body
