"""What is recorded of a meeting: apologies before it; attendance, declarations of interest
(18.1) and each motion with its show of hands, decided by the 6.2 rule, after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from models.approvals import hold
from models.casework import clean_text, coordinators
from models.commands import current_constitution
from models.constitution import Constitution
from models.decision import Decision, Vote, decide
from models.errors import InvalidInput, Refused
from models.meetings.agenda import item_at
from models.meetings.plan import MeetingStatus, load_meeting, meeting_key, state_of, subject_of
from models.permissions import Actor, active_people
from models.steps import body_members, role_holders
from models.tables import (
    AgendaItem,
    Attendance,
    Declaration,
    Meeting,
    Motion,
    Person,
    VoteRecord,
)
from models.uow import UnitOfWork


class AttendanceStatus(StrEnum):
    """A member of the body at a meeting: present, sent apologies, or absent (everyone else)."""

    PRESENT = "present"
    APOLOGIES = "apologies"
    ABSENT = "absent"


def find_person(session: Session, who: str) -> Person:
    """The active member with this email or pseudonym, or a clear error."""
    (person,) = active_people(session, [who])
    return person


def send_apologies(uow: UnitOfWork, *, meeting_id: int, who: Actor) -> None:
    """A member sends their apologies before the meeting (who may: the constitution's
    `meeting.apologies`); the reminder then skips them."""
    session = uow.session
    meeting = load_meeting(session, meeting_id)
    if uow.clock.now() >= meeting.starts_at:
        raise Refused("the meeting has started: record attendance instead")
    assert meeting.id is not None
    if session.get(Attendance, (meeting.id, who.person_id)) is None:
        session.add(
            Attendance(
                meeting_id=meeting.id, person_id=who.person_id, status=AttendanceStatus.APOLOGIES
            )
        )
        uow.record(
            "meeting.apologies",
            subject_of(meeting),
            before=None,
            after={"person": who.pseudonym},
        )


def record_attendance(
    uow: UnitOfWork, *, meeting_id: int, present: Sequence[str], apologies: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Who was present and who sent apologies; every other member of the body was absent.
    Only after the meeting has started, only once, and everyone named must be a member."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    if uow.clock.now() < meeting.starts_at:
        raise Refused(
            f"{meeting_key(meeting)} has not started yet: attendance is recorded at or after it"
        )
    if meeting.status in (
        MeetingStatus.HELD,
        MeetingStatus.MINUTES_DRAFTED,
        MeetingStatus.MINUTES_APPROVED,
        MeetingStatus.CANCELLED,
    ):
        raise Refused(
            f"attendance of {meeting_key(meeting)} is already recorded (status {meeting.status})"
        )
    if not present:
        raise InvalidInput("no one present: a meeting needs at least one person present")
    people = active_people(session, present)
    sorry = active_people(session, apologies)
    both = {p.pseudonym for p in people} & {p.pseudonym for p in sorry}
    if both:
        raise InvalidInput(f"recorded both present and with apologies: {', '.join(sorted(both))}")
    members = body_members(session, c, meeting.body_id)
    member_ids = {p.id for p in members} | {p.id for p in coordinators(session, c)}
    strangers = sorted(p.pseudonym for p in people + sorry if p.id not in member_ids)
    if strangers:
        raise Refused(f"not members of {meeting.body_id}: {', '.join(strangers)}")
    status: dict[int, AttendanceStatus] = {p.id or 0: AttendanceStatus.ABSENT for p in members}
    status.update({p.id or 0: AttendanceStatus.APOLOGIES for p in sorry})
    status.update({p.id or 0: AttendanceStatus.PRESENT for p in people})
    # The meeting's rows so far (apologies sent before it), read at once.
    rows = {
        row.person_id: row
        for row in session.exec(select(Attendance).where(Attendance.meeting_id == meeting_id))
    }
    for person_id, value in status.items():
        row = rows.get(person_id)
        if row is None:
            row = Attendance(meeting_id=meeting_id, person_id=person_id, status=value)
        elif value != AttendanceStatus.ABSENT or row.status != AttendanceStatus.APOLOGIES:
            # An apology sent before the meeting stands unless the record says otherwise.
            row.status = value
        session.add(row)
    before = state_of(meeting)
    meeting.status = MeetingStatus.HELD
    session.add(meeting)
    session.flush()
    result = attendance(session, meeting_id)
    uow.record(
        "meeting.attendance_recorded",
        subject_of(meeting),
        before=before,
        after={**state_of(meeting), **result},
    )
    return result


def attendance(session: Session, meeting_id: int) -> dict[str, list[str]]:
    """Pseudonyms by status: present, apologies, absent."""
    out: dict[str, list[str]] = {status.value: [] for status in AttendanceStatus}
    rows = session.exec(
        select(Attendance.status, Person.pseudonym)
        .join(Person, col(Person.id) == col(Attendance.person_id))
        .where(Attendance.meeting_id == meeting_id)
        .order_by(col(Person.pseudonym))
    ).all()
    for status, pseudonym in rows:
        out[status].append(pseudonym)
    return out


def held_meeting(session: Session, meeting_id: int) -> Meeting:
    """The meeting, locked, once its attendance is recorded (held, or its minutes drafted)."""
    meeting = load_meeting(session, meeting_id)
    if meeting.status not in (MeetingStatus.HELD, MeetingStatus.MINUTES_DRAFTED):
        raise Refused(
            f"{meeting_key(meeting)} has no attendance recorded yet (status {meeting.status})"
        )
    return meeting


def declare_interest(uow: UnitOfWork, *, meeting_id: int, who: str, item: int, nature: str) -> int:
    """18.1: a member present declares an interest in an agenda item, recorded in the minutes
    (once: the same interest declared ahead of the meeting is not recorded twice)."""
    session = uow.session
    meeting = held_meeting(session, meeting_id)
    nature = clean_text(nature, what="nature of the interest", limit=1000)
    person = find_person(session, who)
    row = session.get(Attendance, (meeting_id, person.id))
    if row is None or row.status != AttendanceStatus.PRESENT:
        raise Refused(f"{person.pseudonym} was not present at {meeting_key(meeting)}")
    agenda_item = item_at(session, meeting_id, item)
    earlier = _declared(session, person.id or 0, agenda_item.id or 0, nature)
    if earlier is not None:
        return earlier
    return _declare(uow, meeting, person, agenda_item, item, nature)


def declare_interest_ahead(
    uow: UnitOfWork, *, meeting_id: int, who: Actor, item: int, nature: str
) -> int:
    """18.1: a member of the body (who may: the constitution's `meeting.declare`) declares an
    interest in an item of a meeting not yet held; it is recorded with the meeting's
    declarations, so the minutes show it. The same interest twice is one declaration."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = load_meeting(session, meeting_id)
    if meeting.status not in (MeetingStatus.PLANNED, MeetingStatus.AGENDA_PUBLISHED):
        raise c.refused(
            f"{meeting_key(meeting)} is {meeting.status.replace('_', ' ')}: an interest is "
            "declared ahead only of a meeting still to be held",
            c.cite("interests"),
        )
    if uow.clock.now() >= meeting.starts_at:
        raise c.refused(
            f"{meeting_key(meeting)} has started: declare the interest at the meeting",
            c.cite("interests"),
        )
    nature = clean_text(nature, what="nature of the interest", limit=1000)
    person = session.get(Person, who.person_id)
    assert person is not None
    agenda_item = item_at(session, meeting_id, item)
    earlier = _declared(session, who.person_id, agenda_item.id or 0, nature)
    if earlier is not None:
        return earlier
    return _declare(uow, meeting, person, agenda_item, item, nature)


def _declared(session: Session, person_id: int, item_id: int, nature: str) -> int | None:
    """The id of this person's declaration of this interest in this item, if made already."""
    return session.exec(
        select(Declaration.id).where(
            Declaration.person_id == person_id,
            Declaration.agenda_item_id == item_id,
            Declaration.nature == nature,
        )
    ).first()


def _declare(
    uow: UnitOfWork,
    meeting: Meeting,
    person: Person,
    agenda_item: AgendaItem,
    item: int,
    nature: str,
) -> int:
    session = uow.session
    assert meeting.id is not None
    meeting_id = meeting.id
    declaration = Declaration(
        person_id=person.id or 0,
        meeting_id=meeting_id,
        agenda_item_id=agenda_item.id,
        nature=nature,
        declared_at=uow.clock.now(),
    )
    session.add(declaration)
    session.flush()
    uow.record(
        "meeting.interest_declared",
        subject_of(meeting),
        before=None,
        after={"person": person.pseudonym, "item": item}
        | _clause(current_constitution(session).cite("interests")),
    )
    assert declaration.id is not None
    return declaration.id


def _clause(clause: str) -> dict[str, str]:
    """An audit record's `clause`, when the constitution gives one (none: no key)."""
    return {"clause": clause} if clause else {}


@dataclass(frozen=True)
class MotionDecided:
    motion_id: int
    decision: Decision
    chair: str

    def as_dict(self) -> dict[str, Any]:
        return {"motion_id": self.motion_id, "chair": self.chair, **asdict(self.decision)}


def _chairing(
    session: Session, c: Constitution, meeting: Meeting, present: set[str], chaired_by: str | None
) -> str:
    """6.2: who chairs the meeting: the body's chair if present, else its deputy if present,
    else the person the meeting chose (`chaired_by`), who must be present."""
    if chaired_by is not None:
        pseudonym = find_person(session, chaired_by).pseudonym
        if pseudonym not in present:
            raise InvalidInput(f"{pseudonym} chaired but is not recorded as present")
        return pseudonym
    body = c.body(meeting.body_id)
    for role in (body.chair, body.deputy):
        if role is None:
            continue
        for person in role_holders(session, role):
            if person.pseudonym in present:
                return person.pseudonym
    raise InvalidInput(
        f"neither the chair nor a deputy of {body.id} was present: say who chaired (chaired_by)"
    )


def _interested(session: Session, agenda_item: AgendaItem | None) -> set[str]:
    """18.1: who declared an interest in this item (their votes on it are set aside)."""
    if agenda_item is None:
        return set()
    return set(
        session.exec(
            select(Person.pseudonym)
            .join(Declaration, col(Declaration.person_id) == col(Person.id))
            .where(Declaration.agenda_item_id == agenda_item.id)
        ).all()
    )


def record_motion(
    uow: UnitOfWork,
    *,
    meeting_id: int,
    text: str,
    item: int | None = None,
    votes: Mapping[str, Vote] | None = None,
    consensus: bool = False,
    casting_vote: Vote | None = None,
    chaired_by: str | None = None,
) -> MotionDecided:
    """6.2: record a motion and its show of hands; the 6.2 rule decides it and explains how."""
    session, c = uow.session, current_constitution(uow.session)
    meeting = held_meeting(session, meeting_id)
    text = clean_text(text, what="motion", limit=2000)
    present = set(attendance(session, meeting_id)[AttendanceStatus.PRESENT])
    votes = votes or {}
    voters = active_people(session, list(votes))
    by_pseudonym = {p.pseudonym: vote for p, vote in zip(voters, votes.values(), strict=True)}
    chair = _chairing(session, c, meeting, present, chaired_by)
    agenda_item = item_at(session, meeting_id, item) if item is not None else None
    if agenda_item is not None:  # 11.3.5, 21.1.1: an item awaiting another body's approval
        hold(session, item=agenda_item, body_id=meeting.body_id, at=meeting.starts_at)
    decision = decide(
        present=present,
        votes=by_pseudonym,
        chair=chair,
        consensus=consensus,
        casting_vote=casting_vote,
        interested=_interested(session, agenda_item),
        quorum=c.body(meeting.body_id).quorum,
        rule_clause=c.cite("decisions"),
        interest_clause=c.cite("interests"),
    )
    motion = Motion(
        meeting_id=meeting_id,
        agenda_item_id=agenda_item.id if agenda_item else None,
        text=text,
        outcome=decision.outcome.value,
        method=decision.method.value,
        explanation=decision.explanation,
    )
    session.add(motion)
    session.flush()
    assert motion.id is not None
    ids = {p.pseudonym: p.id for p in voters}
    for pseudonym, vote in by_pseudonym.items():
        session.add(VoteRecord(motion_id=motion.id, person_id=ids[pseudonym] or 0, vote=vote.value))
    if casting_vote is not None:
        session.add(
            VoteRecord(
                motion_id=motion.id,
                person_id=find_person(session, chair).id or 0,
                casting=True,
                vote=casting_vote.value,
            )
        )
    uow.record(
        "meeting.motion_decided",
        subject_of(meeting),
        before=None,
        after={
            "motion": motion.id,
            "text": text,
            "chair": chair,
            **{k: str(v) for k, v in asdict(decision).items()},
        },
    )
    return MotionDecided(motion.id, decision, chair)


@dataclass(frozen=True)
class DeclarationInput:
    who: str
    item: int
    nature: str


@dataclass(frozen=True)
class MotionInput:
    text: str
    item: int | None = None
    votes: Mapping[str, Vote] = field(default_factory=dict)
    consensus: bool = False
    casting_vote: Vote | None = None
    chaired_by: str | None = None
