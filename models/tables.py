"""SQLModel tables for the whole domain of the MoU. Schema changes go through Alembic migrations.

Names of people live only in `Person`; everything else, the audit trail included, refers to a
person by `Person.pseudonym`, so that erasing a person (UK GDPR) never breaks the audit chain.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from models.clock import LONDON


class AwareDateTime(sa.types.TypeDecorator[datetime]):
    """Stores UTC, returns timezone-aware datetimes in Europe/London on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: wct stores timezone-aware times only")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(LONDON)


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_type=AwareDateTime, nullable=nullable, index=index)


# --- The partnership's structure (loaded from the constitution) ------------------------------


class ConstitutionRecord(SQLModel, table=True):
    """The constitution in force: its text, digest and when it was loaded."""

    __tablename__ = "constitution"
    id: int | None = Field(default=None, primary_key=True)
    partnership_id: str = Field(max_length=64)
    digest: str = Field(max_length=64, index=True)
    source: str = Field(max_length=500)
    document: str = Field(sa_type=sa.Text, description="The constitution as canonical JSON.")
    loaded_at: datetime = _ts()
    current: bool = Field(default=True, index=True)


class Organisation(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    statutory_partner: bool = False
    category: str | None = Field(default=None, max_length=300)
    active: bool = True


class Role(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    kind: str = Field(max_length=64)
    organisation_id: str | None = Field(default=None, foreign_key="organisation.id", max_length=64)
    active: bool = True


class Body(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    kind: str = Field(max_length=64, index=True)
    chair_role_id: str = Field(foreign_key="role.id", max_length=64)
    deputy_role_id: str | None = Field(default=None, foreign_key="role.id", max_length=64)
    outcome: str | None = Field(default=None, max_length=64)
    cadence_rrule: str | None = Field(default=None, max_length=300)
    cadence_first: datetime | None = _ts(nullable=True)
    duration_minutes: int = 120
    location: str | None = Field(default=None, max_length=300)
    active: bool = True


class Seat(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    body_id: str = Field(foreign_key="body.id", max_length=64, index=True)
    role_id: str = Field(foreign_key="role.id", max_length=64)
    organisation_id: str | None = Field(default=None, foreign_key="organisation.id", max_length=64)
    count: int = 1


# --- People (personal data: imported apart from the constitution) ---------------------------


class Channel(StrEnum):
    EMAIL = "email"
    TEAMS = "teams"


class Person(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    pseudonym: str = Field(max_length=32, unique=True, description="Stable id used in the audit.")
    name: str = Field(max_length=200)
    email: str = Field(max_length=254, unique=True)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=64, index=True)
    teams_webhook: str | None = Field(default=None, max_length=2000)
    channels: str = Field(default="email", max_length=64, description="Comma-separated Channel.")
    active: bool = True
    updated_at: datetime = _ts()


class PersonRole(SQLModel, table=True):
    person_id: int = Field(foreign_key="person.id", primary_key=True)
    role_id: str = Field(foreign_key="role.id", primary_key=True, max_length=64)


# --- Meetings (20.4, 21.4, 22.4) ------------------------------------------------------------


class Meeting(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("body_id", "starts_at"),)
    id: int | None = Field(default=None, primary_key=True)
    body_id: str = Field(foreign_key="body.id", max_length=64, index=True)
    starts_at: datetime = _ts(index=True)
    ends_at: datetime = _ts()
    location: str | None = Field(default=None, max_length=300)
    status: str = Field(default="planned", max_length=32)
    ical_uid: str = Field(max_length=200, unique=True)
    ical_sequence: int = 0
    minutes_due_on: date | None = None
    minutes_approved_at_meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    extraordinary: bool = Field(
        default=False, description="Called off the body's cadence (an extraordinary meeting)."
    )
    cadence_on: date | None = Field(
        default=None,
        description="The date of the body's cadence this meeting stands for (kept when it moves).",
    )


class AgendaItem(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    position: int
    title: str = Field(max_length=300)
    kind: str = Field(max_length=32, description="standing | submitted | report | risk | approval")
    source: str | None = Field(default=None, max_length=200, description="What put it here.")
    submitted_by: str | None = Field(default=None, max_length=32, description="Pseudonym.")
    confidential: bool = Field(
        default=False, description="Left out of the public papers (the constitution's `papers:`)."
    )
    approval_id: int | None = Field(
        default=None,
        foreign_key="approvalrequest.id",
        description="Put forward under this approval request: not decided until it is approved.",
    )


class Attendance(SQLModel, table=True):
    meeting_id: int = Field(foreign_key="meeting.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True)
    status: str = Field(max_length=16, description="present | apologies | absent")


class Declaration(SQLModel, table=True):
    """18.1: a declaration of interest, against an agenda item or a dispute."""

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id")
    meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    agenda_item_id: int | None = Field(default=None, foreign_key="agendaitem.id")
    dispute_id: int | None = Field(default=None, foreign_key="dispute.id")
    nature: str = Field(max_length=1000)
    declared_at: datetime = _ts()


class Motion(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    agenda_item_id: int | None = Field(default=None, foreign_key="agendaitem.id")
    text: str = Field(max_length=2000)
    outcome: str | None = Field(default=None, max_length=32)
    method: str | None = Field(default=None, max_length=32)
    explanation: str | None = Field(default=None, max_length=500)


class MeetingAction(SQLModel, table=True):
    """An action agreed at a meeting, against an agenda item: who owns it and by when. It is
    reminded and escalated as steps, and returns as matters arising until it is done."""

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    agenda_item_id: int | None = Field(default=None, foreign_key="agendaitem.id")
    text: str = Field(max_length=1000)
    owner_id: int = Field(foreign_key="person.id", index=True)
    due_on: date
    status: str = Field(default="open", max_length=16, index=True, description="open|done|dropped")
    created_at: datetime = _ts()
    closed_at: datetime | None = _ts(nullable=True)
    note: str | None = Field(default=None, max_length=2000)


class VoteRecord(SQLModel, table=True):
    motion_id: int = Field(foreign_key="motion.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True)
    casting: bool = Field(default=False, primary_key=True)
    vote: str = Field(max_length=16)


# --- Reports and reviews (22.2.1, 11.4.1, 19.1, 11.4.2, 7.2, 11.3.4, 17.2, 20.3.5, 13.3, 11.2.4)


class Report(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("kind", "from_body_id", "period"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64)
    from_body_id: str = Field(foreign_key="body.id", max_length=64)
    to_body_id: str = Field(foreign_key="body.id", max_length=64)
    period: str = Field(max_length=16, description="e.g. 2027-Q1")
    due_on: date
    status: str = Field(default="requested", max_length=32, index=True)
    submitted_at: datetime | None = _ts(nullable=True)
    submitted_by: str | None = Field(default=None, max_length=32)
    document: str | None = Field(default=None, max_length=2000, description="Link or file name.")


class Review(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("kind", "year"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64)
    year: int
    owner_body_id: str = Field(foreign_key="body.id", max_length=64)
    due_on: date
    status: str = Field(default="open", max_length=32, index=True)
    outcome: str | None = Field(default=None, max_length=2000)
    published_at: datetime | None = _ts(nullable=True)
    challenge_closes_on: date | None = None
    challenges: int = Field(default=0, description="Challenges received in the 7.2 window.")
    completed_at: datetime | None = _ts(nullable=True)


# --- Cases (16.1, 18.2, 11.5.1, 11.3.5, 21.1.1) ---------------------------------------------


class Risk(SQLModel, table=True):
    """A risk to the delivery of the CYPP, managed by the Executive (16.1, 13.2)."""

    id: int | None = Field(default=None, primary_key=True)
    trigger_key: str = Field(max_length=200, unique=True)
    title: str = Field(max_length=300)
    owner_person_id: int = Field(foreign_key="person.id")
    likelihood: int = Field(ge=1, le=5)
    impact: int = Field(ge=1, le=5)
    status: str = Field(default="managed", max_length=32, index=True)
    review_due_on: date
    escalated_at: datetime | None = _ts(nullable=True)
    escalation_reason: str | None = Field(default=None, max_length=500)
    board_assessment: str | None = Field(default=None, max_length=2000)
    raised_at: datetime = _ts()
    closed_at: datetime | None = _ts(nullable=True)


class Dispute(SQLModel, table=True):
    """A conflict within the partnership on the 18.2 ladder."""

    id: int | None = Field(default=None, primary_key=True)
    trigger_key: str = Field(max_length=200, unique=True)
    title: str = Field(max_length=300)
    stage: str = Field(
        max_length=32, index=True, description="informal|chief_executives|adr|closed"
    )
    stage_deadline: date | None = None
    outcome: str | None = Field(default=None, max_length=32)
    opened_at: datetime = _ts()
    closed_at: datetime | None = _ts(nullable=True)


class DisputeParty(SQLModel, table=True):
    dispute_id: int = Field(foreign_key="dispute.id", primary_key=True)
    organisation_id: str = Field(foreign_key="organisation.id", primary_key=True, max_length=64)


class DisputeStageRecord(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    dispute_id: int = Field(foreign_key="dispute.id", index=True)
    stage: str = Field(max_length=32)
    opened_at: datetime = _ts()
    deadline: date | None = None
    closed_at: datetime | None = _ts(nullable=True)
    outcome: str | None = Field(default=None, max_length=32)
    note: str | None = Field(default=None, max_length=2000)
    provider: str | None = Field(default=None, max_length=300, description="ADR provider.")


class CallToAccount(SQLModel, table=True):
    """The WSCB calls a partner to account, or asks for evidence of rigour (11.5.1)."""

    id: int | None = Field(default=None, primary_key=True)
    trigger_key: str = Field(max_length=200, unique=True)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=64)
    kind: str = Field(default="call_to_account", max_length=32, description="or evidence_request")
    evidence: str = Field(max_length=4000)
    status: str = Field(max_length=32, index=True)
    proposed_deadline: date | None = None
    proposed_by: str | None = Field(default=None, max_length=16, description="wscb | partner")
    negotiation_ends_on: date | None = None
    stalemate_escalated: bool = False
    agreed_deadline: date | None = None
    response: str | None = Field(default=None, max_length=4000)
    opened_at: datetime = _ts()
    closed_at: datetime | None = _ts(nullable=True)


class ApprovalRequest(SQLModel, table=True):
    """A proposal waiting on another body's approval (11.3.5, 21.1.1)."""

    id: int | None = Field(default=None, primary_key=True)
    trigger_key: str = Field(max_length=200, unique=True)
    gate: str = Field(max_length=64)
    title: str = Field(max_length=300)
    clause: str = Field(max_length=32)
    from_body_id: str = Field(foreign_key="body.id", max_length=64)
    approver_body_id: str = Field(foreign_key="body.id", max_length=64, index=True)
    status: str = Field(default="waiting", max_length=32, index=True)
    requested_at: datetime = _ts()
    decided_at: datetime | None = _ts(nullable=True)
    decision_note: str | None = Field(default=None, max_length=2000)
    due_on: date | None = Field(default=None, description="When the approving body should decide.")


# --- Time, delivery and audit ---------------------------------------------------------------


class Step(SQLModel, table=True):
    """A step of a process due at a time: the record a timer run or the sweep acts on. `kind`
    names its entry in the registry of step kinds (models/steps/registry.py); it is about the row
    `subject_id` of `subject_type` (`subject` names the same, `meeting:17`, as audit events do);
    `params` are its typed parameters, checked by its kind's model when planned and when fired."""

    # The sweep's scan, the timers' horizon and the overdue list ask for pending steps by due
    # time: one range of this index, however many steps are done or not yet due. A late
    # policy asks for the other steps of the same subject (a later reminder, the opening one).
    __table_args__ = (
        sa.Index("ix_step_status_due_at", "status", "due_at"),
        sa.Index("ix_step_subject_type_subject_id", "subject_type", "subject_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=64)
    subject: str = Field(max_length=200)
    subject_type: str = Field(max_length=16)
    subject_id: int
    params: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    due_at: datetime = _ts(index=True)
    status: str = Field(
        default="pending", max_length=16, description="pending|done|settled|skipped"
    )
    done_at: datetime | None = _ts(nullable=True)


class OutboxMessage(SQLModel, table=True):
    """One message to one recipient on one channel; `key` makes a retry a no-op."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    kind: str = Field(max_length=64)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    body_id: str | None = Field(
        default=None,
        max_length=64,
        description="A post to the body's Teams channel (its constitution's `teams_channel`), "
        "instead of a person.",
    )
    channel: str = Field(max_length=16)
    context: str = Field(sa_type=sa.Text, description="Template variables as JSON.")
    status: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime = _ts(index=True)
    lease_until: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True)


class ChannelHealth(SQLModel, table=True):
    """The circuit breaker of one delivery channel (an SMTP server, a Teams webhook host): its
    run of refused connections, and when it is next probed while open (models/outbox.py)."""

    channel: str = Field(primary_key=True, max_length=300)
    failures: int = Field(default=0, description="Consecutive refused connections.")
    refused: int = Field(default=0, description="Refused attempts since `since`.")
    since: datetime | None = _ts(nullable=True)
    opened_at: datetime | None = _ts(nullable=True)
    probes: int = Field(default=0, description="Failed probes since the breaker opened.")
    next_probe_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=2000)
    updated_at: datetime = _ts()


class AuditEvent(SQLModel, table=True):
    """One entry of the hash-chained audit trail (4.1)."""

    __tablename__ = "audit_event"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = _ts()
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64, index=True)
    subject: str = Field(max_length=200)
    organisations: str = Field(default="", max_length=2000, description="Comma-separated ids.")
    before: str = Field(sa_type=sa.Text)
    after: str = Field(sa_type=sa.Text)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class SignalCursor(SQLModel, table=True):
    """How far along the audit trail Prefect events have been emitted (signals, not records)."""

    __tablename__ = "signal_cursor"
    name: str = Field(primary_key=True, max_length=32)
    seq: int = 0


GENESIS = "0" * 64


class AuditHead(SQLModel, table=True):
    """The chain's head, one row: appends lock it, so the chain is written strictly in order."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(max_length=64)


# --- Members' pages ------------------------------------------------------------------------


class UsedLink(SQLModel, table=True):
    """A signed link whose action was done: recorded in the action's own transaction, so a
    replay of the link changes nothing (models/members_web/used.py)."""

    __tablename__ = "used_link"
    nonce: str = Field(primary_key=True, max_length=64)
    person: str = Field(max_length=32, description="Pseudonym the link was sent to.")
    action: str = Field(max_length=64)
    subject: str = Field(max_length=200)
    used_at: datetime = _ts()
