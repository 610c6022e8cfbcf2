"""The constitution: a partnership's MoU as data (YAML), its schema, and the MoU's structural rules.

Loading never touches the database: `load_constitution` returns a checked `Constitution` or raises
`ConstitutionInvalid` with every problem found, each naming its clause and where it is in the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from models.calendar import Region, cadence_ends, meeting_dates, meetings_between, parse_cadence
from models.clock import local_zone
from models.errors import ConstitutionInvalid, InvalidInput, Problem, Refused, cited

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]
#: The name of an environment variable (a secret's value never goes in the constitution).
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,99}$")]

SCHEMA = "schema"


class RoleKind(StrEnum):
    """What a role means to the MoU's rules; the partnership names its own roles."""

    LEAD_MEMBER = "lead_member"
    DCS = "director_of_childrens_services"
    WSCB_INDEPENDENT_CHAIR = "safeguarding_independent_chair"
    CHIEF_EXECUTIVE = "chief_executive"
    STRATEGY_LEAD = "strategy_lead"
    ELECTED_MEMBER = "elected_member"
    LAY_MEMBER = "lay_member"
    FAMILY_REPRESENTATIVE = "family_representative"
    REPRESENTATIVE = "representative"
    COORDINATOR = "coordinator"
    OFFICER = "officer"


class BodyKind(StrEnum):
    BOARD = "board"
    EXECUTIVE = "executive"
    STRATEGY_GROUP = "strategy_group"
    SAFEGUARDING_BOARD = "safeguarding_board"
    COMMISSIONING_GROUP = "commissioning_group"
    OTHER = "other"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: An email address as a constitution gives it (checked loosely: the mailer checks it again).
Email = Annotated[
    str, StringConstraints(pattern=r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$", max_length=254)
]
#: A public https URL (a logo shown in the header of the HTML email).
HttpsUrl = Annotated[str, StringConstraints(pattern=r"^https://[^\s\"'<>]+$", max_length=500)]


class Contact(_Strict):
    """Whom a member writes to about a message: the partnership's governance coordinator."""

    name: Text
    email: Email


class Partnership(_Strict):
    id: Slug
    name: Text
    short_name: Text
    mou: Text = Field(description="Title of the memorandum this constitution encodes.")
    region: Region = Field(
        default="england",
        description="Whose bank holidays are not working days: england, wales, scotland or "
        "northern-ireland.",
    )
    time_zone: str = Field(
        default="Europe/London",
        validation_alias=AliasChoices("time_zone", "timezone"),
        description="IANA time zone of the meetings' wall times (`timezone` also accepted).",
    )
    accountable_body: Slug = Field(
        description="Organisation accountable for the partnership (8.1)."
    )
    agreement_name: Text = Field(
        default="Memorandum of Understanding",
        description="What the partnership calls its agreement, as messages cite it "
        "(`clause 4.2 of the ...`).",
    )
    agreement_short_name: Text | None = Field(
        default=None,
        description="Its short name, where space is short (Teams: `MoU clause 4.2`); none: "
        "`agreement_name`.",
    )
    sender_name: Text | None = Field(
        default=None, description="The name messages come from; none: the settings' (wct)."
    )
    sender_email: Email | None = Field(
        default=None, description="The address messages come from; none: the settings'."
    )
    coordinator: Contact | None = Field(
        default=None, description="The contact every message names for questions or errors."
    )
    logo_url: HttpsUrl | None = Field(
        default=None, description="https only: the logo in the header of the HTML email."
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not an IANA time zone (e.g. Europe/London)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class Outcome(_Strict):
    id: Slug
    name: Text


class Organisation(_Strict):
    id: Slug
    name: Text
    statutory_partner: bool = Field(
        default=False, description="Under the duty to co-operate; must sit on the Board (20.3.3)."
    )
    category: Text | None = Field(default=None, description="The 20.3.4 heading it represents.")


class Role(_Strict):
    id: Slug
    name: Text
    kind: RoleKind
    organisation: Slug | None = Field(
        default=None, description="Set when the role belongs to one organisation."
    )


class Seat(_Strict):
    """A place on a body: a role, optionally held for one organisation."""

    role: Slug
    organisation: Slug | None = None
    count: int = Field(default=1, ge=1, le=20)


class Cadence(_Strict):
    rrule: Text = Field(description="RFC 5545 RRULE, e.g. FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU")
    first: datetime = Field(description="First meeting, Europe/London wall time.")
    duration_minutes: int = Field(default=120, ge=15, le=600)
    location: Text | None = None

    @property
    def first_local(self) -> datetime:
        return self.first if self.first.tzinfo else self.first.replace(tzinfo=local_zone())

    def next_meetings(
        self, after: datetime, count: int, zone: ZoneInfo | None = None
    ) -> list[datetime]:
        zone = zone or local_zone()
        first = self.first if self.first.tzinfo else self.first.replace(tzinfo=zone)
        return meeting_dates(self.rrule, first, after=after, count=count, zone=zone)


class Inquorate(StrEnum):
    """What a decision at a meeting without its quorum is: refused, or recorded as inquorate
    (no decision, the minutes saying why) for the body to ratify later."""

    REFUSE = "refuse"
    RECORD = "record"


class Quorum(_Strict):
    """How many of a body's members must be present for it to decide, under which clause."""

    present: int = Field(ge=1, le=500, description="Members present, at least.")
    clause: Text = Field(description="The clause of the agreement that sets the quorum.")
    inquorate: Inquorate = Field(
        default=Inquorate.REFUSE, description="refuse the decision, or record it as inquorate"
    )


class Body(_Strict):
    id: Slug
    name: Text
    kind: BodyKind
    chair: Slug = Field(description="Role id of the chair.")
    deputy: Slug | None = Field(default=None, description="Role id of the deputy, once appointed.")
    members: list[Seat] = Field(min_length=1)
    cadence: Cadence | None = None
    clause: Text | None = Field(
        default=None,
        description="The MoU clause that has this body meet (20.4.1); by its kind when omitted.",
    )
    outcome: Slug | None = Field(default=None, description="Outcome area of a strategy group.")
    accountable_to: list[Slug] = Field(default_factory=list)
    quorum: Quorum | None = Field(
        default=None, description="None: the agreement sets no quorum (Wirral's MoU sets none)."
    )
    teams_channel: EnvName | None = Field(
        default=None,
        description="The environment variable holding the Workflows webhook URL of the body's "
        "Teams channel (the URL is a secret: never in this file). Each message to the body's "
        "members is also posted there once.",
    )

    def seats_role(self, role_id: str) -> bool:
        return any(seat.role == role_id for seat in self.members)


class Reminders(_Strict):
    """Offsets, in working days, of each step of a meeting cycle and of a report request."""

    call_for_items: int = Field(default=15, ge=1, le=60)
    items_deadline: int = Field(default=8, ge=1, le=60)
    agenda: int = Field(default=5, ge=1, le=30)
    meeting_reminder: int = Field(default=1, ge=0, le=10)
    minutes_due: int = Field(default=10, ge=1, le=30)
    report_request: int = Field(default=20, ge=1, le=60)
    report_reminders: list[int] = Field(default_factory=lambda: [10, 5, 1])
    report_overdue_grace: int = Field(default=3, ge=0, le=30)
    challenge_window: int = Field(
        default=20, ge=1, le=120, description="7.2: a published review is open to challenge."
    )


class RiskPolicy(_Strict):
    escalation_threshold: int = Field(default=15, ge=1, le=25, description="5x5 score (16.1).")
    review_interval_days: int = Field(default=60, ge=7, le=366)


# At most 32 characters: the dispute tables' `stage` columns.
StageName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=32)]
# Who a dispute stage tells, besides a role kind (holders of that kind in the parties).
DISPUTE_AUDIENCES = ("parties", "party-chief-executives", "coordinators")


