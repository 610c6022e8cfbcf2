"""The steps of a meeting cycle, in the order they come due: what plan.py times and steps.py acts
on. A leaf module, so that both can name them."""

from __future__ import annotations

CALL_FOR_ITEMS = "meeting.call_for_items"
ITEMS_DEADLINE = "meeting.items_deadline"
AGENDA = "meeting.agenda"
REMINDER = "meeting.reminder"
MINUTES_DUE = "meeting.minutes_due"
STEP_KINDS = (CALL_FOR_ITEMS, ITEMS_DEADLINE, AGENDA, REMINDER, MINUTES_DUE)
