"""Render a message of one kind from its template set: subject, plain text, HTML and Teams body.

Templates may be edited by an administrator, so they run in jinja2's SandboxedEnvironment with
StrictUndefined (a missing variable is an error, never an empty string). HTML templates autoescape;
the Teams (markdown) templates escape markdown in every `{{ }}` value; subjects are one line and a
CR or LF in one is refused, so user data can inject neither markup nor mail headers. Data containing
`{{ }}` is displayed as it is: jinja2 never evaluates data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from models.clock import wall
from models.errors import WctError
from models.messages import MessageContext
from notifications.links import MessageLinks

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PARTS = ("subject.txt.j2", "body.txt.j2", "body.html.j2", "teams.md.j2")
SUBJECT_LIMIT = 250
TEAMS_LIMIT = 1000  # apprise's workflows:// cuts the card body at 1,000 characters


class TemplateFailed(WctError):
    """A template could not be rendered: names the template, the line and the reason."""


class HeaderInjection(WctError):
    """A value bound for a mail header holds a line break (or other control character)."""


@dataclass(frozen=True)
class Rendered:
    kind: str
    subject: str
    text: str
    html: str
    teams: str


def when(value: datetime | date | str | None) -> str:
    """`Tuesday 12 January 2027 at 10:00` in the partnership's time zone (`models.clock.local`);
    a date alone without the time."""
    if value is None:
        return "not set"
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        wall_time = wall(value)
        return f"{wall_time:%A} {wall_time.day} {wall_time:%B %Y} at {wall_time:%H:%M}"
    return f"{value:%A} {value.day} {value:%B %Y}"


def time_only(value: datetime) -> str:
    return f"{wall(value):%H:%M}"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#~|])")


@dataclass(frozen=True)
class Verbatim:
    """A value a Teams template shows as it is (a link's URL, which escaping would break): only
    ever one wct made, never user data."""

    text: str

    def __str__(self) -> str:
        return self.text


def escape_markdown(value: Any) -> Any:
    """Every `{{ }}` value in a Teams template: markdown characters shown, never interpreted."""
    if isinstance(value, Verbatim):
        return value.text
    if isinstance(value, str):
        return _MARKDOWN_SPECIAL.sub(r"\\\1", value.replace("\r", " ").replace("\n", " "))
    return value


def _environment(*, markdown: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=escape_markdown if markdown else None,
        auto_reload=False,
    )
    env.filters["when"] = when
    env.filters["time"] = time_only
    return env


@lru_cache(maxsize=2)
def environment(markdown: bool = False) -> SandboxedEnvironment:
    """The shared environments (built on first use; templates are compiled once per process)."""
    return _environment(markdown=markdown)


def kinds() -> list[str]:
    """Every kind that has a template set (a folder with a subject; not the members' pages)."""
    return sorted(
        p.name
        for p in TEMPLATES.iterdir()
        if p.is_dir() and not p.name.startswith("_") and (p / PARTS[0]).is_file()
    )


def _render_one(name: str, values: dict[str, Any]) -> str:
    env = environment(markdown=name.endswith(".md.j2"))
    try:
        return env.get_template(name).render(values)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise TemplateFailed(
            f"template {_relative(where)} line {exc.lineno}: syntax error: {exc.message}"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateFailed(f"template {exc.name} is missing") from None
    except jinja2.UndefinedError as exc:
        raise TemplateFailed(f"template {_where(exc, name)}: {exc}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateFailed(
            f"template {_where(exc, name)}: refused by the sandbox: {exc}"
        ) from None
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise TemplateFailed(f"template {_where(exc, name)}: {type(exc).__name__}: {exc}") from None


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(TEMPLATES))
    except ValueError:
        return path


def _where(exc: BaseException, name: str) -> str:
    """`kind/part.j2 line N` of a render-time error: the innermost template frame in the traceback
    jinja2 rewrites (so an error inside the shared layout names the layout)."""
    tb = exc.__traceback__
    found = f"{name} line ?"
    root = str(TEMPLATES)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(root):
            found = f"{_relative(filename)} line {tb.tb_lineno}"
        tb = tb.tb_next
    return found


def single_line(value: str, *, what: str) -> str:
    """A header value: refuses CR, LF and other control characters with a clear error."""
    bad = [ch for ch in value if ch in "\r\n" or (ord(ch) < 32 and ch != "\t") or ord(ch) == 127]
    if bad:
        shown = ", ".join(sorted({repr(ch) for ch in bad}))
        raise HeaderInjection(
            f"{what} contains a line break or control character ({shown}): "
            "refused, since it could inject mail headers"
        )
    return value


def _teams_links(links: MessageLinks | None) -> str:
    """The links of a Teams message, rendered on their own: the card's body is cut at
    TEAMS_LIMIT, and the links must survive the cut."""
    if links is None:
        return ""
    values = {
        "action": None
        if links.action is None
        else {"label": links.action.label, "url": Verbatim(links.action.url)},
        "personal": {"label": links.personal.label, "url": Verbatim(links.personal.url)},
    }
    return _render_one("_links.md.j2", values).strip()


def render(
    kind: str,
    context: MessageContext,
    *,
    channel: str | None = None,
    links: MessageLinks | None = None,
) -> Rendered:
    """The parts of `kind` for `context` (for `channel` "email": subject, text and HTML; "teams":
    subject and Teams body; None: all four), with the recipient's `links` (the button of the
    action the message asks for, and their own page) when given; TemplateFailed or
    HeaderInjection if not possible."""
    values = context.model_dump()
    values["kind"] = kind
    values["links"] = links
    subject_name, text_name, html_name, teams_name = (f"{kind}/{part}" for part in PARTS)
    subject = _render_one(subject_name, values).strip()
    single_line(subject, what=f"the subject of '{kind}'")
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 1] + "…"
    teams = ""
    if channel in (None, "teams"):
        teams = _render_one(teams_name, values).strip()
        footer = _teams_links(links)
        room = TEAMS_LIMIT - (len(footer) + 2 if footer else 0)
        if len(teams) > room:
            teams = teams[: room - 1] + "…"
        if footer:
            teams = f"{teams}\n\n{footer}"
    email = channel in (None, "email")
    return Rendered(
        kind=kind,
        subject=subject,
        text=_render_one(text_name, values) if email else "",
        html=_render_one(html_name, values) if email else "",
        teams=teams,
    )
