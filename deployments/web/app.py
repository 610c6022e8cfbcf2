"""The members' app: `/l/<token>` checks a link and starts a session; `/act/<form>` is the one
form for that link's action; `/me` is the member's own page; `/challenge/<kind>/<year>` is the
public 7.2 form. Every change is `execute(engine, clock, member, ByLink(command, link))`."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from deployments.web.pages import CHALLENGE_PAGE, FORM_PAGES, TEMPLATES, FormPage, render
from deployments.web.security import (
    SecurityHeaders,
    SizeLimit,
    TokenBuckets,
    csrf_ok,
    csrf_token,
    derive,
    new_id,
)
from models.calendar_invite import feed
from models.clock import Clock
from models.commands import current_constitution, partnership_of
from models.errors import InvalidInput, NotFound, Refused, WctError
from models.instructions import ChallengeReview
from models.links import Link, LinkRefused, Refusal, mint, verify
from models.members_web.forms import (
    FORMS,
    About,
    Form,
    Target,
    choices,
    command,
    describe,
    form_of,
)
from models.members_web.personal import PersonalPage, deadline_events, personal_page
from models.members_web.used import ByLink, LinkAlreadyUsed, used_at
from models.members_web.wording import long_date
from models.messages import Ask
from models.permissions import Outsider, UnknownMember, find_actor
from models.service import execute

log = logging.getLogger("wct.web")

SESSION_COOKIE = "wct_session"
ANON_COOKIE = "wct_anon"
SESSION_LIFETIME = timedelta(hours=8)
UPLOAD_LIMIT = 8 * 1024 * 1024
#: What a report may be: extension -> the bytes such a file starts with (None: any text).
UPLOAD_TYPES: dict[str, tuple[bytes, ...] | None] = {
    ".pdf": (b"%PDF-",),
    ".docx": (b"PK\x03\x04",),
    ".xlsx": (b"PK\x03\x04",),
    ".pptx": (b"PK\x03\x04",),
    ".odt": (b"PK\x03\x04",),
    ".ods": (b"PK\x03\x04",),
    ".txt": None,
    ".csv": None,
}

REFUSALS = {
    Refusal.MALFORMED: (
        400,
        "This link is not complete",
        "The link may have been cut short by your email program. Try copying the whole link "
        "into your browser, or use the newest message about this.",
    ),
    Refusal.TAMPERED: (
        403,
        "This link does not work",
        "The link has been changed since it was sent. Use the link in the message exactly as "
        "it came.",
    ),
    Refusal.EXPIRED: (
        410,
        "This link has expired",
        "Links work for a few weeks. The newest message about this has a link that works.",
    ),
}

OnChange = Callable[[Sequence[str]], Awaitable[None]]


@dataclass
class WebApp:
    """What the app needs from outside: the database, the one clock, the link key, where
    uploads go, and what to do after a change (relay events, wake waiting case runs)."""

    engine: Engine
    clock: Clock
    key: bytes
    home: Path
    secure: bool = False
    max_body: int = 10 * 1024 * 1024
    on_change: OnChange | None = None
    buckets: TokenBuckets = field(default_factory=TokenBuckets)

    @property
    def uploads(self) -> Path:
        return self.home / "uploads"


# --- responses -------------------------------------------------------------------------------


def page(name: str, status: int = 200, **context: Any) -> Response:
    return Response(render(name, **context), status, media_type="text/html; charset=utf-8")


def message(
    status: int, heading: str, *lines: str, signed_in: bool = False, csrf: str = ""
) -> Response:
    return page(
        "message.html.j2", status, heading=heading, lines=lines, signed_in=signed_in, csrf=csrf
    )


def see_other(path: str) -> Response:
    """A redirect to one of our own fixed paths (never a URL taken from the request)."""
    assert path.startswith("/") and not path.startswith("//")
    return RedirectResponse(path, status_code=303)


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


# --- sessions ---------------------------------------------------------------------------------


def _session(web: WebApp, request: Request) -> Link | None:
    """The link this browser's session was opened with, if it holds a genuine, unexpired one."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return verify(derive(web.key, "session"), cookie, now=web.clock.now())
    except LinkRefused:
        return None


