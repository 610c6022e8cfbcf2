"""The steps of a meeting cycle, in the order they come due: what plan.py times and plans, and
steps.py acts on. A leaf module, so that both can name them."""

from __future__ import annotations

from models.steps.kind import NoParams, StepSpec, Subject

CALL_FOR_ITEMS = "meeting.call_for_items"
ITEMS_DEADLINE = "meeting.items_deadline"
AGENDA = "meeting.agenda"
REMINDER = "meeting.reminder"
MINUTES_DUE = "meeting.minutes_due"
STEP_NAMES = (CALL_FOR_ITEMS, ITEMS_DEADLINE, AGENDA, REMINDER, MINUTES_DUE)

#: Each step of a meeting is about the meeting and needs nothing else.
SPECS: dict[str, StepSpec[NoParams]] = {
    name: StepSpec(name, Subject.MEETING, NoParams) for name in STEP_NAMES
}
