"""Meeting cycles of the Board (20.4.1), the Executive (21.4.1) and every body with a cadence
(22.4.1): plan, call for items, agenda and notice, reminder, record, minutes and their approval.

One module per job, each importing only those before it:
`kinds` (the steps) -> `plan` (cadence, plan, find, cancel) -> `actions` (the action tracker
and the decision log, with the action's own kinds of step) -> `agenda` -> `record` (apologies,
attendance, declarations, motions) -> `minutes` -> `steps` (what each step does when due, and
its kind of step for the step engine).
Callers use the package: `from models import meetings; meetings.plan_meeting(...)`. Note that
`meetings.agenda` is the function that lists a meeting's agenda, not the module of that name.
"""

from __future__ import annotations

from models.meetings.actions import (
    ActionInput,
    ActionRow,
    ActionStatus,
    DecisionRow,
    action_rows,
    agree_actions,
    decision_log,
    update_action,
)
from models.meetings.actions import scope_of as action_scope
from models.meetings.agenda import (
    AgendaItemKind,
    AgendaLine,
    agenda,
    compose_agenda,
    standing_items,
    submit_item,
)
from models.meetings.kinds import (
    AGENDA,
    CALL_FOR_ITEMS,
    ITEMS_DEADLINE,
    MINUTES_DUE,
    REMINDER,
)
from models.meetings.minutes import (
    MinutesDraft,
    approve_minutes,
    draft_minutes,
    minutes_data,
    minutes_overdue,
    overdue_minutes,
    record_meeting,
)
from models.meetings.plan import (
    MeetingMoved,
    MeetingPlanned,
    MeetingStatus,
    cadence_meeting_on,
    call_meeting,
    cancel_meeting,
    enter_past_meeting,
    find_meeting,
    load_meeting,
    meeting_key,
    message_stem,
    move_meeting,
    next_meeting_days,
    plan_meeting,
    step_times,
)
from models.meetings.record import (
    AttendanceStatus,
    DeclarationInput,
    MotionDecided,
    MotionInput,
    attendance,
    declare_interest,
    record_attendance,
    record_motion,
    send_apologies,
)
from models.meetings.steps import (
    STEP_KINDS,
    call_for_items,
    chase_minutes,
    publish_agenda,
    remind,
)

# The names the meeting statuses had before `MeetingStatus`.
PLANNED = MeetingStatus.PLANNED
PUBLISHED = MeetingStatus.AGENDA_PUBLISHED
HELD = MeetingStatus.HELD
DRAFTED = MeetingStatus.MINUTES_DRAFTED
APPROVED = MeetingStatus.MINUTES_APPROVED
CANCELLED = MeetingStatus.CANCELLED

__all__ = [
    "ActionInput",
    "ActionRow",
    "ActionStatus",
    "DecisionRow",
    "action_rows",
    "action_scope",
    "agree_actions",
    "decision_log",
    "update_action",
    "AGENDA",
    "APPROVED",
    "CALL_FOR_ITEMS",
    "CANCELLED",
    "DRAFTED",
    "HELD",
    "ITEMS_DEADLINE",
    "MINUTES_DUE",
    "PLANNED",
    "PUBLISHED",
    "REMINDER",
    "STEP_KINDS",
    "AgendaItemKind",
    "AgendaLine",
    "AttendanceStatus",
    "DeclarationInput",
    "MeetingMoved",
    "MeetingPlanned",
    "MeetingStatus",
    "MinutesDraft",
    "MotionDecided",
    "MotionInput",
    "agenda",
    "approve_minutes",
    "attendance",
    "cadence_meeting_on",
    "call_for_items",
    "call_meeting",
    "cancel_meeting",
    "chase_minutes",
    "compose_agenda",
    "declare_interest",
    "draft_minutes",
    "enter_past_meeting",
    "find_meeting",
    "load_meeting",
    "meeting_key",
    "message_stem",
    "move_meeting",
    "minutes_data",
    "minutes_overdue",
    "overdue_minutes",
    "next_meeting_days",
    "plan_meeting",
    "publish_agenda",
    "record_attendance",
    "record_meeting",
    "record_motion",
    "remind",
    "send_apologies",
    "standing_items",
    "step_times",
    "submit_item",
]
