"""The links a message carries, minted when it is delivered, for exactly its one recipient.

A message that asks for an action (its context's `ask`: an action on a subject) gets a button
that opens the one-page form for that action, signed for that recipient (models/links.py); every
message also links to the recipient's own page ("What is due from me"). They are minted here, at
delivery, and never stored: the link key stays out of the database and the outbox, a retried
delivery gets a fresh token for the same person, action and subject, and a message queued before
the key was rotated still carries a link that works.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr

from models.constitution import Action
from models.errors import WctError
from models.links import action_url, link_key, personal_url
from models.messages import MessageContext

#: The words on each action's button: what the recipient will do, as they would say it.
LABELS: dict[Action, str] = {
    Action.MEETING_APOLOGIES: "Send apologies",
    Action.MEETING_ITEM: "Submit an agenda item",
    Action.REPORT_SUBMIT: "Submit the report",
    Action.ACCOUNT_AGREE_FOR_PARTNER: "Agree or propose a deadline",
    Action.ACCOUNT_AGREE_FOR_WSCB: "Agree or propose a deadline",
    Action.ACCOUNT_RESPOND: "Send the formal response",
    Action.DISPUTE_OUTCOME: "Record the outcome",
    Action.APPROVAL_DECIDE: "Record the decision",
    Action.RISK_REVIEW: "Review the risk",
}
PERSONAL_LABEL = "What is due from me"


class LinkFailed(WctError):
    """A link cannot be minted: the configured key cannot sign, or an action has no button."""


@dataclass(frozen=True)
class Button:
    label: str
    url: str


@dataclass(frozen=True)
class MessageLinks:
    """What one delivered message links to: its action (None: information only) and the
    recipient's own page."""

    action: Button | None
    personal: Button


def label(action: Action) -> str:
    """The button's words for `action`; every action a message may ask for has them."""
    try:
        return LABELS[action]
    except KeyError:
        raise LinkFailed(f"no button text for the action {action.value}") from None


class LinkMinter:
    """Mints the links of each delivered message, from the members' pages' address and the
    partnership's link key (read once, when the first link is minted)."""

    def __init__(self, web_url: str, *, home: Path, configured: SecretStr | None) -> None:
        self.web_url = web_url
        self._home = home
        self._configured = configured
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            try:
                self._key = link_key(self._home, self._configured)
            except ValueError as exc:
                raise LinkFailed(f"WCT_LINK_KEY cannot sign links: {exc}") from None
        return self._key

    def links(self, context: MessageContext, *, person: str, now: datetime) -> MessageLinks:
        """The links of the message `context` for the member whose pseudonym is `person`."""
        action = None
        if context.ask is not None:
            url = action_url(
                self.web_url,
                self.key,
                person=person,
                action=context.ask.action.value,
                subject=context.ask.subject,
                now=now,
            )
            action = Button(label(context.ask.action), url)
        personal = personal_url(self.web_url, self.key, person=person, now=now)
        return MessageLinks(action=action, personal=Button(PERSONAL_LABEL, personal))
