"""11.5.1: the WSCB calls a member organisation to account (or asks for evidence of rigour in
commissioning); the formal response is due within a timeframe agreed mutually."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sqlalchemy.orm import object_session
from sqlmodel import Session, select

from models.calendar import add_working_days, working_days_between
from models.casework import (
    chairs,
    clean_text,
    close_of_business,
    holders,
    notify,
    settle,
    trigger_key,
)
from models.commands import current_constitution
from models.constitution import Action, BodyKind, Constitution, RoleKind
from models.errors import InvalidInput, NotFound
from models.messages import Ask, revision_key
from models.messages import CallToAccount as CallToAccountMessage
from models.permissions import Actor, Scope, allowed
from models.steps import (
    ALWAYS,
    DaysBefore,
    Firing,
    LatePolicy,
    NoParams,
    StepKind,
    StepSpec,
    Subject,
    SupersededBy,
    plan,
)
from models.tables import CallToAccount, Person
from models.uow import UnitOfWork, locked

STALEMATE_STEP = StepSpec("account.stalemate", Subject.ACCOUNT, NoParams)
REMINDER_STEP = StepSpec("account.reminder", Subject.ACCOUNT, DaysBefore)
OVERDUE_STEP = StepSpec("account.overdue", Subject.ACCOUNT, NoParams)


class AccountKind(StrEnum):
    CALL_TO_ACCOUNT = "call_to_account"
    EVIDENCE_REQUEST = "evidence_request"


class AccountStatus(StrEnum):
    NEGOTIATING = "negotiating"
    AWAITING_RESPONSE = "awaiting_response"
    OVERDUE = "overdue"
    RESPONDED = "responded"
    CLOSED = "closed"


class Side(StrEnum):
    WSCB = "wscb"
    PARTNER = "partner"


def check_deadline(c: Constitution, today: date, deadline: date) -> None:
    """11.5.1: the response deadline lies within the bounds the constitution sets, in working
    days from today, and never in the past."""
    if deadline <= today:
        raise InvalidInput(f"deadline {deadline.isoformat()} is not in the future")
    days = working_days_between(today, deadline)
    low, high = c.call_to_account.min_deadline, c.call_to_account.max_deadline
    if not low <= days <= high:
        raise c.refused(
            f"deadline {deadline.isoformat()} is {days} working days away; "
            f"the constitution allows {low} to {high}",
            c.cite("call_to_account"),
        )


@dataclass(frozen=True)
class AccountResult:
    case_id: int
    created: bool
    status: AccountStatus
    proposed_deadline: date | None
    agreed_deadline: date | None
    waiting_on: str | None


def _subject(case: CallToAccount) -> str:
    return f"account:{case.id}"


def _state(case: CallToAccount) -> dict[str, object]:
    return {
        "status": case.status,
        "proposed_deadline": str(case.proposed_deadline) if case.proposed_deadline else None,
        "proposed_by": case.proposed_by,
        "agreed_deadline": str(case.agreed_deadline) if case.agreed_deadline else None,
    }


def waiting_on(case: CallToAccount) -> str | None:
    """Whose move it is: the side that did not make the last proposal, the partner for the
    response, the WSCB to accept it."""
    match AccountStatus(case.status):
        case AccountStatus.NEGOTIATING:
            return Side.PARTNER.value if case.proposed_by == Side.WSCB else Side.WSCB.value
        case AccountStatus.AWAITING_RESPONSE | AccountStatus.OVERDUE:
            return Side.PARTNER.value
        case AccountStatus.RESPONDED:
            return Side.WSCB.value
    return None


def _result(case: CallToAccount, created: bool = False) -> AccountResult:
    assert case.id is not None
    return AccountResult(
        case.id,
        created,
        AccountStatus(case.status),
        case.proposed_deadline,
        case.agreed_deadline,
        waiting_on(case),
    )


def _audit(
    uow: UnitOfWork, case: CallToAccount, action: str, before: object, **extra: object
) -> None:
    uow.record(
        action,
        _subject(case),
        before=before,
        after=_state(case) | extra,
        organisations=[case.organisation_id],
    )


def lock(session: Session, case_id: int) -> CallToAccount:
    """The call to account, locked for this transaction."""
    case = locked(session, CallToAccount, case_id)
    if case is None:
        raise NotFound(f"no call to account #{case_id}")
    return case


def _partner_people(session: Session, c: Constitution, org: str) -> list[Person]:
    board_roles = {seat.role for seat in c.sole(BodyKind.BOARD).members}
    chief = c.roles_of(RoleKind.CHIEF_EXECUTIVE)
    return holders(session, board_roles | chief, [org])


def _wscb_people(session: Session, c: Constitution) -> list[Person]:
    wscb = c.sole(BodyKind.SAFEGUARDING_BOARD)
    return holders(session, [r for r in (wscb.chair, wscb.deputy) if r])


def _chairs_of_both(session: Session, c: Constitution) -> list[Person]:
    board, wscb = c.sole(BodyKind.BOARD), c.sole(BodyKind.SAFEGUARDING_BOARD)
    return chairs(session, c, board.id) + chairs(session, c, wscb.id)


def _tell(
    uow: UnitOfWork,
    c: Constitution,
    case: CallToAccount,
    people: list[Person],
    event: str,
    action: str,
    *,
    ask: Action | None = None,
    key: str | None = None,
) -> None:
    """Tell `people` of `event`: by default the change the case has just had, keyed by the
    revision it made (`account:3:r5:agreed`), so a second agreement after a reopen is a message
    of its own; a step that changes nothing (a reminder) gives its own key. `ask`: the action
    the message's button takes, offered to those of `people` the constitution lets take it."""
    org = next(o.name for o in c.organisations if o.id == case.organisation_id)
    assert case.id is not None
    notify(
        uow,
        CallToAccountMessage(
            clause=c.cite("call_to_account"),
            case_id=case.id,
            case_kind=case.kind,
            organisation=org,
            evidence=case.evidence,
            status=case.status,
            event=event,
            proposed_deadline=case.proposed_deadline,
            agreed_deadline=case.agreed_deadline,
            action=action,
            ask=None if ask is None else Ask(action=ask, subject=_subject(case)),
        ),
        people=people,
        key=key or revision_key(uow.session, _subject(case), event),
        scope=Scope(parties=frozenset({case.organisation_id})),
    )


