"""18.2: conflict is resolved by informal discussion, then by the Chief Executives, then by ADR.
The ladder is the constitution's (`disputes.stages`): any number of named stages, the last final."""

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
    notify,
    settle,
    trigger_key,
)
from models.commands import current_constitution
from models.constitution import Action, BodyKind, Constitution, DisputeStageSpec, RoleKind
from models.errors import InvalidInput, NotFound
from models.messages import Ask, revision_key
from models.messages import DisputeStage as DisputeStageMessage
from models.permissions import Actor, Scope
from models.steps import ALWAYS, Firing, StepKind, StepParams, StepSpec, Subject, plan
from models.tables import Declaration, Dispute, DisputeParty, DisputeStageRecord, Person
from models.uow import UnitOfWork, locked


class DisputeStage(StrEnum):
    """Wirral's stage names, and `closed`; the ladder itself is the constitution's."""

    INFORMAL = "informal"
    CHIEF_EXECUTIVES = "chief_executives"
    ADR = "adr"
    CLOSED = "closed"


class StageParams(StepParams):
    """A stage's deadline step: which stage it closes (18.2)."""

    stage: str


DEADLINE_STEP = StepSpec("dispute.deadline", Subject.DISPUTE, StageParams)


def stage_spec(c: Constitution, stage: str) -> DisputeStageSpec:
    """The constitution's stage of that name; a clear refusal for any other."""
    try:
        return c.disputes.stage(str(stage))
    except KeyError:
        names = ", ".join(s.name for s in c.disputes.stages)
        raise c.refused(
            f"no dispute stage '{stage}' (the ladder: {names})", c.cite("disputes")
        ) from None


def first_stage(c: Constitution) -> str:
    return c.disputes.stages[0].name


def next_stage(c: Constitution, stage: str) -> str:
    """18.2: informal discussion; if not successful, the Chief Executive of each agency; if still
    not resolved, alternative dispute resolution (or the constitution's own ladder)."""
    names = [s.name for s in c.disputes.stages]
    if stage not in names[:-1]:
        raise c.refused(f"there is no stage after {stage}", c.cite("disputes"))
    return names[names.index(stage) + 1]


def stage_deadline(c: Constitution, stage: str, start: date) -> date:
    return add_working_days(start, stage_spec(c, stage).days)


def _label(stage: str) -> str:
    """A stage as a sentence names it: `ADR` for Wirral's, else its name in words."""
    return "ADR" if stage == DisputeStage.ADR else stage.replace("_", " ")


def is_final(c: Constitution, stage: str) -> bool:
    """The final (ADR-like) stage: closed by recording its provider and result."""
    return stage_spec(c, stage).final