def _set_session(web: WebApp, response: Response, link: Link) -> None:
    now = web.clock.now()
    lifetime = min(SESSION_LIFETIME, link.expires - now)
    cookie = mint(
        derive(web.key, "session"),
        person=link.person,
        action=link.action,
        subject=link.subject,
        now=now,
        lifetime=lifetime,
        nonce=link.nonce,
    )
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=web.secure,
        path="/",
    )


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


async def _form(request: Request) -> dict[str, str | Upload]:
    """The posted fields, and any file read whole (the size limit has bounded it)."""
    answers: dict[str, str | Upload] = {}
    async with request.form(max_files=2, max_fields=20, max_part_size=UPLOAD_LIMIT) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if value.filename:
                    answers[name] = Upload(value.filename, await value.read())
            else:
                answers[name] = value
    return answers


def _texts(answers: dict[str, str | Upload]) -> dict[str, str]:
    return {k: v for k, v in answers.items() if isinstance(v, str)}


def _csrf_checked(web: WebApp, session_id: str, answers: dict[str, str | Upload]) -> bool:
    given = answers.get("csrf")
    return isinstance(given, str) and csrf_ok(web.key, session_id, given)


# --- /l/<token> -------------------------------------------------------------------------------


async def follow_link(request: Request) -> Response:
    web: WebApp = request.app.state.web
    if not web.buckets.take(_client(request)):
        return message(429, "Too many attempts", "Please wait a minute and try again.")
    token = request.path_params["token"]
    now = web.clock.now()
    try:
        link = verify(web.key, token, now=now)
        target = form_of(link)
    except LinkRefused as refused:
        status, heading, line = REFUSALS[refused.reason]
        return message(status, heading, line)
    except NotFound:
        return message(
            404,
            "This link is not for this page",
            "Use the newest message about this, or ask the partnership's coordinator.",
        )
    with Session(web.engine) as session:
        try:
            find_actor(session, link.person)
        except UnknownMember:
            return message(
                403,
                "This link no longer works",
                "It was sent to someone who is no longer a member.",
            )
        done = used_at(session, link.nonce)
    held = _session(web, request)
    if held is not None and held.person != link.person:
        return message(
            403,
            "This link was sent to someone else",
            "This browser is signed in as another member. Links only work for the "
            "person they were sent to. If you share this computer, sign out first.",
            signed_in=True,
            csrf=csrf_token(web.key, held.nonce),
        )
    if done is not None:
        return message(
            409,
            "This has already been done",
            f"This link was used on {long_date(done)}. Nothing more is needed.",
        )
    response = see_other("/me" if target.form == Form.ME else f"/act/{target.form.value}")
    _set_session(web, response, link)
    return response


# --- /act/<form> ------------------------------------------------------------------------------


def _target(web: WebApp, request: Request) -> tuple[Link, Target] | Response:
    link = _session(web, request)
    if link is None:
        return message(
            401,
            "Please use the link in your message",
            "This page opens from the link in the message that asked you to act.",
        )
    target = form_of(link)
    if target.form.value != request.path_params["form"]:
        return message(
            404,
            "Nothing to do here",
            "Use the link in your message for this.",
            signed_in=True,
            csrf=csrf_token(web.key, link.nonce),
        )
    return link, target


def _show_form(
    web: WebApp,
    link: Link,
    target: Target,
    status: int = 200,
    error: str = "",
    answers: dict[str, Any] | None = None,
) -> Response:
    with Session(web.engine) as session:
        about = describe(session, target)
        done = used_at(session, link.nonce)
        form: FormPage = FORM_PAGES[target.form].with_choices(choices(session, target))
    if done is not None:
        return message(
            200,
            "Thank you: this is done",
            f"{about.title}: recorded on {long_date(done)}.",
            signed_in=True,
            csrf=csrf_token(web.key, link.nonce),
        )
    values = {k: v for k, v in (answers or {}).items() if k != "csrf"}
    return page(
        "form.html.j2",
        status,
        form=form,
        about=about,
        error=error,
        values=values,
        action=f"/act/{target.form.value}",
        csrf=csrf_token(web.key, link.nonce),
        signed_in=True,
    )