def _day(day: date | None) -> str:
    """`Monday 1 February 2027`: a date as a message says it."""
    return "not set" if day is None else f"{day:%A} {day.day} {day:%B %Y}"


def open_call(
    uow: UnitOfWork,
    *,
    organisation: str,
    evidence: str,
    proposed_deadline: date,
    kind: AccountKind = AccountKind.CALL_TO_ACCOUNT,
) -> AccountResult:
    """The WSCB calls a partner to account with its evidence and proposes a response deadline;
    the same call twice is one case (11.5.1)."""
    session, c = uow.session, current_constitution(uow.session)
    if organisation not in {o.id for o in c.organisations}:
        raise NotFound(f"unknown organisation '{organisation}'")
    evidence = clean_text(evidence, what="evidence", limit=4000, multiline=True)
    today = uow.clock.now().date()
    key = trigger_key("account", kind.value, organisation, evidence)
    existing = session.exec(select(CallToAccount).where(CallToAccount.trigger_key == key)).first()
    if existing is not None:
        return _result(existing)
    check_deadline(c, today, proposed_deadline)
    case = CallToAccount(
        trigger_key=key,
        organisation_id=organisation,
        kind=kind.value,
        evidence=evidence,
        status=AccountStatus.NEGOTIATING.value,
        proposed_deadline=proposed_deadline,
        proposed_by=Side.WSCB.value,
        negotiation_ends_on=add_working_days(today, c.call_to_account.agreement_window),
        opened_at=uow.clock.now(),
    )
    session.add(case)
    session.flush()
    _audit(uow, case, "account.opened", None)
    _schedule_stalemate(session, case)
    _tell(
        uow,
        c,
        case,
        _partner_people(session, c, organisation),
        "opened",
        f"Accept the proposed deadline for your organisation's response, or propose another, "
        f"by {_day(case.negotiation_ends_on)}, with the button below.",
        ask=Action.ACCOUNT_AGREE_FOR_PARTNER,
    )
    return _result(case, created=True)


