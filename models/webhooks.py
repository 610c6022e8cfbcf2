"""Teams webhook URLs checked when a members file is read, not when the first message fails.

`workflows_url_problem` is the shape of an https Power Automate / Logic Apps URL that apprise's
`workflows://` plugin accepts (its `parse_native_url`, then its workflow and signature rules),
written out here because models/ may not import apprise; tests/test_webhooks.py checks the two
agree. It is deliberately a little stricter than apprise: https only, a real port, a dotted host
name, and only the query parameters Microsoft's URLs carry (apprise would also take, say,
`template=PATH` and read a local file). `private_host_problem` refuses hosts a partner's
webhook can never be (loopback, link-local, private networks), without any DNS lookup.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote, urlsplit

MAX_URL = 2048
# the path apprise's parse_native_url matches (case-insensitive, as it does)
_PATH = re.compile(
    r"(?:/powerautomate/automations/direct(?:/cu/[0-9]+)?)?"
    r"/workflows/[A-Z0-9_-]+/triggers/manual/paths/invoke/?",
    re.IGNORECASE,
)
_NETLOC = re.compile(r"(?P<host>[A-Za-z0-9_.-]+)(?::(?P<port>[1-9][0-9]{0,4}))?")
# a host-name label as apprise's is_hostname takes it
_LABEL = re.compile(r"(?:[a-z0-9][a-z0-9_-]{1,62}|[a-z_-])(?<![_-])", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")  # a workflow id or a signature, as apprise checks them
_NUMERIC = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
# the query parameters of the URL Power Automate or Logic Apps gives out
QUERY_PARAMETERS = frozenset({"api-version", "sp", "sv", "sig"})


def teams_webhook_problem(url: str) -> str | None:
    """Why `url` cannot be a member's Teams webhook, or None when it can."""
    if not url.lower().startswith("https://"):
        return "must be an https:// Power Automate Workflows URL"
    return private_host_problem(url) or workflows_url_problem(url)


def workflows_url_problem(url: str) -> str | None:
    """Why apprise's `workflows://` would refuse `url` (or we refuse it as odd), else None."""
    if len(url) > MAX_URL:
        return f"is longer than {MAX_URL:,} characters"
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "contains spaces or characters a URL may not hold"
    if any(c in url for c in "#\\@"):
        return "must not contain '#', '\\' or '@'"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL"
    if parts.scheme.lower() != "https":
        return "must be an https:// Power Automate Workflows URL"
    netloc = _NETLOC.fullmatch(parts.netloc)
    if netloc is None or int(netloc["port"] or 443) > 65535:
        return "the host (and port) is not a host name (and a port up to 65535)"
    problem = _host_name_problem(netloc["host"])
    if problem:
        return problem
    if not _PATH.fullmatch(parts.path):
        return "the path is not a Workflows trigger (.../workflows/ID/triggers/manual/paths/invoke)"
    return _query_problem(parts.query)


def _host_name_problem(host: str) -> str | None:
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2:
        return "the host is not a full host name (like prod-00.westeurope.logic.azure.com)"
    if _NUMERIC.fullmatch(labels[-1]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "the host is neither a host name nor an IP address written in full"
        return None
    if not all(_LABEL.fullmatch(label) for label in labels):
        return "the host is not a valid host name"
    return None


def _query_problem(query: str) -> str | None:
    if not query:
        return "has no query string: the URL's sig=... signature is missing"
    seen: dict[str, str] = {}
    for pair in re.split(r"[&;]", query):
        name, _, value = pair.partition("=")
        key = unquote(name).strip().lower()
        if key not in QUERY_PARAMETERS:
            expected = "sig, sp, sv and api-version"
            return f"has an unexpected query parameter {key[:30]!r} (expected only {expected})"
        if key in seen:
            return f"gives the query parameter {key!r} twice"
        seen[key] = unquote(value).strip()
    if not seen.get("sig"):
        return "has no signature (sig=...)"
    if not _TOKEN.fullmatch(seen["sig"]):
        return "its signature (sig=...) holds characters a Workflows signature never does"
    return None


def private_host_problem(url: str) -> str | None:
    """Why the host of `url` is one a webhook must not point at (this machine, its cloud metadata
    service, a private network), else None. Looks at the URL only: no DNS lookup."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return "the host is not a valid host name"
    if host == "localhost" or host.endswith(".localhost"):
        return f"the host '{host}' is this machine (localhost)"
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for test, what in (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address (this machine)"),
        (address.is_link_local, "a link-local address (such as a cloud metadata service)"),
        (address.is_private, "a private network address"),
        (address.is_multicast or address.is_reserved, "not a public address"),
    ):
        if test:
            return f"the host {host} is {what}"
    return None
