"""Helpers for the browser tests of the members' pages: one real uvicorn per module serving the
app, a fresh SQLite database per test behind it (the Wirral constitution and the test members),
and the mail the real dispatcher delivers to the mail folder, read back as a member reads it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from deployments.web.app import WebApp
from deployments.web.security import TokenBuckets
from deployments.web.serve import Running, start
from models.clock import LONDON, FixedClock
from models.commands import apply_constitution
from models.constitution import Constitution
from models.db import make_engine
from models.links import action_url, personal_url
from models.uow import UnitOfWork
from notifications.config import NotificationSettings
from notifications.dispatch import drain

from .cycles_support import populate
from .test_web import free_port, pseudonym

KEY = b"b" * 32  # the partnership's link key in these tests: the app's and the dispatcher's


@dataclass(frozen=True)
class Mail:
    """One delivered `.eml`, as its reader gets it."""

    path: Path
    to: str
    key: str  # X-WCT-Key: the outbox key (message, recipient, channel)
    subject: str
    text: str
    html: str

    def button(self, label: str) -> str:
        """The href of the HTML part's link whose words are `label` (the message's button)."""
        links = _Links()
        links.feed(self.html)
        found = [href for href, words in links.found if words == label]
        assert len(found) == 1, f"{self.path.name}: {label!r} in {links.found}"
        return found[0]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None
        self._words: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._words = dict(attrs).get("href"), []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._words.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.found.append((self._href, " ".join("".join(self._words).split())))
            self._href = None


def read_mail(path: Path) -> Mail:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    parts = {p.get_content_type(): p for p in message.walk() if not p.is_attachment()}
    return Mail(
        path=path,
        to=message["To"].addresses[0].addr_spec,
        key=str(message["X-WCT-Key"]),
        subject=str(message["Subject"]),
        text=parts["text/plain"].get_content(),
        html=parts["text/html"].get_content(),
    )


@dataclass
class Site:
    """The members' pages on a real port in front of this test's database, and its mail."""

    base: str
    web: WebApp
    clock: FixedClock
    home: Path
    seen: set[Path] = field(default_factory=set)

    @property
    def engine(self) -> Engine:
        return self.web.engine

    @property
    def mail_settings(self) -> NotificationSettings:
        return NotificationSettings(
            home=self.home, web_url=self.base, link_key=SecretStr(KEY.hex())
        )

    def deliver(self) -> list[Mail]:
        """Drain the outbox as `wct dispatch` does, to the mail folder; the mail new since the
        last call."""
        result = drain(self.engine, clock=self.clock, settings=self.mail_settings)
        assert (result.failed, result.dead, result.errors) == (0, 0, []), result
        folder = self.mail_settings.mail_dir
        new = sorted(set(folder.glob("*.eml")) - self.seen) if folder.exists() else []
        self.seen |= set(new)
        return [read_mail(p) for p in new]

    def personal(self, email: str) -> str:
        """A member's link to their own page (every message carries one)."""
        return personal_url(
            self.base, KEY, person=pseudonym(self.engine, email), now=self.clock.now()
        )

    def link(self, email: str, action: str, subject: str, **kw: object) -> str:
        """A member's signed link, minted as a message's would be (for the refusal tests)."""
        return action_url(
            self.base,
            KEY,
            person=pseudonym(self.engine, email),
            action=action,
            subject=subject,
            now=self.clock.now(),
            **kw,  # type: ignore[arg-type]
        )


@contextmanager
def serving() -> Iterator[tuple[str, WebApp]]:
    """One uvicorn (for a module); each test points its app at that test's database."""
    placeholder = sa.create_engine("sqlite://")
    web = WebApp(
        engine=placeholder,
        clock=FixedClock(datetime(2026, 1, 1, tzinfo=LONDON)),
        key=KEY,
        home=Path("/nonexistent"),
    )
    running: Running = start(web, "127.0.0.1", free_port())
    try:
        yield f"http://127.0.0.1:{running.server.config.port}", web
    finally:
        running.stop()
        placeholder.dispose()


@contextmanager
def site_on(
    served: tuple[str, WebApp],
    template: Path,
    wirral: Constitution,
    clock: FixedClock,
    tmp_path: Path,
) -> Iterator[Site]:
    """A fresh SQLite database (a copy of the session's migrated `template`) with the Wirral
    constitution and the cycle tests' members, served at the module's address by `clock`."""
    base, web = served
    shutil.copyfile(template, tmp_path / "wct.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'wct.db'}")
    with UnitOfWork(engine, clock=clock, actor="test") as uow:
        apply_constitution(uow, constitution=wirral, source="wirral.yaml")
        uow.commit()
    populate(engine, clock)
    home = tmp_path / "home"
    web.engine, web.clock, web.home = engine, clock, home
    web.buckets, web.on_change = TokenBuckets(), None
    try:
        yield Site(base=base, web=web, clock=clock, home=home)
    finally:
        engine.dispose()