def answer_deadline(
    uow: UnitOfWork,
    *,
    case_id: int,
    accept: bool,
    counter: date | None = None,
) -> AccountResult:
    """The side that did not propose accepts the deadline, or counter-proposes within bounds."""
    session, c = uow.session, current_constitution(uow.session)
    case = lock(session, case_id)
    side = answering_side(case)
    if accept == (counter is not None):
        raise InvalidInput(
            "either accept the proposed deadline or give a counter-proposal, not both"
        )
    before = _state(case)
    if accept:
        assert case.proposed_deadline is not None
        case.agreed_deadline = case.proposed_deadline
        case.status = AccountStatus.AWAITING_RESPONSE.value
        session.add(case)
        settle(session, subject=_subject(case), now=uow.clock.now(), kinds=["account.stalemate"])
        _audit(uow, case, "account.deadline_agreed", before)
        _schedule_response_steps(uow, c, case)
        _tell(
            uow,
            c,
            case,
            _partner_people(session, c, case.organisation_id) + _wscb_people(session, c),
            "agreed",
            f"The formal response or action is due by {_day(case.agreed_deadline)}. If you "
            "answer for the organisation, send it with the button below.",
            ask=Action.ACCOUNT_RESPOND,
        )
    else:
        assert counter is not None
        check_deadline(c, uow.clock.now().date(), counter)
        case.proposed_deadline, case.proposed_by = counter, side.value
        session.add(case)
        _audit(uow, case, "account.deadline_proposed", before)
        other = (
            _wscb_people(session, c)
            if side is Side.PARTNER
            else _partner_people(session, c, case.organisation_id)
        )
        _tell(
            uow,
            c,
            case,
            other,
            f"counter-{counter.isoformat()}",
            f"Accept {_day(counter)} as the deadline, or propose another, by "
            f"{_day(case.negotiation_ends_on)}, with the button below.",
            ask=(
                Action.ACCOUNT_AGREE_FOR_WSCB
                if side is Side.PARTNER
                else Action.ACCOUNT_AGREE_FOR_PARTNER
            ),
        )
    return _result(case)


def _step_key(session: Session, case: CallToAccount, step: str) -> str:
    """`account:3:r5:reminder-10`: a step planned by the change the case has just had, named by
    the revision it made, so a reopened case that agrees the same date again gets new steps."""
    return revision_key(session, _subject(case), step)


def _schedule_stalemate(session: Session, case: CallToAccount) -> None:
    """The end of the agreement window: no deadline agreed by then is a stalemate (11.5.1)."""
    assert case.negotiation_ends_on is not None
    plan(
        session,
        STALEMATE_STEP,
        key=_step_key(session, case, "stalemate"),
        subject_id=case.id or 0,
        due_at=close_of_business(case.negotiation_ends_on),
    )


def _schedule_response_steps(uow: UnitOfWork, c: Constitution, case: CallToAccount) -> None:
    assert case.agreed_deadline is not None
    today = uow.clock.now().date()
    for days in c.reminders.report_reminders:
        day = add_working_days(case.agreed_deadline, -days)
        if day > today:
            plan(
                uow.session,
                REMINDER_STEP,
                key=_step_key(uow.session, case, f"reminder-{days}"),
                subject_id=case.id or 0,
                due_at=close_of_business(day).replace(hour=9),
                params=DaysBefore(days=days),
            )
    plan(
        uow.session,
        OVERDUE_STEP,
        key=_step_key(uow.session, case, "overdue"),
        subject_id=case.id or 0,
        due_at=close_of_business(case.agreed_deadline),
    )