async def show_action(request: Request) -> Response:
    web: WebApp = request.app.state.web
    found = _target(web, request)
    if isinstance(found, Response):
        return found
    link, target = found
    try:
        return _show_form(web, link, target)
    except NotFound as gone:
        return message(404, "Not found", str(gone))


def _store_upload(web: WebApp, target: Target, upload: Upload) -> str:
    """Keep an uploaded file under WCT_HOME/uploads; returns its path there, which the report
    records. Refused unless it is of an allowed type and size."""
    name, data = Path(upload.filename).name, upload.data
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_TYPES:
        raise InvalidInput(f"a report must be one of: {', '.join(sorted(UPLOAD_TYPES))}")
    if not data:
        raise InvalidInput("the file is empty")
    if len(data) > UPLOAD_LIMIT:
        raise InvalidInput("the file is larger than 8 MB")
    starts = UPLOAD_TYPES[suffix]
    if starts is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("a text file must be plain UTF-8 text") from None
    elif not any(data.startswith(s) for s in starts):
        raise InvalidInput(f"the file is not a real {suffix} file")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).stem).strip("-.")[:60] or "document"
    relative = Path(f"{target.kind}-{target.ref}") / f"{secrets.token_hex(8)}-{stem}{suffix}"
    path = web.uploads / relative
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(data)
    return f"uploads/{relative.as_posix()}"


async def do_action(request: Request) -> Response:
    web: WebApp = request.app.state.web
    found = _target(web, request)
    if isinstance(found, Response):
        return found
    link, target = found
    answers = await _form(request)
    if not _csrf_checked(web, link.nonce, answers):
        return message(403, "This form has expired", "Please open the link in your message again.")
    stored: str | None = None
    try:
        upload = answers.get("document")
        if isinstance(upload, Upload):
            stored = _store_upload(web, target, upload)
        with Session(web.engine) as session:
            cmd = command(session, target, _texts(answers), document=stored)
        done = execute(web.engine, web.clock, link.person, ByLink(inner=cmd, link=link))
    except InvalidInput as bad:
        _discard(web, stored)
        return _show_form(web, link, target, 400, str(bad), _texts(answers))
    except LinkAlreadyUsed as used:
        _discard(web, stored)
        return message(
            409,
            "This has already been done",
            f"This link was used on {long_date(used.used_at)}. Nothing more is needed.",
            signed_in=True,
            csrf=csrf_token(web.key, link.nonce),
        )
    except Refused as refused:
        _discard(web, stored)
        clause = f" (clause {refused.clause} of the Memorandum)" if refused.clause else ""
        return message(
            403,
            "This cannot be done",
            _plain(str(refused)) + clause,
            signed_in=True,
            csrf=csrf_token(web.key, link.nonce),
        )
    except WctError as other:
        _discard(web, stored)
        return message(
            404 if isinstance(other, NotFound) else 400, "This cannot be done", _plain(str(other))
        )
    await _after(web, [s.subject for s in done.events])
    return see_other(f"/act/{target.form.value}")


def _plain(text: str) -> str:
    """A refusal as a member reads it: without internal pseudonyms."""
    return re.sub(r"\bp-[0-9a-f]{4,}\b", "you", text)


def _discard(web: WebApp, stored: str | None) -> None:
    if stored is not None:
        (web.home / stored).unlink(missing_ok=True)


async def _after(web: WebApp, subjects: Sequence[str]) -> None:
    """Relay the events and wake the case runs waiting on what changed; never fails the page
    (the sweep catches up if Prefect is not there)."""
    if web.on_change is None or not subjects:
        return
    try:
        await web.on_change(sorted(set(subjects)))
    except Exception:  # the change is committed; the sweep will follow it up
        log.warning("could not tell Prefect about the change; the sweep will", exc_info=True)


