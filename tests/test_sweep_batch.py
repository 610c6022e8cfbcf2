"""The sweep acts on due steps in batches (models/service.py `execute_many`, models/steps/engine.py
`run_due`): each step in its own savepoint, many to a commit, with every guarantee of one step in
one transaction: acted on once, audited in the chain, its messages queued once per recipient."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from models import audit, deferred, reports
from models.calendar import in_partnership
from models.clock import FixedClock
from models.commands import current_constitution
from models.permissions import SWEEP, NotPermitted, Outsider
from models.service import Executed, Failed, execute_many
from models.steps import role_holders
from models.steps.engine import FireStep, claim_steps, overdue_steps, run_due, run_step
from models.steps.planning import STEPS
from models.tables import AuditEvent, OutboxMessage, Person, PersonRole, Report, Step
from models.uow import UnitOfWork, held, locked, read_rows, remember_roles

from .cycles_support import london, populate, run, state, step_status


@pytest.fixture
def people(loaded: Engine, clock: FixedClock) -> Engine:
    populate(loaded, clock)
    return loaded


def _open(engine: Engine, clock: FixedClock, *periods: str) -> None:
    for period in periods:
        run(engine, clock, partial(reports.open_reports, period=period))


def _keys(engine: Engine, clock: FixedClock, stem: str = "") -> list[str]:
    with Session(engine) as session:
        return [s.key for s in overdue_steps(session, now=clock.now()) if s.key.startswith(stem)]


def _mail(engine: Engine, part: str = "") -> Counter[tuple[str, str]]:
    """(message kind, recipient) of every message queued with `part` in its key."""
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage.kind, Person.email, OutboxMessage.key).join(
                Person, col(Person.id) == col(OutboxMessage.person_id)
            )
        ).all()
    return Counter((kind, email) for kind, email, key in rows if part in key)


def _audited(engine: Engine, subjects: set[str]) -> Counter[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(AuditEvent.action, AuditEvent.subject)).all()
    return Counter((action, subject) for action, subject in rows if subject in subjects)


def _subjects(engine: Engine, keys: list[str]) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(select(Step.subject).where(col(Step.key).in_(keys))).all())


def _chain_holds(engine: Engine) -> None:
    with Session(engine) as session:
        assert audit.verify(session) == []


def test_a_batch_does_what_one_transaction_a_step_does(people: Engine, clock: FixedClock) -> None:
    """Two quarters of reports fall due together: one quarter's steps fired one transaction a
    step, the other's in batches of 4. Each step acts once, with the same results, the same audit
    events and the same messages to the same recipients."""
    _open(people, clock, "2027-Q1", "2027-Q2")
    clock.set(london(2027, 8, 20, 12, 0))
    q1 = [k for k in _keys(people, clock) if ":2027-Q1:" in k]
    q2 = [k for k in _keys(people, clock) if ":2027-Q2:" in k]
    assert len(q1) == len(q2) > 8
    by_one = [run_step(people, clock, key).result for key in q1]
    done = execute_many(
        people, clock, SWEEP, [FireStep(key=k) for k in q2], batch=4, claim=claim_steps
    )
    assert all(isinstance(d, Executed) for d in done)
    batched = [d.result.result for d in done if isinstance(d, Executed)]
    assert batched == by_one and set(batched) == {"acted", "skipped"}
    # The same messages to the same recipients, as many of each.
    assert _mail(people, ":2027-Q1:") and _mail(people, ":2027-Q1:") == _mail(people, ":2027-Q2:")
    q1_events = Counter(a for a, _ in _audited(people, _subjects(people, q1)).elements())
    q2_events = Counter(a for a, _ in _audited(people, _subjects(people, q2)).elements())
    assert q1_events == q2_events
    # Each step's signals are its own audit events, in the order of the chain.
    seqs = [s.seq for d in done if isinstance(d, Executed) for s in d.events]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) == len(q2)
    assert {step_status(people, k) for k in q1 + q2} <= {"done", "skipped"}
    _chain_holds(people)
    before = state(people)
    assert run_due(people, clock) == [] and state(people) == before


def test_a_failing_step_rolls_back_alone_and_is_reported(people: Engine, clock: FixedClock) -> None:
    _open(people, clock, "2027-Q1")
    bad = "report:wscb-quarterly:wscb:2027-Q1:reminder-5"
    with Session(people) as session:
        step = session.exec(select(Step).where(Step.key == bad)).one()
        step.params = {"days": "five"}
        session.add(step)
        session.commit()
    clock.set(london(2027, 8, 1, 12, 0))
    due = _keys(people, clock)
    assert bad in due[1:-1]  # neither the first nor the last of its batch
    done = {d.key: d for d in run_due(people, clock, batch=len(due))}
    assert done[bad].result == "failed" and "bad parameters for report.reminder" in (
        done[bad].error or ""
    )
    assert done[bad].as_dict()["error"] == done[bad].error
    assert {d.result for k, d in done.items() if k != bad} == {"acted", "skipped"}
    assert step_status(people, bad) == "pending"
    assert {step_status(people, k) for k in due if k != bad} <= {"done", "skipped"}
    _chain_holds(people)
    # The next sweep tries it again, and only it.
    again = run_due(people, clock)
    assert [(d.key, d.result) for d in again] == [(bad, "failed")]


def test_a_refused_command_of_a_batch_is_reported_and_the_rest_commit(
    people: Engine, clock: FixedClock
) -> None:
    """The permission is checked for each command: one refused rolls back alone."""
    _open(people, clock, "2027-Q1")
    clock.set(london(2027, 5, 20, 12, 0))
    keys = _keys(people, clock)[:3]
    done = execute_many(people, clock, Outsider("someone"), [FireStep(key=k) for k in keys])
    assert all(isinstance(d, Failed) and isinstance(d.error, NotPermitted) for d in done)
    assert {step_status(people, k) for k in keys} == {"pending"}
    done = execute_many(people, clock, SWEEP, [FireStep(key="report:nope"), FireStep(key=keys[0])])
    assert isinstance(done[0], Failed) and "no step 'report:nope'" in str(done[0].error)
    assert isinstance(done[1], Executed) and done[1].result.result == "acted"
    _chain_holds(people)


def test_a_crash_mid_batch_loses_nothing_and_duplicates_nothing(
    people: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies committing its second batch: the first batch stays, the second is
    undone whole, and the next sweep acts on what is left, each step once: two quarters due
    together end with the same messages to the same people, as if nothing had happened."""
    _open(people, clock, "2027-Q1", "2027-Q2")
    clock.set(london(2027, 11, 1, 12, 0))
    due = _keys(people, clock)
    commits = 0
    real = UnitOfWork.commit

    def dies_on_the_second(self: UnitOfWork) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:
            raise KeyboardInterrupt  # the process is killed
        real(self)

    monkeypatch.setattr(UnitOfWork, "commit", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_due(people, clock, batch=5)
    monkeypatch.setattr(UnitOfWork, "commit", real)
    assert [step_status(people, k) for k in due[:5]] != ["pending"] * 5
    assert [step_status(people, k) for k in due[5:]] == ["pending"] * len(due[5:])
    _chain_holds(people)
    rest = run_due(people, clock, batch=5)
    assert [d.key for d in rest] == due[5:]
    events = _audited(people, _subjects(people, due))
    events = Counter({e: n for e, n in events.items() if e[0] != "report.opened"})
    steps_done = Counter(a for a, _ in events.elements())
    assert sum(steps_done.values()) == len(due)  # one event a step: none lost, none twice
    assert all(n == 1 for (action, _), n in events.items() if action != "step.skipped")
    assert _mail(people, ":2027-Q1:") and _mail(people, ":2027-Q1:") == _mail(people, ":2027-Q2:")
    _chain_holds(people)


def test_a_crash_inside_a_step_undoes_its_batch(
    people: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _open(people, clock, "2027-Q1")
    clock.set(london(2027, 5, 20, 12, 0))
    due = _keys(people, clock)
    before = state(people)
    real = FireStep.run
    calls = 0

    def dies_on_the_third(self: FireStep, uow: UnitOfWork, actor: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise SystemExit("killed")
        return real(self, uow, actor)

    monkeypatch.setattr(FireStep, "run", dies_on_the_third)
    with pytest.raises(SystemExit):
        run_due(people, clock)
    monkeypatch.setattr(FireStep, "run", real)
    assert state(people) == before
    assert {step_status(people, k) for k in due} == {"pending"}
    assert [d.key for d in run_due(people, clock)] == due
    _chain_holds(people)


def _statements(engine: Engine, matching: Callable[[str], bool]) -> list[str]:
    """From now on, the statements run on `engine` that `matching` picks."""
    seen: list[str] = []

    def note(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if matching(statement):
            seen.append(statement)

    sa_event.listen(engine, "before_cursor_execute", note)
    return seen


def _locks_of(engine: Engine, table: str) -> list[str]:
    """Record the statements that read `table` for update (SQLite leaves out FOR UPDATE: every
    SELECT of the table's rows by id stands for one)."""
    by_id = f"FROM {table} \nWHERE {table}.id = "
    return _statements(engine, lambda s: s.startswith("SELECT") and by_id in s)


def test_one_step_locks_its_subject_once(people: Engine, clock: FixedClock) -> None:
    """The engine locks the subject, then the kind's action asks for it again: the unit of work
    knows the lock is held and hands back the session's row."""
    _open(people, clock, "2027-Q1")
    clock.set(london(2027, 5, 20, 12, 0))
    key = _keys(people, clock)[0]
    seen = _locks_of(people, "report")
    assert run_step(people, clock, key).result == "acted"
    assert len(seen) == 1


def test_a_lock_taken_in_a_savepoint_rolled_back_is_taken_again(
    people: Engine, clock: FixedClock
) -> None:
    _open(people, clock, "2027-Q1")
    with Session(people) as session:
        report_id = session.exec(select(Step.subject_id)).first()
    assert report_id is not None
    seen = _locks_of(people, "report")
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        with pytest.raises(RuntimeError), uow.savepoint():
            locked(uow.session, Report, report_id)
            raise RuntimeError
        assert held(uow.session, ("report", report_id)) is None
        with uow.savepoint():
            first = locked(uow.session, Report, report_id)
        assert held(uow.session, ("report", report_id)) is first
        assert locked(uow.session, Report, report_id) is first
    assert len(seen) == 2


def test_a_batch_with_a_failing_step_runs_again_each_alone(
    people: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch runs without savepoints; a failure rolls it all back and it runs again with each
    step in its own savepoint: the others commit once, with one event each."""
    _open(people, clock, "2027-Q1")
    clock.set(london(2027, 5, 20, 12, 0))
    due = _keys(people, clock)
    real = FireStep.run

    def fails_on_the_second(self: FireStep, uow: UnitOfWork, actor: Any) -> Any:
        if self.key == due[1]:
            real(self, uow, actor)  # its changes are made, then it fails: they roll back
            raise RuntimeError("boom")
        return real(self, uow, actor)

    monkeypatch.setattr(FireStep, "run", fails_on_the_second)
    done = {d.key: d for d in run_due(people, clock)}
    assert done[due[1]].result == "failed" and step_status(people, due[1]) == "pending"
    assert all(done[k].result in ("acted", "skipped") for k in due if k != due[1])
    events = _audited(people, _subjects(people, due))
    assert sum(n for (a, _), n in events.items() if a != "report.opened") == len(due) - 1
    _chain_holds(people)


def test_a_batch_remembers_role_holders_until_a_role_changes(
    people: Engine, clock: FixedClock
) -> None:
    """A sweep's batch reads each role's holders once (no step kind changes a member or a
    role); should its transaction change one after all, through the session or by a statement,
    or roll a savepoint back, it reads them again."""
    with Session(people) as session:
        role_id, person_id = session.exec(
            select(PersonRole.role_id, PersonRole.person_id)
        ).first() or ("", 0)
    assert role_id
    seen = _reads_of(people, "personrole")
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        session = uow.session
        remember_roles(session)
        first = [p.id for p in role_holders(session, role_id)]
        assert person_id in first
        assert [p.id for p in role_holders(session, role_id)] == first and len(seen) == 1
        session.exec(delete(PersonRole).where(col(PersonRole.person_id) == person_id))
        assert person_id not in [p.id for p in role_holders(session, role_id)] and len(seen) == 2
        session.add(PersonRole(person_id=person_id, role_id=role_id))
        session.flush()
        assert [p.id for p in role_holders(session, role_id)] == first and len(seen) == 3
        with pytest.raises(RuntimeError), uow.savepoint():
            session.exec(delete(PersonRole).where(col(PersonRole.person_id) == person_id))
            assert person_id not in [p.id for p in role_holders(session, role_id)]
            raise RuntimeError
        assert [p.id for p in role_holders(session, role_id)] == first and len(seen) == 5
    # Without `remember_roles`, each asks.
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        role_holders(uow.session, role_id)
        role_holders(uow.session, role_id)
    assert len(seen) == 7


def _reads_of(engine: Engine, table: str) -> list[str]:
    return _statements(engine, lambda s: s.startswith("SELECT") and f"JOIN {table} " in s)


def test_a_batch_mixing_skips_acts_failures_and_refusals_matches_one_step_a_transaction(
    people: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch holds steps that act, steps skipped as superseded, a step that fails after it
    changed things and one refused: the others end as when each runs in its own transaction
    (results, audit actions, messages per recipient), the failed and refused stay pending, and
    the chain verifies."""
    _open(people, clock, "2027-Q1", "2027-Q2")
    clock.set(london(2027, 8, 20, 12, 0))
    q1 = [k for k in _keys(people, clock) if ":2027-Q1:" in k]
    q2 = [k for k in _keys(people, clock) if ":2027-Q2:" in k]
    by_one = {k.replace(":2027-Q1:", ":2027-Q2:"): run_step(people, clock, k).result for k in q1}
    assert set(by_one.values()) == {"acted", "skipped"}
    skipped = next(k for k in q2 if by_one[k] == "skipped")
    acting = [k for k in q2 if by_one[k] == "acted"]
    failing, refused = acting[1], acting[-1]
    real = FireStep.run

    def fails(self: FireStep, uow: UnitOfWork, actor: Any) -> Any:
        if self.key == failing:
            real(self, uow, actor)  # it acts (messages, audit, status), then fails
            raise RuntimeError("boom")
        if self.key == refused:
            raise NotPermitted("refused")
        return real(self, uow, actor)

    monkeypatch.setattr(FireStep, "run", fails)
    done = {d.key: d for d in run_due(people, clock, batch=len(q2))}
    monkeypatch.setattr(FireStep, "run", real)
    assert done[failing].result == "failed" and done[refused].result == "failed"
    assert done[skipped].result == "skipped"
    assert {k: d.result for k, d in done.items() if k not in (failing, refused)} == {
        k: r for k, r in by_one.items() if k not in (failing, refused)
    }
    assert step_status(people, failing) == step_status(people, refused) == "pending"
    _chain_holds(people)
    # The next sweep acts on the two left, and all ends as one step a transaction did.
    assert {d.key: d.result for d in run_due(people, clock)} == {failing: "acted", refused: "acted"}
    assert _mail(people, ":2027-Q1:") == _mail(people, ":2027-Q2:")
    q1_events = Counter(a for a, _ in _audited(people, _subjects(people, q1)).elements())
    q2_events = Counter(a for a, _ in _audited(people, _subjects(people, q2)).elements())
    assert q1_events == q2_events
    _chain_holds(people)


def test_a_core_read_sees_what_the_session_has_pending_for_its_tables(
    people: Engine, clock: FixedClock
) -> None:
    """`read_rows` writes what the session has pending for the tables it reads first, as the
    session's own queries autoflush, and leaves what it has for other tables to the next flush."""
    _open(people, clock, "2027-Q1")
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        session = uow.session
        step = session.exec(select(Step)).first()
        report = session.exec(select(Report)).first()
        assert step is not None and report is not None
        status_read = sa.select(STEPS.c.status).where(STEPS.c.id == sa.bindparam("id"))
        report.status = "overdue"
        session.add(report)
        assert read_rows(session, status_read, {"id": step.id}).scalar_one() == "pending"
        assert report in session.dirty
        step.status = "settled"
        session.add(step)
        assert read_rows(session, status_read, {"id": step.id}).scalar_one() == "settled"
        assert not session.dirty


def test_the_chain_head_is_written_once_a_transaction_and_a_savepoint_rolled_back_keeps_it(
    people: Engine, clock: FixedClock
) -> None:
    """Events appended one after another write the head once, when the transaction commits; a
    savepoint begun after some of them and rolled back leaves the head as they left it, so the
    next event is chained after them, and the chain verifies."""
    heads = _writes_of(people, "audit_head")
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        for n in range(3):
            uow.record("test.kept", f"test:{n}", before=None, after={"n": n})
        assert audit.checkpoint(uow.session) == (uow.recorded[-1].seq, uow.recorded[-1].hash)
        with pytest.raises(RuntimeError), uow.savepoint():
            uow.record("test.undone", "test:x", before=None, after={})
            raise RuntimeError
        uow.record("test.kept", "test:3", before=None, after={"n": 3})
        last = uow.recorded[-1]
        assert [e.action for e in uow.recorded] == ["test.kept"] * 4
        uow.commit()
    assert len(heads) == 2  # before the savepoint began, and at commit
    with Session(people) as session:
        assert audit.checkpoint(session) == (last.seq, last.hash)
        assert "test.undone" not in session.exec(select(AuditEvent.action)).all()
    _chain_holds(people)
    # However the session commits, the head goes with it.
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        event = uow.record("test.kept", "test:4", before=None, after={})
        uow.session.commit()
    with Session(people) as session:
        assert audit.checkpoint(session) == (event.seq, event.hash)
    _chain_holds(people)


def _writes_of(engine: Engine, table: str) -> list[str]:
    seen: list[str] = []

    def note(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.startswith(f"UPDATE {table} "):
            seen.append(statement)

    sa_event.listen(engine, "before_cursor_execute", note)
    return seen


def test_a_transaction_rolled_back_leaves_no_head_to_write(
    people: Engine, clock: FixedClock
) -> None:
    """Events appended and rolled back leave the head as it was, whatever the session does next."""
    with Session(people) as session:
        before = audit.checkpoint(session)
        audit.append(
            session,
            at=clock.now(),
            actor="t",
            action="test.undone",
            subject="t",
            before=None,
            after={},
        )
        session.rollback()
        session.commit()
    with Session(people) as session:
        assert audit.checkpoint(session) == before
    _chain_holds(people)


def _fire(uow: UnitOfWork, key: str) -> str:
    """Fire one step in `uow`, as the sweep does (in the partnership's time)."""
    with in_partnership(current_constitution(uow.session).partnership):
        return FireStep(key=key).run(uow, SWEEP).result


def _status(session: Session, key: str) -> str:
    """A step's status as the transaction's own query reads it (from the database)."""
    return session.exec(
        select(Step.status).where(Step.key == key).execution_options(populate_existing=True)
    ).one()


def test_a_savepoint_rolled_back_drops_its_own_deferred_writes_and_keeps_earlier_ones(
    people: Engine, clock: FixedClock
) -> None:
    """Steps fired in one transaction are marked, and audited, by deferred writes: a read in the
    transaction sees them (a query of steps, a Core read, the chain's events); a savepoint rolled
    back drops those deferred in it and keeps those deferred before it began."""
    _open(people, clock, "2027-Q1")
    clock.set(london(2027, 5, 20, 12, 0))
    first, undone, last = _keys(people, clock)[:3]
    status_read = sa.select(STEPS.c.status).where(STEPS.c.key == sa.bindparam("key"))
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        session = uow.session
        assert _fire(uow, first) == "acted"
        assert deferred.pending(session)  # not written yet
        kept = [(e.seq, e.action) for e in uow.recorded]
        with pytest.raises(RuntimeError), uow.savepoint():
            assert not deferred.pending(session)  # written before it began
            assert _fire(uow, undone) == "acted"
            assert _status(session, undone) == "done"  # the query wrote it first
            raise RuntimeError
        assert _status(session, first) == "done" and _status(session, undone) == "pending"
        assert [(e.seq, e.action) for e in uow.recorded] == kept
        assert _fire(uow, last) == "acted"
        assert read_rows(session, status_read, {"key": last}).scalar_one() == "done"
        # The chain read in the transaction holds the events deferred, and none rolled back.
        assert audit.verify(session) == []
        assert [e.seq for e in uow.recorded] == list(
            range(uow.recorded[0].seq, uow.recorded[-1].seq + 1)
        )
        uow.commit()
    assert [step_status(people, k) for k in (first, undone, last)] == ["done", "pending", "done"]
    with Session(people) as session:  # stored: the events of `first` and `last`, in order
        stored = session.exec(
            select(AuditEvent.seq, AuditEvent.action, AuditEvent.subject)
            .where(col(AuditEvent.seq) >= uow.recorded[0].seq)
            .order_by(col(AuditEvent.seq))
        ).all()
    assert [tuple(r) for r in stored] == [(e.seq, e.action, e.subject) for e in uow.recorded]
    _chain_holds(people)
    assert [d.key for d in run_due(people, clock) if d.result == "acted"][:1] == [undone]


def test_a_transaction_rolled_back_writes_nothing_it_deferred(
    people: Engine, clock: FixedClock
) -> None:
    _open(people, clock, "2027-Q1")
    clock.set(london(2027, 5, 20, 12, 0))
    key = _keys(people, clock)[0]
    before = state(people)
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        assert _fire(uow, key) == "acted" and deferred.pending(uow.session)
    assert state(people) == before and step_status(people, key) == "pending"
    _chain_holds(people)


def test_a_batch_writes_its_steps_and_events_in_a_few_statements(
    people: Engine, clock: FixedClock
) -> None:
    """A batch of due steps (acting, and skipped as superseded) marks them and appends their
    events in a few executemany statements, not one statement a step each; the later-step check
    of each reminder runs without writing the steps fired before it."""
    _open(people, clock, "2027-Q1", "2027-Q2")
    clock.set(london(2027, 8, 20, 12, 0))
    due = _keys(people, clock)
    events = _statements(people, lambda s: s.startswith("INSERT INTO audit_event"))
    marks = _statements(people, lambda s: s.startswith("UPDATE step SET status"))
    everything = _statements(people, lambda _s: True)
    done = run_due(people, clock, batch=len(due))
    results = Counter(d.result for d in done)
    assert (
        results["acted"] > 4
        and results["skipped"] > 4
        and results.keys()
        <= {
            "acted",
            "skipped",
        }
    )
    assert len(events) == 1  # at commit: nothing in the batch reads the chain's events
    assert len(marks) <= results["acted"] // 2
    assert len(everything) <= 2.5 * len(due)  # 3.8 a step, one statement each
    _chain_holds(people)


def test_a_savepoint_begun_with_deferred_writes_is_refused(
    people: Engine, clock: FixedClock
) -> None:
    """Deferred rows written inside a savepoint would vanish were it rolled back: a savepoint
    must begin with none (`UnitOfWork.savepoint` writes them first)."""
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        uow.record("test.kept", "test:0", before=None, after={})
        with pytest.raises(RuntimeError, match="deferred writes"):
            uow.session.begin_nested()


def test_a_change_the_session_makes_to_a_step_marked_is_written_after_the_mark(
    people: Engine, clock: FixedClock
) -> None:
    """A step fired (its mark deferred), then changed through the session: the session's flush
    writes the mark first, so the change made after it stays."""
    _open(people, clock, "2027-Q1")
    clock.set(london(2027, 5, 20, 12, 0))
    key = _keys(people, clock)[0]
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        session = uow.session
        claim_steps(uow, [FireStep(key=key)])  # held: the session keeps its row
        step = held(session, ("step", key))
        assert isinstance(step, Step)
        assert _fire(uow, key) == "acted" and deferred.pending(session)
        step.status = "settled"
        session.add(step)
        session.flush()
        uow.commit()
    assert step_status(people, key) == "settled"


@pytest.mark.parametrize("refused_at", ["release", "autoflush"])
def test_a_savepoint_whose_row_the_database_refuses_rolls_back_alone(
    people: Engine, clock: FixedClock, refused_at: str
) -> None:
    """A row refused by the database (a duplicate key) when the savepoint is released, or by an
    autoflush inside it, rolls back that savepoint alone: the transaction goes on, its other
    events commit, and the chain verifies."""
    with Session(people) as session:
        taken = session.exec(select(Person)).first()
        assert taken is not None
        duplicate = taken.email
        session.expunge(taken)
    with UnitOfWork(people, clock=clock, actor="operator:test") as uow:
        uow.record("test.kept", "test:1", before=None, after={})
        with pytest.raises(sa.exc.IntegrityError), uow.savepoint():
            uow.record("test.undone", "test:x", before=None, after={})
            twin = Person(
                pseudonym="p-duplicate",
                name="Twin",
                email=duplicate,
                organisation_id=taken.organisation_id,
                updated_at=clock.now(),
            )
            uow.session.add(twin)
            if refused_at == "autoflush":
                uow.session.exec(select(Person)).all()
        uow.record("test.kept", "test:2", before=None, after={})
        uow.commit()
    with Session(people) as session:
        actions = session.exec(select(AuditEvent.action).order_by(col(AuditEvent.seq))).all()
        assert actions[-2:] == ["test.kept", "test.kept"] and "test.undone" not in actions
        assert session.exec(select(Person).where(Person.name == "Twin")).first() is None
    _chain_holds(people)