def stalemate(uow: UnitOfWork, *, case_id: int) -> bool:
    """No deadline agreed within the agreement window: escalate once to both chairs."""
    session, c = uow.session, current_constitution(uow.session)
    case = lock(session, case_id)
    if case.status != AccountStatus.NEGOTIATING or case.stalemate_escalated:
        return False
    assert case.negotiation_ends_on is not None
    if uow.clock.now() < close_of_business(case.negotiation_ends_on):
        return False
    before = _state(case)
    case.stalemate_escalated = True
    session.add(case)
    _audit(uow, case, "account.stalemate_escalated", before)
    _tell(
        uow,
        c,
        case,
        _chairs_of_both(session, c),
        "stalemate",
        "No response deadline has been agreed in time: the chairs are asked to settle it.",
    )
    return True


def remind(uow: UnitOfWork, *, case_id: int, step_key: str) -> bool:
    """A reminder before the agreed deadline (the step `step_key`, whose key is the stem of its
    messages: each reminder of each agreement is its own message); none once the response is
    in."""
    session, c = uow.session, current_constitution(uow.session)
    case = lock(session, case_id)
    if case.status != AccountStatus.AWAITING_RESPONSE:
        return False
    _tell(
        uow,
        c,
        case,
        _partner_people(session, c, case.organisation_id),
        "reminder",
        f"The formal response or action is due by {_day(case.agreed_deadline)}. Send it with "
        "the button below.",
        ask=Action.ACCOUNT_RESPOND,
        key=step_key,
    )
    return True


def deadline_passed(uow: UnitOfWork, *, case_id: int) -> bool:
    """No response by the agreed deadline: overdue, escalated to the Board's and WSCB's chairs."""
    session, c = uow.session, current_constitution(uow.session)
    case = lock(session, case_id)
    if case.status != AccountStatus.AWAITING_RESPONSE or case.agreed_deadline is None:
        return False
    if uow.clock.now() < close_of_business(case.agreed_deadline):
        return False
    before = _state(case)
    case.status = AccountStatus.OVERDUE.value
    session.add(case)
    _audit(uow, case, "account.overdue", before)
    _tell(
        uow,
        c,
        case,
        _chairs_of_both(session, c),
        f"overdue-{case.agreed_deadline}",
        f"The response due by {_day(case.agreed_deadline)} has not been received.",
    )
    return True