@dataclass(frozen=True)
class DisputeResult:
    dispute_id: int
    created: bool
    stage: str
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
    return DisputeResult(d.id, created, d.stage, d.stage_deadline, d.outcome)


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
    first = first_stage(c)
    deadline = stage_deadline(c, first, today)
    dispute = Dispute(
        trigger_key=key,
        title=title,
        stage=first,
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
            stage=first,
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
    _enter_stage(uow, c, dispute, involved, first, reason="opened")
    return _result(dispute, created=True)


def _audience(
    uow: UnitOfWork, c: Constitution, parties: frozenset[str], spec: DisputeStageSpec
) -> list[Person]:
    """Who a stage tells, by its `notify` list: the parties' representatives, their Chief
    Executives (and the coordinators when a party has none), the coordinators, or the parties'
    holders of a role kind."""
    session = uow.session
    people: list[Person] = []
    for audience in spec.notify:
        if audience == "parties":
            people += _representatives(session, c, parties)
        elif audience == "party-chief-executives":
            chiefs = holders(session, c.roles_of(RoleKind.CHIEF_EXECUTIVE), parties)
            missing = parties - {p.organisation_id for p in chiefs}
            people += chiefs + (coordinators(session, c) if missing else [])
        elif audience == "coordinators":
            people += coordinators(session, c)
        else:
            people += holders(session, c.roles_of(RoleKind(audience)), parties)
    return people


def _default_action(spec: DisputeStageSpec) -> str:
    if spec.final:
        return (
            f"Take the dispute to {spec.name.replace('_', ' ')}. When it is done, send the "
            "provider and the result to the governance coordinator, who records them."
        )
    return (
        f"Meet to resolve it at the {spec.name.replace('_', ' ')} stage, and record the outcome "
        "(resolved or not) by the deadline with the button below."
    )


def _enter_stage(
    uow: UnitOfWork,
    c: Constitution,
    dispute: Dispute,
    parties: frozenset[str],
    stage: str,
    *,
    reason: str,
) -> None:
    session = uow.session
    assert dispute.stage_deadline is not None
    spec = stage_spec(c, stage)
    plan(
        session,
        DEADLINE_STEP,
        key=f"{_subject(dispute)}:{stage}:deadline",
        subject_id=dispute.id or 0,
        due_at=close_of_business(dispute.stage_deadline),
        params=StageParams(stage=stage),
    )
    assert dispute.id is not None
    notify(
        uow,
        DisputeStageMessage(
            clause=c.cite("disputes"),
            dispute_id=dispute.id,
            title=dispute.title,
            stage=stage,
            parties=party_names(c, parties),
            deadline=dispute.stage_deadline,
            reason=reason,
            action=spec.action or _default_action(spec),
            ask=(
                None
                if spec.final
                else Ask(action=Action.DISPUTE_OUTCOME, subject=_subject(dispute))
            ),
        ),
        people=_audience(uow, c, parties, spec),
        scope=Scope(parties=parties),
        # The change that entered the stage (opened, or escalated), by the revision it made.
        key=revision_key(session, _subject(dispute), stage),
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


def _check_open(c: Constitution, dispute: Dispute, stage: str | None) -> None:
    if dispute.stage == DisputeStage.CLOSED:
        raise c.refused(f"dispute #{dispute.id} is closed ({dispute.outcome})", c.cite("disputes"))
    if stage is not None and dispute.stage != stage:
        raise c.refused(
            f"dispute #{dispute.id} is at stage {dispute.stage}, not {stage}: "
            f"the {stage} outcome was already recorded",
            c.cite("disputes"),
        )


def record_outcome(
    uow: UnitOfWork,
    *,
    dispute_id: int,
    stage: str,
    resolved: bool,
    note: str,
) -> DisputeResult:
    """A party records the outcome of the current stage: resolved closes the dispute; not
    resolved takes it up the ladder (18.2). Answering a stage twice is refused."""
    session, c = uow.session, current_constitution(uow.session)
    dispute, parties = lock(session, dispute_id)
    stage = str(stage)
    final = is_final(c, stage)  # a stage the ladder does not name is refused first
    _check_open(c, dispute, stage)
    if final:
        raise c.refused(
            f"at the final stage ({stage}), the outcome is its provider and result, "
            "recorded as such",
            c.cite("disputes"),
        )
    text = clean_text(note, what="note", limit=2000, multiline=True)
    if resolved:
        _close(uow, dispute, parties, outcome=f"resolved_{stage}", note=text)
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
    """The ADR provider and result; the dispute closes either way (18.2 ends at ADR, the
    ladder at its final stage)."""
    session, c = uow.session, current_constitution(uow.session)
    dispute, parties = lock(session, dispute_id)
    final = c.disputes.stages[-1].name
    _check_open(c, dispute, final)
    record = _current_stage_record(session, dispute)
    record.provider = clean_text(provider, what="provider", limit=300)
    text = clean_text(note, what="note", limit=2000, multiline=True)
    _close(
        uow,
        dispute,
        parties,
        outcome=f"resolved_{final}" if resolved else f"unresolved_after_{final}",
        note=text,
    )
    return _result(dispute)


def deadline_passed(uow: UnitOfWork, *, dispute_id: int, stage: str) -> bool:
    """A stage's deadline passed: with no outcome recorded, the dispute goes up the ladder; at ADR,
    the coordinators are chased once. A stage already answered is left alone."""
    session, c = uow.session, current_constitution(uow.session)
    dispute, parties = lock(session, dispute_id)
    if dispute.stage != stage or dispute.stage_deadline is None:
        return False
    if uow.clock.now() < close_of_business(dispute.stage_deadline):
        return False
    if is_final(c, stage):
        assert dispute.id is not None
        queued = notify(
            uow,
            DisputeStageMessage(
                clause=c.cite("disputes"),
                dispute_id=dispute.id,
                title=dispute.title,
                stage=stage,
                parties=party_names(c, parties),
                deadline=dispute.stage_deadline,
                reason=f"no {_label(stage)} result by the deadline",
                action=f"Record the {_label(stage)} provider and result.",
            ),
            people=coordinators(session, c),
            # A dispute reaches ADR once (18.2 climbs, never back): one chase of its deadline.
            key=f"{_subject(dispute)}:{stage}:overdue",
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
    stage = next_stage(c, dispute.stage)
    dispute.stage = stage
    dispute.stage_deadline = stage_deadline(c, stage, now.date())
    session.add(dispute)
    session.add(
        DisputeStageRecord(
            dispute_id=dispute.id or 0,
            stage=stage,
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
    session, c = uow.session, current_constitution(uow.session)
    dispute, parties = lock(session, dispute_id)
    _check_open(c, dispute, None)
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
