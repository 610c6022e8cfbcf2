"""18.2: conflict is resolved by informal discussion, then by the Chief Executives, then by ADR."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sqlmodel import Session, col, select

from models.calendar import add_working_days
from models.casework import (
    clean_text,
    close_of_business,
    coordinators,
    holders,
    locked,
    notify,
    settle,
    trigger_key,
)
from models.commands import current_constitution
from models.constitution import Action, BodyKind, Constitution, RoleKind
from models.errors import InvalidInput, NotFound, Refused
from models.messages import Ask, revision_key
from models.messages import DisputeStage as DisputeStageMessage
from models.permissions import Actor, Scope
from models.steps import ALWAYS, Firing, StepKind, StepParams, StepSpec, Subject, plan
from models.tables import Declaration, Dispute, DisputeParty, DisputeStageRecord, Person
from models.uow import UnitOfWork

CLAUSE = "18.2"


class DisputeStage(StrEnum):
    INFORMAL = "informal"
    CHIEF_EXECUTIVES = "chief_executives"
    ADR = "adr"
    CLOSED = "closed"


class StageParams(StepParams):
    """A stage's deadline step: which stage it closes (18.2)."""

    stage: DisputeStage


DEADLINE_STEP = StepSpec("dispute.deadline", Subject.DISPUTE, StageParams)


def next_stage(stage: DisputeStage) -> DisputeStage:
    """18.2: informal discussion; if not successful, the Chief Executive of each agency; if still
    not resolved, alternative dispute resolution."""
    ladder = [DisputeStage.INFORMAL, DisputeStage.CHIEF_EXECUTIVES, DisputeStage.ADR]
    if stage not in ladder[:-1]:
        raise Refused(f"there is no stage after {stage.value}", clause=CLAUSE)
    return ladder[ladder.index(stage) + 1]


def stage_deadline(c: Constitution, stage: DisputeStage, start: date) -> date:
    days = {
        DisputeStage.INFORMAL: c.disputes.informal,
        DisputeStage.CHIEF_EXECUTIVES: c.disputes.chief_executives,
        DisputeStage.ADR: c.disputes.adr,
    }[stage]
    return add_working_days(start, days)


@dataclass(frozen=True)
class DisputeResult:
    dispute_id: int
    created: bool
    stage: DisputeStage
    deadline: date | None
    outcome: str | None


def _subject(dispute: Dispute) -> str:
    return f"dispute:{dispute.id}"


def _state(d: Dispute) -> dict[str, object]:
    return {
        "stage": d.stage,
        "deadline": d.stage_deadline.isoformat() if d.stage_deadline else None,
        "outcome": d.outcome,
    }


def _result(d: Dispute, created: bool = False) -> DisputeResult:
    assert d.id is not None
    return DisputeResult(d.id, created, DisputeStage(d.stage), d.stage_deadline, d.outcome)


def parties_of(session: Session, dispute_id: int) -> frozenset[str]:
    rows = session.exec(
        select(DisputeParty.organisation_id).where(DisputeParty.dispute_id == dispute_id)
    )
    return frozenset(rows.all())


def lock(session: Session, dispute_id: int) -> tuple[Dispute, frozenset[str]]:
    """The dispute, locked for this transaction, and its parties."""
    dispute = locked(session, Dispute, dispute_id)
    if dispute is None:
        raise NotFound(f"no dispute #{dispute_id}")
    return dispute, parties_of(session, dispute_id)


def _representatives(session: Session, c: Constitution, parties: frozenset[str]) -> list[Person]:
    """Members of the parties who hold a seat on the Board: each agency's voice in the Trust."""
    board_roles = {seat.role for seat in c.sole(BodyKind.BOARD).members}
    return holders(session, board_roles, parties) or holders(
        session, [r.id for r in c.roles], parties
    )


def party_names(c: Constitution, parties: frozenset[str]) -> list[str]:
    """The parties as a message names them: by their organisations' names."""
    return sorted(o.name for o in c.organisations if o.id in parties)


def dispute_parties(c: Constitution, parties: list[str]) -> frozenset[str]:
    """18.2: the organisations in dispute, each known to the constitution, at least two."""
    unknown = sorted(set(parties) - {o.id for o in c.organisations})
    if unknown:
        raise NotFound(f"unknown organisation(s): {', '.join(unknown)}")
    involved = frozenset(parties)
    if len(involved) < 2:
        raise InvalidInput("a dispute needs at least two different organisations")
    return involved


