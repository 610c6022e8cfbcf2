"""Read-only views of the partnership for the CLI and the flows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, func, select

from models import meetings, reports, reviews
from models.commands import current_constitution
from models.constitution import Constitution
from models.tables import AuditHead, ConstitutionRecord, Person, PersonRole


@dataclass(frozen=True)
class SeatView:
    role: str
    organisation: str | None
    seats: int
    filled: int


@dataclass(frozen=True)
class BodyView:
    id: str
    name: str
    kind: str
    chair_role: str
    chair: str | None
    deputy_role: str | None
    seats: int
    seats_filled: int
    vacancies: list[SeatView]
    next_meetings: list[str]


@dataclass(frozen=True)
class StatusView:
    partnership: str
    short_name: str
    constitution_digest: str
    constitution_loaded_at: str
    members: int
    audit_events: int
    bodies: list[BodyView]
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _holders(session: Session) -> list[tuple[str, str, str]]:
    """(role id, organisation id, name) of every active member's roles."""
    rows = session.exec(
        select(PersonRole.role_id, Person.organisation_id, Person.name)
        .join(Person, col(Person.id) == col(PersonRole.person_id))
        .where(col(Person.active).is_(True))
        .order_by(col(Person.name))
    )
    return [(r, o, n) for r, o, n in rows]


def status(session: Session, *, now: datetime, meetings: int = 1) -> StatusView:
    """Bodies, chairs, seats filled, next meetings and what breaks 20.3.3 among the people."""
    c = current_constitution(session)
    record = session.exec(
        select(ConstitutionRecord).where(col(ConstitutionRecord.current).is_(True))
    ).one()
    holders = _holders(session)
    members = session.exec(select(func.count()).where(col(Person.active).is_(True))).one()
    head = session.exec(select(AuditHead)).one()
    bodies = [_body_view(c, b.id, holders, now, meetings) for b in c.bodies]
    return StatusView(
        partnership=c.partnership.name,
        short_name=c.partnership.short_name,
        constitution_digest=record.digest,
        constitution_loaded_at=record.loaded_at.isoformat(timespec="minutes"),
        members=members,
        audit_events=head.seq,
        bodies=bodies,
        warnings=reviews.representation_gaps(c, holders) if members else [],
    )


def _fills(
    c: Constitution, role: str, organisation: str | None, holders: list[tuple[str, str, str]]
) -> list[str]:
    org = organisation or c.role(role).organisation
    return [name for r, o, name in holders if r == role and (org is None or o == org)]


def _body_view(
    c: Constitution,
    body_id: str,
    holders: list[tuple[str, str, str]],
    now: datetime,
    meetings: int,
) -> BodyView:
    body = c.body(body_id)
    vacancies: list[SeatView] = []
    filled_total = 0
    for seat in body.members:
        filled = min(seat.count, len(_fills(c, seat.role, seat.organisation, holders)))
        filled_total += filled
        if filled < seat.count:
            vacancies.append(SeatView(seat.role, seat.organisation, seat.count, filled))
    chairs = _fills(c, body.chair, None, holders)
    upcoming = body.cadence.next_meetings(now, meetings) if body.cadence else []
    return BodyView(
        id=body.id,
        name=body.name,
        kind=body.kind.value,
        chair_role=c.role(body.chair).name,
        chair=chairs[0] if chairs else None,
        deputy_role=c.role(body.deputy).name if body.deputy else None,
        seats=sum(s.count for s in body.members),
        seats_filled=filled_total,
        vacancies=vacancies,
        next_meetings=[d.isoformat(timespec="minutes") for d in upcoming],
    )


@dataclass(frozen=True)
class OverdueItem:
    what: str
    key: str
    due: date


def overdue_items(session: Session, now: datetime) -> list[OverdueItem]:
    """Everything overdue: reports (22.2.1, 11.4.1) and reviews past their due date, and draft
    minutes not in by their day. Each rule is its own module's; this only gathers them."""
    return (
        [OverdueItem("report", k, due) for k, due in reports.overdue_report_keys(session)]
        + [OverdueItem("review", k, due) for k, due in reviews.overdue_review_keys(session)]
        + [OverdueItem("minutes", k, due) for k, due in meetings.overdue_minutes(session, now)]
    )