# --- /me ----------------------------------------------------------------------------------


async def me(request: Request) -> Response:
    web: WebApp = request.app.state.web
    link = _session(web, request)
    if link is None:
        return message(
            401,
            "Please use the link in your message",
            "Your page opens from the link at the foot of any message from the partnership.",
        )
    with Session(web.engine) as session:
        mine = personal_page(session, link.person, now=web.clock.now())
    return page(
        "me.html.j2",
        me=mine,
        actions=_action_links(web, link, mine),
        signed_in=True,
        csrf=csrf_token(web.key, link.nonce),
    )


@dataclass(frozen=True)
class ActionLink:
    label: str
    href: str


def _action_links(web: WebApp, held: Link, mine: PersonalPage) -> dict[Ask, ActionLink]:
    """A fresh signed link to the form for each thing the page offers to do now, for the member
    whose session this is, working no longer than the session does; following it opens the
    form as a link in a message would (and does its action once)."""
    now = web.clock.now()
    lifetime = min(SESSION_LIFETIME, held.expires - now)
    asks = [d.ask for d in mine.due] + [m.declare for m in mine.upcoming]
    links: dict[Ask, ActionLink] = {}
    for ask in asks:
        if ask is None or ask in links or ask.action.value not in FORMS:
            continue
        token = mint(
            web.key,
            person=held.person,
            action=ask.action.value,
            subject=ask.subject,
            now=now,
            lifetime=lifetime,
        )
        label = FORM_PAGES[FORMS[ask.action.value][0]].link
        links[ask] = ActionLink(label, f"/l/{token}")
    return links


async def my_calendar(request: Request) -> Response:
    web: WebApp = request.app.state.web
    link = _session(web, request)
    if link is None:
        return message(401, "Please use the link in your message", "Then download the calendar.")
    now = web.clock.now()
    with Session(web.engine) as session:
        mine = personal_page(session, link.person, now=now)
    text = feed(
        deadline_events(mine, domain="wct", organizer="wct@localhost"),
        stamp=now,
        name="My deadlines",
    )
    return Response(
        text,
        media_type="text/calendar; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="my-deadlines.ics"'},
    )


async def download(request: Request) -> Response:
    """A stored paper, for a signed-in member only, always as a download (never inline)."""
    web: WebApp = request.app.state.web
    if _session(web, request) is None:
        return message(401, "Please use the link in your message", "Papers are for members.")
    relative = request.path_params["path"]
    base = web.uploads.resolve()
    path = (base / relative).resolve()
    if base not in path.parents or not path.is_file():
        return message(404, "Not found", "There is no such paper.")
    return Response(
        path.read_bytes(),
        media_type="application/octet-stream",
        headers={"content-disposition": f'attachment; filename="{path.name}"'},
    )