class DisputeStageSpec(_Strict):
    """One rung of the dispute ladder: how long it lasts, who is told, and whether it is the
    final (ADR-like) stage, whose result is recorded by provider and closes the dispute."""

    name: StageName
    days: int = Field(ge=1, le=250, description="Working days allowed at this stage.")
    notify: list[Text] = Field(
        min_length=1,
        description="Who is told: " + ", ".join(DISPUTE_AUDIENCES) + ", or a role kind.",
    )
    final: bool = False
    action: Text | None = Field(default=None, max_length=1000, description="What they are asked.")

    @model_validator(mode="after")
    def _known_audiences(self) -> DisputeStageSpec:
        known = set(DISPUTE_AUDIENCES) | {k.value for k in RoleKind}
        unknown = [a for a in self.notify if a not in known]
        if unknown:
            raise ValueError(f"stage {self.name}: unknown audience(s) {', '.join(unknown)}")
        return self


def wirral_ladder(
    informal: int = 20, chief_executives: int = 30, adr: int = 60
) -> list[DisputeStageSpec]:
    """18.2: informal discussion, then the Chief Executives, then alternative dispute resolution."""
    return [
        DisputeStageSpec(
            name="informal",
            days=informal,
            notify=["parties"],
            action="Meet the other parties informally, then record the outcome (resolved or not) "
            "by the deadline with the button below.",
        ),
        DisputeStageSpec(
            name="chief_executives",
            days=chief_executives,
            notify=["party-chief-executives"],
            action="The Chief Executive of each agency involved is asked to meet to resolve it, "
            "and to record the outcome (resolved or not) by the deadline with the button below.",
        ),
        DisputeStageSpec(
            name="adr",
            days=adr,
            notify=["party-chief-executives", "coordinators", "parties"],
            final=True,
            action="Consider alternative dispute resolution. When it is done, send the provider "
            "and the result to the governance coordinator, who records them.",
        ),
    ]


class DisputePolicy(_Strict):
    """The 18.2 ladder: its stages in order, the last one final. The older shape (working days
    as `informal`, `chief_executives`, `adr`) still loads, as Wirral's three stages."""

    stages: list[DisputeStageSpec] = Field(default_factory=wirral_ladder, min_length=2)

    @model_validator(mode="before")
    @classmethod
    def _older_shape(cls, data: Any) -> Any:
        legacy = ("informal", "chief_executives", "adr")
        if isinstance(data, dict) and any(k in data for k in legacy):
            if "stages" in data:
                raise ValueError("give either stages or informal/chief_executives/adr, not both")
            days = {k: data[k] for k in legacy if k in data}
            for k, v in days.items():
                if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 250:
                    raise ValueError(f"{k}: working days must be a whole number from 1 to 250")
            rest = {k: v for k, v in data.items() if k not in legacy}
            return rest | {"stages": wirral_ladder(**days)}
        return data

    @model_validator(mode="after")
    def _one_final_last(self) -> DisputePolicy:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names) or "closed" in names:
            raise ValueError("stage names must be unique, and none may be 'closed'")
        if [s.final for s in self.stages] != [False] * (len(names) - 1) + [True]:
            raise ValueError("the last stage, and only the last, must be final: true")
        return self

    def stage(self, name: str) -> DisputeStageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise KeyError(name)


class CallToAccountPolicy(_Strict):
    """Bounds on the mutually agreed response deadline of 11.5.1, in working days."""

    min_deadline: int = Field(default=10, ge=1, le=250)
    max_deadline: int = Field(default=60, ge=1, le=250)
    agreement_window: int = Field(default=10, ge=1, le=60)


class DeliveryPolicy(_Strict):
    max_attempts: int = Field(default=8, ge=1, le=50)
    first_retry_seconds: int = Field(default=30, ge=1, le=3600)


class PapersPolicy(_Strict):
    """What the public version of a meeting's papers leaves out: agenda items of these kinds
    (the kinds of `models.meetings.AgendaItemKind`), with their decisions, declarations and
    actions, besides any item marked confidential on its own."""

    confidential_kinds: list[
        Literal["standing", "submitted", "report", "risk", "approval", "action"]
    ] = Field(default_factory=list)