def open_dispute(
    uow: UnitOfWork, *, title: str, parties: list[str], note: str = ""
) -> DisputeResult:
    """Open a dispute between partners at informal discussion, with its deadline (18.2).
    The same title between the same parties again is the same dispute."""
    session, c = uow.session, current_constitution(uow.session)
    title = clean_text(title, what="title", limit=300)
    involved = dispute_parties(c, parties)
    key = trigger_key("dispute", title, *sorted(involved))
    existing = session.exec(select(Dispute).where(Dispute.trigger_key == key)).first()
    if existing is not None:
        return _result(existing)
    today = uow.clock.now().date()
    deadline = stage_deadline(c, DisputeStage.INFORMAL, today)
    dispute = Dispute(
        trigger_key=key,
        title=title,
        stage=DisputeStage.INFORMAL.value,
        stage_deadline=deadline,
        opened_at=uow.clock.now(),
    )
    session.add(dispute)
    session.flush()
    assert dispute.id is not None
    for org in sorted(involved):
        session.add(DisputeParty(dispute_id=dispute.id, organisation_id=org))
    session.add(
        DisputeStageRecord(
            dispute_id=dispute.id,
            stage=DisputeStage.INFORMAL.value,
            opened_at=uow.clock.now(),
            deadline=deadline,
            note=clean_text(note, what="note", limit=2000, multiline=True) if note else None,
        )
    )
    uow.record(
        "dispute.opened",
        _subject(dispute),
        before=None,
        after=_state(dispute) | {"parties": sorted(involved)},
        organisations=involved,
    )
    _enter_stage(uow, c, dispute, involved, DisputeStage.INFORMAL, reason="opened")
    return _result(dispute, created=True)


def _enter_stage(
    uow: UnitOfWork,
    c: Constitution,
    dispute: Dispute,
    parties: frozenset[str],
    stage: DisputeStage,
    *,
    reason: str,
) -> None:
    session = uow.session
    assert dispute.stage_deadline is not None
    plan(
        session,
        DEADLINE_STEP,
        key=f"{_subject(dispute)}:{stage.value}:deadline",
        subject_id=dispute.id or 0,
        due_at=close_of_business(dispute.stage_deadline),
        params=StageParams(stage=stage),
    )
    if stage is DisputeStage.INFORMAL:
        people = _representatives(session, c, parties)
        action = (
            "Meet the other parties informally, then record the outcome (resolved or not) by "
            "the deadline with the button below."
        )
    elif stage is DisputeStage.CHIEF_EXECUTIVES:
        people = holders(session, c.roles_of(RoleKind.CHIEF_EXECUTIVE), parties)
        missing = sorted(parties - {p.organisation_id for p in people})
        people += coordinators(session, c) if missing else []
        action = (
            "The Chief Executive of each agency involved is asked to meet to resolve it, and "
            "to record the outcome (resolved or not) by the deadline with the button below."
        )
    else:
        people = holders(session, c.roles_of(RoleKind.CHIEF_EXECUTIVE), parties)
        people += coordinators(session, c) + _representatives(session, c, parties)
        action = (
            "Consider alternative dispute resolution. When it is done, send the provider and "
            "the result to the governance coordinator, who records them."
        )
    assert dispute.id is not None
    notify(
        uow,
        DisputeStageMessage(
            clause=CLAUSE,
            dispute_id=dispute.id,
            title=dispute.title,
            stage=stage.value,
            parties=party_names(c, parties),
            deadline=dispute.stage_deadline,
            reason=reason,
            action=action,
            ask=(
                None
                if stage is DisputeStage.ADR
                else Ask(action=Action.DISPUTE_OUTCOME, subject=_subject(dispute))
            ),
        ),
        people=people,
        scope=Scope(parties=parties),
        # The change that entered the stage (opened, or escalated), by the revision it made.
        key=revision_key(session, _subject(dispute), stage.value),
    )


def _current_stage_record(session: Session, dispute: Dispute) -> DisputeStageRecord:
    record = session.exec(
        select(DisputeStageRecord)
        .where(
            DisputeStageRecord.dispute_id == dispute.id,
            DisputeStageRecord.stage == dispute.stage,
        )
        .order_by(col(DisputeStageRecord.id).desc())
    ).first()
    assert record is not None, f"dispute {dispute.id} has no record of stage {dispute.stage}"
    return record


def _check_open(dispute: Dispute, stage: DisputeStage | None) -> None:
    if dispute.stage == DisputeStage.CLOSED:
        raise Refused(f"dispute #{dispute.id} is closed ({dispute.outcome})", clause=CLAUSE)
    if stage is not None and dispute.stage != stage.value:
        raise Refused(
            f"dispute #{dispute.id} is at stage {dispute.stage}, not {stage.value}: "
            f"the {stage.value} outcome was already recorded",
            clause=CLAUSE,
        )


def record_outcome(
    uow: UnitOfWork,
    *,
    dispute_id: int,
    stage: DisputeStage,
    resolved: bool,
    note: str,
) -> DisputeResult:
    """A party records the outcome of the current stage: resolved closes the dispute; not
    resolved takes it up the ladder (18.2). Answering a stage twice is refused."""
    session, c = uow.session, current_constitution(uow.session)
    dispute, parties = lock(session, dispute_id)
    _check_open(dispute, stage)
    if stage is DisputeStage.ADR:
        raise Refused(
            "at the ADR stage, the outcome is the ADR provider and result, recorded as such",
            clause=CLAUSE,
        )
    text = clean_text(note, what="note", limit=2000, multiline=True)
    if resolved:
        _close(uow, dispute, parties, outcome=f"resolved_{stage.value}", note=text)
    else:
        _advance(uow, c, dispute, parties, outcome="unresolved", note=text)
    return _result(dispute)


