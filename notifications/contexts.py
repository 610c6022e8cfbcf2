"""The message contexts live in the domain (models/messages.py), where a command builds them and
`notify` checks them before anything is queued; this module re-exports them for the dispatcher,
`wct preview` and the tests."""

from __future__ import annotations

from models.messages import (
    CONTEXTS,
    INVITE_KINDS,
    Agenda,
    AgendaEntry,
    ApprovalRequest,
    CallForItems,
    CallToAccount,
    ContextInvalid,
    DisputeStage,
    MeetingCancelled,
    MeetingNotice,
    MessageContext,
    Reminder,
    ReportOverdue,
    ReportRequest,
    ReviewDue,
    RiskEscalated,
    RiskReviewOverdue,
    validate_context,
)

__all__ = [
    "CONTEXTS",
    "INVITE_KINDS",
    "Agenda",
    "AgendaEntry",
    "ApprovalRequest",
    "CallForItems",
    "CallToAccount",
    "ContextInvalid",
    "DisputeStage",
    "MeetingCancelled",
    "MeetingNotice",
    "MessageContext",
    "Reminder",
    "ReportOverdue",
    "ReportRequest",
    "ReviewDue",
    "RiskEscalated",
    "RiskReviewOverdue",
    "validate_context",
]