class Review(_Strict):
    """An annual review or report and who owes it."""

    id: Slug
    title: Text
    clause: Text
    owner: Slug = Field(description="Body that owns the review.")
    due_month: int = Field(ge=1, le=12)
    due_day: int = Field(ge=1, le=31)
    challenge_window: bool = Field(
        default=False, description="Published and open to public challenge (Wirral's 7.2)."
    )
    representation_check: bool = Field(
        default=False, description="Checks statutory representation (Wirral's 20.3.5)."
    )
    opens_before_days: int = Field(
        default=45, ge=1, le=300, description="Days before it is due that the review opens."
    )

    @model_validator(mode="before")
    @classmethod
    def _flags_from_older_files(cls, data: Any) -> Any:
        """A file written before the flags had them switched on by Wirral's clause numbers."""
        if isinstance(data, dict) and isinstance(data.get("clause"), str):
            cited = {part.strip() for part in data["clause"].split(",")}
            data = dict(data)
            data.setdefault("challenge_window", "7.2" in cited)
            data.setdefault("representation_check", "20.3.5" in cited)
        return data

    @model_validator(mode="after")
    def _real_date(self) -> Review:
        try:
            date(2027, self.due_month, self.due_day)  # a common year: no 29 February
        except ValueError:
            raise ValueError(
                f"{self.due_day}/{self.due_month} is not a date in every year"
            ) from None
        return self


class QuarterlyReport(_Strict):
    id: Slug
    title: Text
    clause: Text
    from_body: Slug | None = Field(default=None, description="Body reporting; omit for every ...")
    from_kind: BodyKind | None = Field(default=None, description="... body of this kind.")
    to_body: Slug
    due_working_days_after_quarter: int = Field(default=15, ge=1, le=60)
    months: list[int] = Field(
        default_factory=lambda: [3, 6, 9, 12],
        min_length=1,
        max_length=12,
        description="The months whose end closes a reporting period (default: calendar quarters).",
    )

    @model_validator(mode="after")
    def _months_in_order(self) -> QuarterlyReport:
        if self.months != sorted(set(self.months)) or not all(1 <= m <= 12 for m in self.months):
            raise ValueError("months: distinct months 1-12, in order")
        return self


class PlanningPolicy(_Strict):
    """How far ahead each body's meetings are planned by its cadence."""

    meetings_ahead: int = Field(default=2, ge=1, le=24)


class ApprovalGate(_Strict):
    """A proposal from one body that needs another body's approval first (11.3.5, 21.1.1)."""

    id: Slug
    title: Text
    clause: Text
    from_body: Slug
    approver_body: Slug
    decide_within: int = Field(
        default=20,
        ge=1,
        le=120,
        description="Working days the approving body has to decide; its chairs are reminded at "
        "`reminders.report_reminders` before, and told with the proposers when it passes.",
    )


class Action(StrEnum):
    """Everything a person or the system can do through `models.service.execute`; the
    constitution's `permissions` say who may do each (a default when it names no one)."""

    # Cases (16.1, 18.1-18.2, 11.5.1, 11.3.5, 21.1.1).
    RISK_RAISE = "risk.raise"
    RISK_REVIEW = "risk.review"
    RISK_ESCALATE = "risk.escalate"
    RISK_ASSESS = "risk.assess"
    RISK_CLOSE = "risk.close"
    DISPUTE_OPEN = "dispute.open"
    DISPUTE_OUTCOME = "dispute.outcome"
    DISPUTE_ADR = "dispute.adr"
    DISPUTE_DECLARE = "dispute.declare"
    ACCOUNT_OPEN = "account.open"
    ACCOUNT_AGREE_FOR_WSCB = "account.agree_for_wscb"
    ACCOUNT_AGREE_FOR_PARTNER = "account.agree_for_partner"
    ACCOUNT_RESPOND = "account.respond"
    ACCOUNT_CONCLUDE = "account.conclude"
    APPROVAL_REQUEST = "approval.request"
    APPROVAL_DECIDE = "approval.decide"
    # Meetings (20.4.1, 21.4.1, 22.4.1; agenda and minutes, 23.1).
    MEETING_PLAN = "meeting.plan"
    MEETING_ITEM = "meeting.item"
    MEETING_APOLOGIES = "meeting.apologies"
    MEETING_DECLARE = "meeting.declare"
    MEETING_RECORD = "meeting.record"
    MEETING_APPROVE_MINUTES = "meeting.approve_minutes"
    MEETING_CANCEL = "meeting.cancel"
    MEETING_MOVE = "meeting.move"
    MEETING_CALL = "meeting.call"  # an extraordinary meeting, off the cadence
    MEETING_RECORD_PAST = "meeting.record_past"  # enter a meeting held before wct ran
    # The action tracker: actions agreed at a meeting (recorded with the meeting's record).
    ACTION_UPDATE = "action.update"
    # Quarterly reports (22.2.1, 11.4.1) and annual reviews (7.2, 19.1, ...).
    REPORT_OPEN = "report.open"
    REPORT_SUBMIT = "report.submit"
    REVIEW_OPEN = "review.open"
    REVIEW_COMPLETE = "review.complete"
    REVIEW_CHALLENGE = "review.challenge"
    REVIEW_ANSWER_CHALLENGE = "review.answer_challenge"
    # Running the partnership's records (an operator at the CLI, or a coordinator).
    CONSTITUTION_LOAD = "constitution.load"
    MEMBERS_IMPORT = "members.import"
    MEMBERS_ERASE = "members.erase"
    OUTBOX_RETRY = "outbox.retry"
    # A step whose time has come (a timer run or the sweep): the system acts on it.
    STEP_FIRE = "step.fire"


CaseAction = Action  # the name the actions had when only cases had them

GRANT_FORMS = (
    "anyone",
    "member",
    "system",
    "party",
    "party-chief-executive",
    "approver-chair",
    "proposer-member",
    "action-owner",
    "body-member",
    "body-chair",
    "body-deputy",
    "role:ROLE",
    "kind:ROLE_KIND",
    "chair:BODY",
    "deputy:BODY",
    "member:BODY",
)
SIMPLE_GRANTS = tuple(g for g in GRANT_FORMS if ":" not in g)

_CHAIRS = ("body-chair", "body-deputy")
_COORDINATOR = "kind:coordinator"