def record_adr(
    uow: UnitOfWork,
    *,
    dispute_id: int,
    provider: str,
    resolved: bool,
    note: str,
) -> DisputeResult:
    """The ADR provider and result; the dispute closes either way (18.2 ends at ADR)."""
    session = uow.session
    dispute, parties = lock(session, dispute_id)
    _check_open(dispute, DisputeStage.ADR)
    record = _current_stage_record(session, dispute)
    record.provider = clean_text(provider, what="provider", limit=300)
    text = clean_text(note, what="note", limit=2000, multiline=True)
    _close(
        uow,
        dispute,
        parties,
        outcome="resolved_adr" if resolved else "unresolved_after_adr",
        note=text,
    )
    return _result(dispute)


def deadline_passed(uow: UnitOfWork, *, dispute_id: int, stage: DisputeStage) -> bool:
    """A stage's deadline passed: with no outcome recorded, the dispute goes up the ladder; at ADR,
    the coordinators are chased once. A stage already answered is left alone."""
    session, c = uow.session, current_constitution(uow.session)
    dispute, parties = lock(session, dispute_id)
    if dispute.stage != stage.value or dispute.stage_deadline is None:
        return False
    if uow.clock.now() < close_of_business(dispute.stage_deadline):
        return False
    if stage is DisputeStage.ADR:
        assert dispute.id is not None
        queued = notify(
            uow,
            DisputeStageMessage(
                clause=CLAUSE,
                dispute_id=dispute.id,
                title=dispute.title,
                stage=DisputeStage.ADR.value,
                parties=party_names(c, parties),
                deadline=dispute.stage_deadline,
                reason="no ADR result by the deadline",
                action="Record the ADR provider and result.",
            ),
            people=coordinators(session, c),
            # A dispute reaches ADR once (18.2 climbs, never back): one chase of its deadline.
            key=f"{_subject(dispute)}:adr:overdue",
        )
        if queued:
            uow.record("dispute.adr_overdue", _subject(dispute), before=None, after=_state(dispute))
        return queued > 0
    _advance(uow, c, dispute, parties, outcome="no_outcome_by_deadline", note=None)
    return True


def _deadline(uow: UnitOfWork, firing: Firing[StageParams]) -> bool:
    return deadline_passed(uow, dispute_id=firing.subject_id, stage=firing.params.stage)


# A deadline found late still escalates: an escalation is late by nature.
STEP_KINDS = (StepKind(DEADLINE_STEP, lock=lock, act=_deadline, late=ALWAYS),)


def _advance(
    uow: UnitOfWork,
    c: Constitution,
    dispute: Dispute,
    parties: frozenset[str],
    *,
    outcome: str,
    note: str | None,
) -> None:
    session, now = uow.session, uow.clock.now()
    before = _state(dispute)
    record = _current_stage_record(session, dispute)
    record.closed_at, record.outcome, record.note = now, outcome, note or record.note
    session.add(record)
    settle(session, subject=_subject(dispute), now=now)
    stage = next_stage(DisputeStage(dispute.stage))
    dispute.stage = stage.value
    dispute.stage_deadline = stage_deadline(c, stage, now.date())
    session.add(dispute)
    session.add(
        DisputeStageRecord(
            dispute_id=dispute.id or 0,
            stage=stage.value,
            opened_at=now,
            deadline=dispute.stage_deadline,
        )
    )
    uow.record(
        "dispute.escalated",
        _subject(dispute),
        before=before,
        after=_state(dispute) | {"because": outcome},
        organisations=parties,
    )
    reason = "no outcome was recorded by the deadline" if outcome != "unresolved" else outcome
    _enter_stage(uow, c, dispute, parties, stage, reason=reason)


def _close(
    uow: UnitOfWork, dispute: Dispute, parties: frozenset[str], *, outcome: str, note: str
) -> None:
    session, now = uow.session, uow.clock.now()
    before = _state(dispute)
    record = _current_stage_record(session, dispute)
    record.closed_at, record.outcome, record.note = now, outcome, note
    session.add(record)
    settle(session, subject=_subject(dispute), now=now)
    dispute.stage, dispute.outcome, dispute.closed_at = DisputeStage.CLOSED.value, outcome, now
    dispute.stage_deadline = None
    session.add(dispute)
    uow.record(
        "dispute.closed",
        _subject(dispute),
        before=before,
        after=_state(dispute),
        organisations=parties,
    )


def declare_interest(uow: UnitOfWork, *, actor: Actor, dispute_id: int, nature: str) -> int:
    """18.1: a member declares an interest (or a conduct matter) in a dispute."""
    session = uow.session
    dispute, parties = lock(session, dispute_id)
    _check_open(dispute, None)
    declaration = Declaration(
        person_id=actor.person_id,
        dispute_id=dispute.id,
        nature=clean_text(nature, what="declaration", limit=1000, multiline=True),
        declared_at=uow.clock.now(),
    )
    session.add(declaration)
    session.flush()
    uow.record(
        "dispute.interest_declared",
        _subject(dispute),
        before=None,
        after={"declared_by": actor.pseudonym},
        organisations=parties | {actor.organisation},
    )
    assert declaration.id is not None
    return declaration.id