async def sign_out(request: Request) -> Response:
    web: WebApp = request.app.state.web
    link = _session(web, request)
    answers = await _form(request)
    if link is None or not _csrf_checked(web, link.nonce, answers):
        return message(403, "This form has expired", "Close the browser to sign out.")
    response = message(200, "You are signed out", "You can close this window.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- the public 7.2 challenge ------------------------------------------------------------------


def _anon(request: Request) -> str:
    return request.cookies.get(ANON_COOKIE) or ""


async def show_challenge(request: Request) -> Response:
    web: WebApp = request.app.state.web
    anon = _anon(request) or new_id()
    response = _challenge_page(web, request, anon)
    response.set_cookie(ANON_COOKIE, anon, httponly=True, samesite="strict", secure=web.secure)
    return response


def _challenge_page(
    web: WebApp,
    request: Request,
    anon: str,
    status: int = 200,
    error: str = "",
    values: dict[str, str] | None = None,
) -> Response:
    kind, year = request.path_params["kind"], request.path_params["year"]
    about_title = f"The {kind.replace('-', ' ')} review of {year}"
    with Session(web.engine) as session:
        c = current_constitution(session)
    agreement = c.partnership.agreement_name
    return page(
        "form.html.j2",
        status,
        form=CHALLENGE_PAGE,
        about=About(about_title, (), c.cite("challenge"), agreement),
        error=error,
        values=values or {},
        action=f"/challenge/{kind}/{year}",
        csrf=csrf_token(web.key, anon),
        signed_in=False,
    )


async def do_challenge(request: Request) -> Response:
    web: WebApp = request.app.state.web
    if not web.buckets.take(_client(request)):
        return message(429, "Too many attempts", "Please wait a minute and try again.")
    anon = _anon(request)
    answers = await _form(request)
    if not anon or not _csrf_checked(web, anon, answers):
        return message(403, "This form has expired", "Please open the form again.")
    text = _texts(answers)
    name = " ".join(text.get("name", "").split())
    try:
        if not name or len(name) > 200:
            raise InvalidInput("please give your name (at most 200 characters)")
        cmd = ChallengeReview(
            kind=request.path_params["kind"],
            year=request.path_params["year"],
            text=text.get("text", ""),
        )
        done = execute(web.engine, web.clock, Outsider(name), cmd)  # never a member's name
    except InvalidInput as bad:
        return _challenge_page(web, request, anon, 400, str(bad), text)
    except WctError as other:
        status = 404 if isinstance(other, NotFound) else 403
        return message(status, "The challenge was not recorded", _plain(str(other)))
    await _after(web, [s.subject for s in done.events])
    return message(
        200,
        "Thank you: your challenge is recorded",
        "The body that owns the review will consider it.",
    )


# --- the rest -----------------------------------------------------------------------------------


async def home(request: Request) -> Response:  # noqa: ARG001 -- a route's signature
    return message(
        200,
        "Members' pages",
        "Open the link in a message from the partnership to act on it, or the link "
        "at its foot to see your own page.",
    )


async def stylesheet(request: Request) -> Response:  # noqa: ARG001
    css = (TEMPLATES / "site.css").read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"cache-control": "max-age=3600"})


async def health(request: Request) -> Response:  # noqa: ARG001
    return PlainTextResponse("ok")


class InPartnership:
    """Each request is served in the partnership's time zone and region (its wall times), but
    for those that show no time (`TIMELESS`), which are spared the database read it costs. When
    the database does not answer, a page says so (503), inside the security headers."""

    TIMELESS = frozenset({"/healthz", "/static/site.css"})

    def __init__(self, app: Any, engine: Engine) -> None:
        self.app, self.engine = app, engine

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self.TIMELESS:
            await self.app(scope, receive, send)
            return
        with ExitStack() as partnership:
            try:
                partnership.enter_context(partnership_of(self.engine))
            except DBAPIError:  # the database does not answer: say so, with the usual headers
                log.exception("the database did not answer")
                unavailable = message(
                    503, "Not available just now", "Please try again in a few minutes."
                )
                unavailable.headers["retry-after"] = "60"
                await unavailable(scope, receive, send)
                return
            await self.app(scope, receive, send)


def create_app(web: WebApp) -> Any:
    """The ASGI app: routes, then the size limit, then the security headers on everything."""
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/healthz", health),
            Route("/static/site.css", stylesheet),
            Route("/l/{token}", follow_link),
            Route("/act/{form}", show_action, methods=["GET"]),
            Route("/act/{form}", do_action, methods=["POST"]),
            Route("/me", me),
            Route("/me/calendar.ics", my_calendar),
            Route("/papers/{path:path}", download),
            Route("/signout", sign_out, methods=["POST"]),
            Route("/challenge/{kind}/{year:int}", show_challenge, methods=["GET"]),
            Route("/challenge/{kind}/{year:int}", do_challenge, methods=["POST"]),
        ],
    )
    app.state.web = web
    return SecurityHeaders(SizeLimit(InPartnership(app, web.engine), web.max_body))