#: Who may, when a constitution's `permissions` do not say: only forms that name no body or role,
#: so they hold in any partnership. `body-*` is the body the command is about (the meeting's body,
#: the reporting body, the review's owner, the Executive for a risk, the Safeguarding Board for a
#: call to account, the Board for a risk's assessment). `system` is a timer, a sweep, a cycle run
#: or the operator at the CLI, which may do what the system does and nothing a member must.
DEFAULT_GRANTS: dict[Action, tuple[str, ...]] = {
    Action.RISK_RAISE: ("body-member", _COORDINATOR),  # 16.1: managed by the Executive
    Action.RISK_REVIEW: ("body-member",),
    Action.RISK_ESCALATE: _CHAIRS,
    Action.RISK_ASSESS: (*_CHAIRS, _COORDINATOR),  # the Board's formal assessment
    Action.RISK_CLOSE: _CHAIRS,
    Action.DISPUTE_OPEN: ("party", _COORDINATOR),  # 18.2
    Action.DISPUTE_OUTCOME: ("party",),
    Action.DISPUTE_ADR: ("party", _COORDINATOR),
    Action.DISPUTE_DECLARE: ("member",),  # 18.1: any member declares
    Action.ACCOUNT_OPEN: _CHAIRS,  # 11.5.1: the Safeguarding Board calls to account
    Action.ACCOUNT_AGREE_FOR_WSCB: _CHAIRS,
    Action.ACCOUNT_AGREE_FOR_PARTNER: ("party",),
    Action.ACCOUNT_RESPOND: ("party",),
    Action.ACCOUNT_CONCLUDE: _CHAIRS,
    Action.APPROVAL_REQUEST: ("proposer-member", _COORDINATOR),
    Action.APPROVAL_DECIDE: ("approver-chair", _COORDINATOR),
    Action.MEETING_PLAN: (*_CHAIRS, _COORDINATOR, "system"),
    Action.MEETING_ITEM: ("body-member", _COORDINATOR),
    Action.MEETING_APOLOGIES: ("body-member",),
    Action.MEETING_DECLARE: ("body-member",),  # 18.1: ahead of the meeting
    Action.MEETING_RECORD: (*_CHAIRS, _COORDINATOR),  # 23.1: minutes
    Action.MEETING_APPROVE_MINUTES: (*_CHAIRS, _COORDINATOR),
    Action.MEETING_CANCEL: (*_CHAIRS, _COORDINATOR),
    Action.MEETING_MOVE: (*_CHAIRS, _COORDINATOR),
    Action.MEETING_CALL: (*_CHAIRS, _COORDINATOR),
    Action.MEETING_RECORD_PAST: (*_CHAIRS, _COORDINATOR),
    Action.ACTION_UPDATE: ("action-owner", *_CHAIRS, _COORDINATOR),
    Action.REPORT_OPEN: (_COORDINATOR, "system"),
    Action.REPORT_SUBMIT: (*_CHAIRS, _COORDINATOR),  # 22.2.1, 11.4.1: the reporting chair
    Action.REVIEW_OPEN: (_COORDINATOR, "system"),
    Action.REVIEW_COMPLETE: (*_CHAIRS, _COORDINATOR),
    Action.REVIEW_CHALLENGE: ("anyone",),  # 7.2: any interested party
    Action.REVIEW_ANSWER_CHALLENGE: (*_CHAIRS, _COORDINATOR),
    Action.CONSTITUTION_LOAD: ("system",),
    Action.MEMBERS_IMPORT: ("system",),
    Action.MEMBERS_ERASE: ("system",),
    Action.OUTBOX_RETRY: ("system", _COORDINATOR),
    Action.STEP_FIRE: ("system",),
}


class StructuralRule(StrEnum):
    """The MoU's structural rules wct can check; the constitution says which clause each is."""

    DISTINCT_CHAIRS = "distinct_chairs"
    BOARD_CHAIR_IS_LEAD_MEMBER = "board_chair_is_lead_member"
    EXECUTIVE_CHAIR_IS_DCS = "executive_chair_is_dcs"
    DCS_ON_TRUST_AND_SAFEGUARDING_BOARD = "dcs_on_trust_and_safeguarding_board"
    STATUTORY_PARTNERS_ON_BOARD = "statutory_partners_on_board"
    STRATEGY_LEADS_ON_EXECUTIVE = "strategy_leads_on_executive"
    FAMILY_REPRESENTATION_IN_STRATEGY_GROUPS = "family_representation_in_strategy_groups"
    SAFEGUARDING_CHAIR_ON_TRUST = "safeguarding_chair_on_trust"
    STRATEGY_GROUP_PER_OUTCOME = "strategy_group_per_outcome"


class Clauses(_Strict):
    """Which clause of the agreement each process cites in its messages (a meeting cites its
    body's `clause`; a report, review or approval its own entry's). A process the file gives
    no clause for cites none: a message never cites a clause the file does not give."""

    risk: Text | None = Field(default=None, description="Risks escalated and reviewed (16.1).")
    disputes: Text | None = Field(default=None, description="The dispute ladder (18.2).")
    call_to_account: Text | None = Field(
        default=None, description="Calls to account and evidence requests (11.5.1)."
    )
    actions: Text | None = Field(
        default=None, description="Actions agreed at meetings (12.1, 21.2.1)."
    )
    challenge: Text | None = Field(
        default=None, description="Challenges to a published review (7.2)."
    )
    membership: Text | None = Field(
        default=None, description="Gaps found by the membership review (20.3.5)."
    )
    decisions: Text | None = Field(
        default=None,
        description="How a body decides a motion: consensus, majority, casting vote (6.2).",
    )
    interests: Text | None = Field(
        default=None,
        description="Declarations of interest, and votes set aside for them (18.1); none: the "
        "clause of the declarations standing item, if it gives one.",
    )


class StandingFeed(StrEnum):
    """What a standing agenda item lists under its heading."""

    APOLOGIES = "apologies"
    DECLARATIONS = "declarations"
    MINUTES = "minutes"
    MATTERS_ARISING = "matters_arising"
    SAFEGUARDING_REPORT = "safeguarding_report"
    REPORTS_RECEIVED = "reports_received"
    PERFORMANCE = "performance"
    ESCALATED_RISKS = "escalated_risks"
    APPROVALS = "approvals"


