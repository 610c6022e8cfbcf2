"""The constitution in force is read once per transaction and parsed once per process for the
same document, and an amendment is seen at once by the transaction that makes it and by every
transaction after it commits."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.clock import FixedClock
from models.commands import apply_constitution, current_constitution
from models.constitution import Constitution
from models.uow import UnitOfWork


def amended(c: Constitution, threshold: int) -> Constitution:
    return c.model_copy(
        update={"risk": c.risk.model_copy(update={"escalation_threshold": threshold})}
    )


def test_read_once_per_transaction(loaded: Engine) -> None:
    with Session(loaded) as session:
        first = current_constitution(session)
        assert current_constitution(session) is first
        session.commit()
        assert "wct.constitution" not in session.info  # a new transaction reads it afresh,
        assert current_constitution(session) is first  # and the same document is parsed once


def test_an_amendment_is_seen_in_its_transaction_and_gone_if_rolled_back(
    loaded: Engine, wirral: Constitution, clock: FixedClock
) -> None:
    usual = wirral.risk.escalation_threshold
    with UnitOfWork(loaded, clock=clock, actor="test") as uow:
        assert current_constitution(uow.session).risk.escalation_threshold == usual
        apply_constitution(uow, constitution=amended(wirral, usual + 1), source="amended.yaml")
        assert current_constitution(uow.session).risk.escalation_threshold == usual + 1
    with Session(loaded) as session:  # not committed: rolled back
        assert current_constitution(session).risk.escalation_threshold == usual


def test_a_session_sees_an_amendment_committed_elsewhere_in_its_next_transaction(
    loaded: Engine, wirral: Constitution, clock: FixedClock
) -> None:
    usual = wirral.risk.escalation_threshold
    with Session(loaded) as reader:
        assert current_constitution(reader).risk.escalation_threshold == usual
        reader.rollback()  # end the read transaction, as every command's unit of work does
        with UnitOfWork(loaded, clock=clock, actor="test") as uow:
            apply_constitution(uow, constitution=amended(wirral, usual + 2), source="amended.yaml")
            uow.commit()
        assert current_constitution(reader).risk.escalation_threshold == usual + 2
