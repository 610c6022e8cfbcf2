"""The cycles as Prefect flows on one session harness: named timers (runs of the `step` flow)
created once, timer runs that act once and then do nothing, reminders stopping, escalation by the
sweep, artifacts, the record form.

The harness runs no scheduler: a test fires a timer by running the step flow with the time it
would have fired at, which is what the scheduled run does when its time comes."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from sqlmodel import Session, select

from flows.cycles import (
    MeetingRecord,
    meeting_cycle,
    quarterly_reports,
    record_meeting,
)
from flows.steps import step, sweep
from flows.timers import database_run_tag
from models.instructions import SubmitReport
from models.tables import OutboxMessage, Step

from .cases_support import act
from .cycles_support import artifact, latest_artifact, london, state
from .flows_harness import CycleDb

NOV = london(2026, 11, 23, 9, 0)


async def runs_named(*names: str, timers: bool = True) -> list[FlowRun]:
    """The runs with these names: by default the timers of this test's database only (the
    session's Prefect harness holds the timers of every test's database)."""
    tags = FlowRunFilterTags(all_=[database_run_tag()]) if timers else None
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=list(names)), tags=tags),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
        )


async def artifact_card(key: str) -> tuple[str, str]:
    """The latest artifact with `key`: the name of the run that made it, and its card's text."""
    async with get_client() as client:
        found = await latest_artifact(client, key)
        run = await client.read_flow_run(found["flow_run_id"])
    return run.name, str(found["description"])


async def keys_beside(key: str) -> list[str]:
    """The keys of every artifact of the run that made the latest artifact with `key`."""
    async with get_client() as client:
        found = await latest_artifact(client, key)
        response = await client._client.post(
            "/artifacts/filter",
            json={"flow_runs": {"id": {"any_": [found["flow_run_id"]]}}, "limit": 20},
        )
    return [made["key"] for made in response.json()]


def due_of(db: CycleDb, key: str) -> datetime:
    with Session(db.engine) as session:
        return session.exec(select(Step.due_at).where(Step.key == key)).one()


def fire(db: CycleDb, key: str) -> str:
    """What the timer run does when its time comes."""
    return asyncio.run(step(key=key, as_of=due_of(db, key)))


def messages(db: CycleDb, kind: str, prefix: str) -> int:
    with Session(db.engine) as session:
        rows = session.exec(select(OutboxMessage.key).where(OutboxMessage.kind == kind)).all()
    return sum(1 for k in rows if k.startswith(prefix))


def test_meeting_cycle_sets_one_named_timer_per_step_however_often_it_runs(
    cycle_db: CycleDb,
) -> None:
    first: list[dict[str, Any]] = asyncio.run(
        meeting_cycle(body="board", day=date(2027, 3, 9), as_of=NOV)
    )
    before = state(cycle_db.engine)
    again = asyncio.run(meeting_cycle(body="board", day=date(2027, 3, 9), as_of=NOV))
    assert state(cycle_db.engine) == before
    assert first[0]["meeting_id"] == again[0]["meeting_id"] and not again[0]["created"]
    names = [s["run_name"] for s in first[0]["steps"]]
    assert "board-2027-03-09-agenda" in names
    timers = asyncio.run(runs_named(*names))
    assert sorted(t.name for t in timers) == sorted(names)  # one each, not two
    agenda = next(t for t in timers if t.name == "board-2027-03-09-agenda")
    assert agenda.state is not None and agenda.state.type is StateType.SCHEDULED
    assert agenda.expected_start_time == london(2027, 3, 2, 9, 0)
    assert agenda.parameters["key"] == "meeting:board:2027-03-09:agenda"
    # The cycle run itself shows the meeting's papers, under the body's own key, and only them.
    made_by, card = asyncio.run(artifact_card("board-papers"))
    assert made_by == "meetings-board" and "9 March 2027" in card, card
    assert asyncio.run(keys_beside("board-papers")) == ["board-papers"]


def test_timer_runs_act_once_and_publish_the_agenda(cycle_db: CycleDb) -> None:
    asyncio.run(meeting_cycle(body="executive", day=date(2027, 4, 21), as_of=NOV))
    stem = "meeting:executive:2027-04-21"
    assert fire(cycle_db, f"{stem}:call_for_items") == "acted"
    assert fire(cycle_db, f"{stem}:items_deadline") == "acted"
    assert fire(cycle_db, f"{stem}:agenda") == "acted"
    sent = messages(cycle_db, "agenda", f"{stem}:agenda")
    assert sent > 0
    assert fire(cycle_db, f"{stem}:agenda") == "done"  # a second run of the timer: nothing
    assert messages(cycle_db, "agenda", f"{stem}:agenda") == sent
    text = asyncio.run(artifact("executive-papers"))
    assert "Declarations of interest (18.1)" in text and "Any other business" in text


def test_reports_reminders_stop_on_submission_and_the_late_are_escalated(
    cycle_db: CycleDb,
) -> None:
    opened = asyncio.run(quarterly_reports(period="2027-Q2", as_of=NOV))
    assert len(opened["created"]) == 6
    wscb, healthy = (
        "report:wscb-quarterly:wscb:2027-Q2",
        "report:strategy-group-performance:be-healthy:2027-Q2",
    )
    assert fire(cycle_db, f"{wscb}:request") == "acted"
    act(
        cycle_db.engine,
        _clock(due_of(cycle_db, f"{wscb}:request")),
        "chair@wscb.example",
        SubmitReport(
            kind="wscb-quarterly",
            from_body="wscb",
            period="2027-Q2",
            document="https://x.example/q2",
        ),
    )
    for later in ("reminder-10", "reminder-5", "reminder-1", "overdue"):
        assert fire(cycle_db, f"{wscb}:{later}") == "settled"
    assert messages(cycle_db, "reminder", wscb) == 0
    late = asyncio.run(sweep(as_of=due_of(cycle_db, f"{healthy}:overdue")))
    assert f"{healthy}:overdue" in late["acted"] and late["overdue"] == 5
    assert messages(cycle_db, "report_overdue", healthy) > 0
    assert "be-healthy:2027-Q2" in asyncio.run(artifact("overdue-list"))
    again = asyncio.run(sweep(as_of=due_of(cycle_db, f"{healthy}:overdue")))
    assert again["acted"] == []


def test_record_form_decides_a_tie_by_the_casting_vote(cycle_db: CycleDb) -> None:  # noqa: ARG001
    asyncio.run(meeting_cycle(body="stay-safe", day=date(2027, 4, 7), as_of=NOV))
    record = MeetingRecord.model_validate(
        {
            "body": "stay-safe",
            "day": "2027-04-07",
            "recorded_by": "sally@council.example",
            "present": ["sally@council.example", "fran@community.example"],
            "apologies": ["pat@police.example"],
            "motions": [
                {
                    "text": "Fund the youth outreach pilot",
                    "votes_for": ["sally@council.example"],
                    "votes_against": ["fran@community.example"],
                    "casting_vote": "for",
                }
            ],
        }
    )
    minutes = asyncio.run(record_meeting(record=record, as_of=london(2027, 4, 7, 12, 0)))
    [motion] = minutes["motions"]
    assert motion["outcome"] == "carried" and motion["method"] == "casting_vote"
    assert "casting vote after a tie" in motion["explanation"]
    text = asyncio.run(artifact("stay-safe-papers"))
    assert "Draft minutes" in text and "casting vote after a tie" in text


def _clock(at: datetime) -> Any:
    from models.clock import FixedClock

    return FixedClock(at)