class StandingItem(_Strict):
    """A heading on every agenda (of the bodies of `kinds`; none: of every body), in order, with
    what is waiting under it. A heading without a title lists only its entries."""

    title: Text | None = None
    clause: Text | None = None
    feed: StandingFeed
    kinds: list[BodyKind] = Field(default_factory=list, description="None: every body.")

    def heading(self) -> str | None:
        """`Declarations of interest (18.1)`; without a clause, the title alone."""
        if self.title is None:
            return None
        return cited(self.title, self.clause)

    def applies_to(self, kind: BodyKind) -> bool:
        return not self.kinds or kind in self.kinds


def default_standing_items() -> list[StandingItem]:
    """The standing items of a file that names none: Wirral's, without its clause numbers."""
    board, executive = BodyKind.BOARD, BodyKind.EXECUTIVE
    return [
        StandingItem(title="Apologies for absence", feed=StandingFeed.APOLOGIES),
        StandingItem(title="Declarations of interest", feed=StandingFeed.DECLARATIONS),
        StandingItem(title="Minutes of the last meeting", feed=StandingFeed.MINUTES),
        StandingItem(title="Matters arising", feed=StandingFeed.MATTERS_ARISING),
        StandingItem(title="Quarterly safeguarding report", feed=StandingFeed.SAFEGUARDING_REPORT),
        StandingItem(feed=StandingFeed.REPORTS_RECEIVED),
        StandingItem(
            title="Performance reports", feed=StandingFeed.PERFORMANCE, kinds=[board, executive]
        ),
        StandingItem(
            title="Risks escalated to the Board", feed=StandingFeed.ESCALATED_RISKS, kinds=[board]
        ),
        StandingItem(title="Items awaiting approval", feed=StandingFeed.APPROVALS),
    ]


class Constitution(_Strict):
    version: int = Field(ge=1, le=1)
    partnership: Partnership
    outcomes: list[Outcome] = Field(default_factory=list)
    organisations: list[Organisation] = Field(min_length=1)
    roles: list[Role] = Field(min_length=1)
    bodies: list[Body] = Field(min_length=1)
    reminders: Reminders = Reminders()
    risk: RiskPolicy = RiskPolicy()
    disputes: DisputePolicy = DisputePolicy()
    call_to_account: CallToAccountPolicy = CallToAccountPolicy()
    delivery: DeliveryPolicy = DeliveryPolicy()
    papers: PapersPolicy = PapersPolicy()
    planning: PlanningPolicy = PlanningPolicy()
    reviews: list[Review] = Field(default_factory=list)
    quarterly_reports: list[QuarterlyReport] = Field(default_factory=list)
    rules: dict[StructuralRule, Text] = Field(
        default_factory=dict, description="Which MoU clause each structural rule enforces."
    )
    approval_gates: list[ApprovalGate] = Field(default_factory=list)
    clauses: Clauses = Field(
        default_factory=Clauses, description="The clause each process's messages cite."
    )
    standing_items: list[StandingItem] = Field(
        default_factory=default_standing_items, description="The headings of every agenda."
    )
    permissions: dict[Action, list[Text]] = Field(
        default_factory=dict,
        description="Who may do each action (any not named: DEFAULT_GRANTS): "
        + ", ".join(GRANT_FORMS),
    )

    def grants(self, action: Action) -> list[str]:
        """Who may do `action`: as the file says, else as `DEFAULT_GRANTS` says."""
        given = self.permissions.get(action)
        return list(given) if given is not None else list(DEFAULT_GRANTS[action])

    def cite(self, process: str) -> str:
        """The clause `process` (a field of `clauses`) cites, as the file gives it; "" (cite
        none) when it gives none. Interests, not given there, cite the clause of the standing
        item that lists declarations, where the file gives one."""
        if process not in Clauses.model_fields:
            raise KeyError(process)
        given: str | None = getattr(self.clauses, process)
        if given is None and process == "interests":
            given = next(
                (
                    i.clause
                    for i in self.standing_items
                    if i.feed is StandingFeed.DECLARATIONS and i.clause
                ),
                None,
            )
        return given or ""

    def refused(self, message: str, clause: str | None) -> Refused:
        """`Refused(message)` citing `clause` (none or "": no clause) after what the partnership
        calls its agreement where space is short (Wirral: `(MoU 16.1)`)."""
        p = self.partnership
        return Refused(message, clause=clause, agreement=p.agreement_short_name or p.agreement_name)

    def body(self, body_id: str) -> Body:
        for body in self.bodies:
            if body.id == body_id:
                return body
        raise KeyError(body_id)

    def role(self, role_id: str) -> Role:
        for role in self.roles:
            if role.id == role_id:
                return role
        raise KeyError(role_id)

    def bodies_of(self, kind: BodyKind) -> list[Body]:
        return [b for b in self.bodies if b.kind is kind]

    def sole(self, kind: BodyKind) -> Body:
        """The one body of `kind` (the Board, the Executive, the Safeguarding Board)."""
        found = self.bodies_of(kind)
        if len(found) != 1:
            raise InvalidInput(
                f"the constitution needs exactly one body of kind '{kind}' here, has {len(found)}"
            )
        return found[0]

    def roles_of(self, kind: RoleKind) -> set[str]:
        return {r.id for r in self.roles if r.kind is kind}

    def digest(self) -> str:
        """A stable hash of the content, so a reload of the same file changes nothing."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Loading: YAML -> schema -> references -> structural rules. Every problem is collected.


def default_constitution_path() -> Path:
    """The Wirral Children's Trust constitution shipped with wct."""
    return Path(str(resources.files("models") / "constitutions" / "wirral.yaml"))


def load_constitution(path: Path | None = None, *, now: datetime | None = None) -> Constitution:
    """Read and check a constitution file; raise ConstitutionInvalid listing every problem."""
    path = path or default_constitution_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConstitutionInvalid(
            str(path), [Problem("file", "", exc.strerror or str(exc))]
        ) from None
    return parse_constitution(text, source=str(path), now=now)


