"""A link does its action once: `ByLink(inner, link)` records the link's nonce in the same unit
of work as `inner`, so the action and the memory of the link commit together or not at all, and
a replay (the same link opened again, a second tab, a double click) is refused and changes
nothing.

    pending --ByLink runs, inner succeeds, one commit--> used (UsedLink row, unique nonce)
    pending --inner refused or fails--> pending (rolled back with it: the link still works)
    used    --ByLink runs again--> LinkAlreadyUsed (nothing written)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from typing_extensions import override

from models.constitution import Constitution
from models.errors import Refused
from models.links import Link
from models.permissions import Principal
from models.service import Command, Permission
from models.tables import UsedLink
from models.uow import UnitOfWork

R = TypeVar("R", covariant=True)


class LinkAlreadyUsed(Refused):
    """The link's action was already done: a replay changes nothing."""

    def __init__(self, used_at: datetime) -> None:
        super().__init__(f"this link was already used on {used_at.date().isoformat()}")
        self.used_at = used_at


def used_at(session: Session, nonce: str) -> datetime | None:
    """When the link with this nonce was used, or None if it was not."""
    row = session.get(UsedLink, nonce)
    return row.used_at if row is not None else None


@dataclass(frozen=True, kw_only=True)
class ByLink(Command[R]):
    """`inner`, done by following `link`: the same permission as `inner`, and the link recorded
    as used in the same transaction."""

    inner: Command[R]
    link: Link

    @override
    def constitution(self, uow: UnitOfWork) -> Constitution:
        return self.inner.constitution(uow)

    @override
    def permission(self, uow: UnitOfWork) -> Permission:
        return self.inner.permission(uow)

    @override
    def run(self, uow: UnitOfWork, actor: Principal) -> R:
        session = uow.session
        earlier = used_at(session, self.link.nonce)
        if earlier is not None:
            raise LinkAlreadyUsed(earlier)
        session.add(
            UsedLink(
                nonce=self.link.nonce,
                person=self.link.person,
                action=self.link.action,
                subject=self.link.subject,
                used_at=uow.clock.now(),
            )
        )
        try:
            session.flush()  # a concurrent use of the same link loses here, before acting
        except IntegrityError:
            raise LinkAlreadyUsed(uow.clock.now()) from None
        return self.inner.run(uow, actor)