def _stalemate(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    return stalemate(uow, case_id=firing.subject_id)


def _remind(uow: UnitOfWork, firing: Firing[DaysBefore]) -> bool:
    return remind(uow, case_id=firing.subject_id, step_key=firing.key)


def _overdue(uow: UnitOfWork, firing: Firing[NoParams]) -> bool:
    return deadline_passed(uow, case_id=firing.subject_id)


# No case message says "late": its deadlines escalate, and an escalation is late by nature.
STEP_KINDS: tuple[StepKind[NoParams] | StepKind[DaysBefore], ...] = (
    StepKind(STALEMATE_STEP, lock=lock, act=_stalemate, late=ALWAYS),
    # The reminders before an agreed deadline due at once become the latest.
    StepKind(
        REMINDER_STEP,
        lock=lock,
        act=_remind,
        late=LatePolicy(skip_if=(SupersededBy((REMINDER_STEP, OVERDUE_STEP)),)),
    ),
    StepKind(OVERDUE_STEP, lock=lock, act=_overdue, late=ALWAYS),
)


def record_response(uow: UnitOfWork, *, case_id: int, response: str) -> AccountResult:
    """The partner's formal response or action (11.5.1)."""
    session, c = uow.session, current_constitution(uow.session)
    case = lock(session, case_id)
    if case.status not in (AccountStatus.AWAITING_RESPONSE, AccountStatus.OVERDUE):
        raise c.refused(
            f"call to account #{case_id} is {case.status}: no response is awaited",
            c.cite("call_to_account"),
        )
    before = _state(case)
    case.response = clean_text(response, what="response", limit=4000, multiline=True)
    case.status = AccountStatus.RESPONDED.value
    session.add(case)
    settle(session, subject=_subject(case), now=uow.clock.now())
    _audit(uow, case, "account.responded", before)
    _tell(
        uow,
        c,
        case,
        _wscb_people(session, c),
        f"responded-{case.agreed_deadline}",
        "Consider the response: accept it, or reopen the case with a new proposed deadline. "
        "The governance coordinator can record either for you.",
    )
    return _result(case)


def conclude(
    uow: UnitOfWork,
    *,
    case_id: int,
    accept: bool,
    note: str,
    new_deadline: date | None = None,
) -> AccountResult:
    """The WSCB accepts the response (closing the case) or reopens it with a new proposal."""
    session, c = uow.session, current_constitution(uow.session)
    case = lock(session, case_id)
    if case.status != AccountStatus.RESPONDED:
        raise c.refused(
            f"call to account #{case_id} is {case.status}: there is no response to judge",
            c.cite("call_to_account"),
        )
    text = clean_text(note, what="note", limit=2000, multiline=True)
    before = _state(case)
    if accept:
        if new_deadline is not None:
            raise InvalidInput("a new deadline is only for reopening")
        case.status, case.closed_at = AccountStatus.CLOSED.value, uow.clock.now()
        session.add(case)
        _audit(uow, case, "account.closed", before, note=text)
        _tell(
            uow,
            c,
            case,
            _partner_people(session, c, case.organisation_id) + _wscb_people(session, c),
            "accepted",
            "Nothing more is needed: the Safeguarding Board has accepted the response and "
            "closed the case.",
        )
        return _result(case)
    if new_deadline is None:
        raise InvalidInput("reopening needs a new proposed deadline")
    today = uow.clock.now().date()
    check_deadline(c, today, new_deadline)
    case.status = AccountStatus.NEGOTIATING.value
    case.proposed_deadline, case.proposed_by = new_deadline, Side.WSCB.value
    case.agreed_deadline, case.stalemate_escalated = None, False
    case.negotiation_ends_on = add_working_days(today, c.call_to_account.agreement_window)
    session.add(case)
    _audit(uow, case, "account.reopened", before, note=text)
    _schedule_stalemate(session, case)
    _tell(
        uow,
        c,
        case,
        _partner_people(session, c, case.organisation_id),
        f"reopened-{new_deadline}",
        f"The Safeguarding Board reopened the case: accept {_day(new_deadline)} as the "
        "deadline, or propose another, with the button below.",
        ask=Action.ACCOUNT_AGREE_FOR_PARTNER,
    )
    return _result(case)


def answering_side(case: CallToAccount) -> Side:
    """11.5.1: the side that answers a proposed deadline is the one that did not propose it;
    once a deadline is agreed, nobody proposes."""
    if case.status != AccountStatus.NEGOTIATING:
        agreed = f" (agreed: {case.agreed_deadline})" if case.agreed_deadline else ""
        session = object_session(case)
        assert isinstance(session, Session), "a case is read in a session"
        c = current_constitution(session)
        raise c.refused(
            f"call to account #{case.id} is {case.status}{agreed}: the deadline is no longer "
            "open to proposals",
            c.cite("call_to_account"),
        )
    return Side.PARTNER if case.proposed_by == Side.WSCB else Side.WSCB


AGREE_FOR = {
    Side.WSCB: Action.ACCOUNT_AGREE_FOR_WSCB,
    Side.PARTNER: Action.ACCOUNT_AGREE_FOR_PARTNER,
}


def scope_of(c: Constitution, organisation: str) -> Scope:
    """What a call to account's grants refer to: the Safeguarding Board that calls, and the
    partner called (the party)."""
    wscb = c.sole(BodyKind.SAFEGUARDING_BOARD)
    return Scope(body=wscb.id, parties=frozenset([organisation]))


def may_answer_for(c: Constitution, actor: Actor, case: CallToAccount) -> list[Side]:
    """The sides `actor` may speak for in this case (for the UI's form)."""
    scope = scope_of(c, case.organisation_id)
    return [side for side in (Side.WSCB, Side.PARTNER) if allowed(c, AGREE_FOR[side], actor, scope)]