def parse_constitution(
    text: str, *, source: str = "<constitution>", now: datetime | None = None
) -> Constitution:
    """Validate constitution YAML text; raise ConstitutionInvalid listing all problems. A
    cadence must meet in the 12 months from `now` (from its first meeting when not given)."""
    lines, problems = _index_lines(text)
    if problems:
        raise ConstitutionInvalid(source, problems)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConstitutionInvalid(source, [Problem(SCHEMA, "", "expected a mapping at the top")])
    try:
        constitution = Constitution.model_validate(data)
    except ValidationError as exc:
        raise ConstitutionInvalid(source, _schema_problems(exc, lines)) from None
    found = reference_problems(constitution)
    if not found:  # rules assume every reference resolves
        found = structural_problems(constitution) + process_problems(constitution)
        found += cadence_problems(constitution, now=now)
    if found:
        for problem in found:
            problem.line = _line_for(lines, problem.path)
        raise ConstitutionInvalid(source, found)
    return constitution


def _schema_problems(exc: ValidationError, lines: dict[str, int]) -> list[Problem]:
    problems = []
    for error in exc.errors():
        path = _path(error["loc"])
        problems.append(Problem(SCHEMA, path, error["msg"], _line_for(lines, path)))
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(lines: dict[str, int], path: str) -> int | None:
    probe = path
    while probe:
        if probe in lines:
            return lines[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return None


def _index_lines(text: str) -> tuple[dict[str, int], list[Problem]]:
    """Map each path in the YAML document to its 1-based line; report syntax errors and dup keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        return {}, [Problem("yaml", "", f"not valid YAML: {reason}", line)]
    lines: dict[str, int] = {}
    problems: list[Problem] = []

    def walk(node: yaml.Node, path: str) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                child = f"{path}.{name}" if path else name
                if name in seen:
                    problems.append(
                        Problem("yaml", child, "key appears twice", key.start_mark.line + 1)
                    )
                seen.add(name)
                lines.setdefault(child, key.start_mark.line + 1)
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for n, item in enumerate(node.value):
                walk(item, f"{path}[{n}]")

    if root is not None:
        walk(root, "")
    return lines, problems


def reference_problems(c: Constitution) -> list[Problem]:
    """Ids are unique and every reference to an organisation, role, body or outcome resolves."""
    problems: list[Problem] = []
    org_ids = _unique(problems, "organisations", [o.id for o in c.organisations])
    role_ids = _unique(problems, "roles", [r.id for r in c.roles])
    body_ids = _unique(problems, "bodies", [b.id for b in c.bodies])
    outcome_ids = _unique(problems, "outcomes", [o.id for o in c.outcomes])
    _unique(problems, "reviews", [r.id for r in c.reviews])
    _unique(problems, "quarterly_reports", [r.id for r in c.quarterly_reports])
    _unique(problems, "approval_gates", [g.id for g in c.approval_gates])

    def need(ref: str | None, known: set[str], what: str, path: str) -> None:
        if ref is not None and ref not in known:
            problems.append(Problem(SCHEMA, path, f"unknown {what} '{ref}'"))

    need(c.partnership.accountable_body, org_ids, "organisation", "partnership.accountable_body")
    for n, role in enumerate(c.roles):
        need(role.organisation, org_ids, "organisation", f"roles[{n}].organisation")
    for n, body in enumerate(c.bodies):
        at = f"bodies[{n}]"
        need(body.chair, role_ids, "role", f"{at}.chair")
        need(body.deputy, role_ids, "role", f"{at}.deputy")
        need(body.outcome, outcome_ids, "outcome", f"{at}.outcome")
        for m, target in enumerate(body.accountable_to):
            need(target, body_ids, "body", f"{at}.accountable_to[{m}]")
        for m, seat in enumerate(body.members):
            need(seat.role, role_ids, "role", f"{at}.members[{m}].role")
            need(seat.organisation, org_ids, "organisation", f"{at}.members[{m}].organisation")
        for field, ref in (("chair", body.chair), ("deputy", body.deputy)):
            if ref in role_ids and ref is not None and not body.seats_role(ref):
                problems.append(
                    Problem(SCHEMA, f"{at}.{field}", f"role '{ref}' has no seat on {body.id}")
                )
        if body.cadence is not None:
            try:
                parse_cadence(body.cadence.rrule, body.cadence.first_local)
            except (ValueError, TypeError) as exc:
                problems.append(Problem(SCHEMA, f"{at}.cadence.rrule", f"not a valid RRULE: {exc}"))
    for n, review in enumerate(c.reviews):
        need(review.owner, body_ids, "body", f"reviews[{n}].owner")
    for n, report in enumerate(c.quarterly_reports):
        need(report.from_body, body_ids, "body", f"quarterly_reports[{n}].from_body")
        need(report.to_body, body_ids, "body", f"quarterly_reports[{n}].to_body")
        if (report.from_body is None) == (report.from_kind is None):
            problems.append(
                Problem(
                    SCHEMA, f"quarterly_reports[{n}]", "give exactly one of from_body, from_kind"
                )
            )
    for n, gate in enumerate(c.approval_gates):
        need(gate.from_body, body_ids, "body", f"approval_gates[{n}].from_body")
        need(gate.approver_body, body_ids, "body", f"approval_gates[{n}].approver_body")
    for action, grants in c.permissions.items():
        for m, grant in enumerate(grants):
            problem = _grant_problem(grant, role_ids, body_ids)
            if problem:
                problems.append(Problem(SCHEMA, f"permissions.{action.value}[{m}]", problem))
    if c.call_to_account.min_deadline > c.call_to_account.max_deadline:
        problems.append(
            Problem(SCHEMA, "call_to_account.min_deadline", "is greater than max_deadline")
        )
    return problems


def _grant_problem(grant: str, role_ids: set[str], body_ids: set[str]) -> str | None:
    form, _, ref = grant.partition(":")
    if not ref:
        return (
            None if form in SIMPLE_GRANTS else f"'{grant}' is not one of: {', '.join(GRANT_FORMS)}"
        )
    if form == "role":
        return None if ref in role_ids else f"unknown role '{ref}'"
    if form == "kind":
        return None if ref in {k.value for k in RoleKind} else f"unknown role kind '{ref}'"
    if form in ("chair", "deputy", "member"):
        return None if ref in body_ids else f"unknown body '{ref}'"
    return f"'{grant}' is not one of: {', '.join(GRANT_FORMS)}"


def _unique(problems: list[Problem], section: str, ids: list[str]) -> set[str]:
    seen: set[str] = set()
    for n, item in enumerate(ids):
        if item in seen:
            problems.append(Problem(SCHEMA, f"{section}[{n}].id", f"duplicate id '{item}'"))
        seen.add(item)
    return seen


# ---------------------------------------------------------------------------------------------
# The MoU's structural rules. Each yields (path, message); the constitution maps it to its clause.

Finding = tuple[str, str]


def _index(c: Constitution, body: Body) -> int:
    return c.bodies.index(body)


def _the(c: Constitution, kind: BodyKind) -> Body | None:
    found = c.bodies_of(kind)
    return found[0] if len(found) == 1 else None


def _needs_one(c: Constitution, kind: BodyKind) -> Iterator[Finding]:
    count = len(c.bodies_of(kind))
    if count != 1:
        yield "bodies", f"expected exactly one body of kind '{kind}', found {count}"


def _distinct_chairs(c: Constitution) -> Iterator[Finding]:
    """11.1.3: the Board and the Safeguarding Board are chaired by different people."""
    yield from _needs_one(c, BodyKind.BOARD)
    yield from _needs_one(c, BodyKind.SAFEGUARDING_BOARD)
    board, wscb = _the(c, BodyKind.BOARD), _the(c, BodyKind.SAFEGUARDING_BOARD)
    if board and wscb and board.chair == wscb.chair:
        yield (
            f"bodies[{_index(c, wscb)}].chair",
            f"{wscb.id} is chaired by role '{wscb.chair}', the same role that chairs {board.id}; "
            "the two bodies must be chaired by different people",
        )
    elif board and wscb and c.role(board.chair).kind is c.role(wscb.chair).kind:
        kind = c.role(wscb.chair).kind
        yield (
            f"bodies[{_index(c, wscb)}].chair",
            f"{wscb.id} is chaired by role '{wscb.chair}' and {board.id} by role "
            f"'{board.chair}', both of kind '{kind}': one person would hold both chairs; "
            "the two bodies must be chaired by different people",
        )


def _chair_kind(kind: BodyKind, role_kind: RoleKind) -> Callable[[Constitution], Iterator[Finding]]:
    def rule(c: Constitution) -> Iterator[Finding]:
        yield from _needs_one(c, kind)
        body = _the(c, kind)
        if body and c.role(body.chair).kind is not role_kind:
            yield (
                f"bodies[{_index(c, body)}].chair",
                f"{body.id} must be chaired by a role of kind '{role_kind}', "
                f"not '{body.chair}' ({c.role(body.chair).kind})",
            )

    return rule


def _role_kind_sits_on(c: Constitution, role_kind: RoleKind, *kinds: BodyKind) -> Iterator[Finding]:
    holders = c.roles_of(role_kind)
    if not holders:
        yield "roles", f"no role of kind '{role_kind}' is defined"
        return
    for kind in kinds:
        yield from _needs_one(c, kind)
        body = _the(c, kind)
        if body and not any(body.seats_role(r) for r in holders):
            yield (
                f"bodies[{_index(c, body)}].members",
                f"{body.id} has no seat for the {role_kind.replace('_', ' ')} "
                f"({', '.join(sorted(holders))})",
            )


def _dcs_on_both(c: Constitution) -> Iterator[Finding]:
    """11.1.5: the DCS is a member of both the Trust (its Board) and the Safeguarding Board."""
    yield from _role_kind_sits_on(c, RoleKind.DCS, BodyKind.BOARD, BodyKind.SAFEGUARDING_BOARD)


def _safeguarding_chair_on_trust(c: Constitution) -> Iterator[Finding]:
    """11.2.5: the WSCB Independent Chair is also a member of the Trust (its Board)."""
    yield from _role_kind_sits_on(c, RoleKind.WSCB_INDEPENDENT_CHAIR, BodyKind.BOARD)


def _statutory_partners_on_board(c: Constitution) -> Iterator[Finding]:
    """20.3.3-20.3.4: every partner under the statutory duty to co-operate sits on the Board."""
    yield from _needs_one(c, BodyKind.BOARD)
    board = _the(c, BodyKind.BOARD)
    if board is None:
        return
    roles = {r.id: r for r in c.roles}
    represented = {seat.organisation or roles[seat.role].organisation for seat in board.members} - {
        None
    }
    for n, org in enumerate(c.organisations):
        if org.statutory_partner and org.id not in represented:
            yield (
                f"organisations[{n}]",
                f"statutory partner '{org.id}' has no seat on {board.id} "
                f"(bodies[{_index(c, board)}].members)",
            )


def _strategy_leads_on_executive(c: Constitution) -> Iterator[Finding]:
    """21.3.3: the Executive includes the Strategy Lead of each strategy group."""
    yield from _needs_one(c, BodyKind.EXECUTIVE)
    executive = _the(c, BodyKind.EXECUTIVE)
    if executive is None:
        return
    for group in c.bodies_of(BodyKind.STRATEGY_GROUP):
        if not executive.seats_role(group.chair):
            yield (
                f"bodies[{_index(c, executive)}].members",
                f"the strategy lead of {group.id} (role '{group.chair}') has no seat on "
                f"{executive.id}",
            )


def _family_representation(c: Constitution) -> Iterator[Finding]:
    """22.3.2: every strategy group includes family representation."""
    family = c.roles_of(RoleKind.FAMILY_REPRESENTATIVE)
    for group in c.bodies_of(BodyKind.STRATEGY_GROUP):
        if not any(seat.role in family for seat in group.members):
            yield (
                f"bodies[{_index(c, group)}].members",
                f"strategy group {group.id} has no family representative seat",
            )


def _strategy_group_per_outcome(c: Constitution) -> Iterator[Finding]:
    """21.2.1: one strategy group for each outcome area, each led by a strategy lead."""
    groups = c.bodies_of(BodyKind.STRATEGY_GROUP)
    for group in groups:
        at = f"bodies[{_index(c, group)}]"
        if group.outcome is None:
            yield f"{at}.outcome", f"strategy group {group.id} names no outcome area"
        if c.role(group.chair).kind is not RoleKind.STRATEGY_LEAD:
            yield f"{at}.chair", f"strategy group {group.id} must be chaired by a strategy lead"
    covered = {g.outcome for g in groups}
    for n, outcome in enumerate(c.outcomes):
        if outcome.id not in covered:
            yield f"outcomes[{n}]", f"outcome '{outcome.id}' has no strategy group"


RULES: dict[StructuralRule, Callable[[Constitution], Iterator[Finding]]] = {
    StructuralRule.DISTINCT_CHAIRS: _distinct_chairs,
    StructuralRule.BOARD_CHAIR_IS_LEAD_MEMBER: _chair_kind(BodyKind.BOARD, RoleKind.LEAD_MEMBER),
    StructuralRule.EXECUTIVE_CHAIR_IS_DCS: _chair_kind(BodyKind.EXECUTIVE, RoleKind.DCS),
    StructuralRule.DCS_ON_TRUST_AND_SAFEGUARDING_BOARD: _dcs_on_both,
    StructuralRule.STATUTORY_PARTNERS_ON_BOARD: _statutory_partners_on_board,
    StructuralRule.STRATEGY_LEADS_ON_EXECUTIVE: _strategy_leads_on_executive,
    StructuralRule.FAMILY_REPRESENTATION_IN_STRATEGY_GROUPS: _family_representation,
    StructuralRule.SAFEGUARDING_CHAIR_ON_TRUST: _safeguarding_chair_on_trust,
    StructuralRule.STRATEGY_GROUP_PER_OUTCOME: _strategy_group_per_outcome,
}


def structural_problems(c: Constitution) -> list[Problem]:
    """Every breach of the structural rules the constitution switches on, with its clause."""
    problems = []
    for rule, clause in c.rules.items():
        for path, message in RULES[rule](c):
            problems.append(Problem(clause, path, message))
    return problems


# ---------------------------------------------------------------------------------------------
# What the processes need from the file: bodies of the kinds they address, someone to hold each
# permission, and cadences that keep meeting. A mistake here shows only later, at run time.

PROCESSES = "processes"
#: How far ahead a cadence must meet at least once.
CADENCE_HORIZON = timedelta(days=366)
#: A call to account is between the Safeguarding Board and a partner on the Board (11.5.1).
_ACCOUNT_KINDS = (BodyKind.SAFEGUARDING_BOARD, BodyKind.BOARD)


def _process_needs(c: Constitution) -> Iterator[tuple[str, str, str, BodyKind]]:
    """(clause, path, process, kind): each body kind a process the file names will address."""
    given = c.model_fields_set
    for n, report in enumerate(c.quarterly_reports):
        at = f"quarterly_reports[{n}]"
        # an overdue report is reported to the Executive's chair
        yield report.clause, at, f"quarterly report '{report.id}'", BodyKind.EXECUTIVE
    for n, review in enumerate(c.reviews):
        yield review.clause, f"reviews[{n}]", f"review '{review.id}'", BodyKind.BOARD
    sections = (
        ("call_to_account", "account.", "a call to account", _ACCOUNT_KINDS),
        ("risk", "risk.", "risk escalation", (BodyKind.EXECUTIVE, BodyKind.BOARD)),
        ("disputes", "dispute.", "the dispute ladder", (BodyKind.BOARD,)),
    )
    for section, prefix, process, kinds in sections:
        named = [a for a in c.permissions if a.value.startswith(prefix)]
        if section in given:
            path = section
        elif named:
            path = f"permissions.{named[0].value}"
        else:
            continue
        for kind in kinds:
            yield PROCESSES, path, process, kind


def process_problems(c: Constitution) -> list[Problem]:
    """Body kinds the file's processes address but it lacks; permissions no role can hold."""
    problems: list[Problem] = []
    for clause, path, process, kind in _process_needs(c):
        count = len(c.bodies_of(kind))
        if count != 1:
            problems.append(
                Problem(
                    clause,
                    path,
                    f"{process} needs exactly one body of kind '{kind}', the file has {count}",
                )
            )
    for n, report in enumerate(c.quarterly_reports):
        if report.from_kind is not None and not c.bodies_of(report.from_kind):
            problems.append(
                Problem(
                    report.clause,
                    f"quarterly_reports[{n}].from_kind",
                    f"no body of kind '{report.from_kind}' to make report '{report.id}'",
                )
            )
    kinds = {r.kind.value for r in c.roles}
    for action, grants in c.permissions.items():
        for m, grant in enumerate(grants):
            form, _, ref = grant.partition(":")
            if form == "kind" and ref not in kinds:
                problems.append(
                    Problem(
                        PROCESSES,
                        f"permissions.{action.value}[{m}]",
                        f"no role of kind '{ref}' is defined: nobody holds '{grant}' "
                        f"for {action.value}",
                    )
                )
    return problems


def cadence_problems(c: Constitution, *, now: datetime | None = None) -> list[Problem]:
    """A cadence that ends (COUNT or UNTIL), or that does not meet in the 12 months from `now`
    (from its first meeting when `now` is not given), leaves its body without meetings."""
    problems: list[Problem] = []
    zone = c.partnership.zone
    for n, body in enumerate(c.bodies):
        if body.cadence is None:
            continue
        clause, path = body.clause or "cadence", f"bodies[{n}].cadence.rrule"
        rule = body.cadence.rrule
        first = body.cadence.first
        first = first if first.tzinfo else first.replace(tzinfo=zone)
        if cadence_ends(rule):
            problems.append(
                Problem(
                    clause,
                    path,
                    f"the cadence of {body.id} ends (COUNT or UNTIL): after its last meeting "
                    "the body would stop meeting; remove COUNT/UNTIL",
                )
            )
            continue
        start = max(first, now) if now is not None else first
        if not meetings_between(rule, first, start, start + CADENCE_HORIZON, zone):
            problems.append(
                Problem(
                    clause,
                    path,
                    f"the cadence of {body.id} never occurs in the 12 months from {start:%Y-%m-%d}",
                )
            )
    return problems


def next_meetings(c: Constitution, after: datetime, count: int = 1) -> dict[str, list[datetime]]:
    """The next `count` meeting starts of every body with a cadence."""
    zone = c.partnership.zone
    return {
        b.id: b.cadence.next_meetings(after, count, zone) for b in c.bodies if b.cadence is not None
    }


def review_due(review: Review, year: int) -> date:
    return date(year, review.due_month, review.due_day)


def constitution_json(c: Constitution) -> dict[str, Any]:
    return c.model_dump(mode="json")
