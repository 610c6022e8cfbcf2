"""The page templates (templates/web/): jinja2's sandbox, autoescaped, strict about undefined
names; and the fields of each one-page form, which the one form template lays out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from models.members_web.forms import Choices, Form
from models.members_web.wording import long_date

TEMPLATES = Path(str(files("templates"))) / "web"


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["long_date"] = long_date
    env.filters["paper_href"] = paper_href
    return env


def paper_href(document: str) -> str:
    """Where a paper is fetched: a stored upload through /papers/ (as a download), else the
    link the submitter gave, if it is a web address; else nowhere."""
    if document.startswith("uploads/"):
        return "/papers/" + document.removeprefix("uploads/")
    if document.startswith(("https://", "http://")):
        return document
    return ""


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


@dataclass(frozen=True)
class Field:
    """One question on a form: `kind` is text, textarea, date, score, choice or file."""

    name: str
    label: str
    kind: str = "text"
    hint: str = ""
    required: bool = True
    options: tuple[tuple[str, str], ...] = ()  # (value, label) for a choice


@dataclass(frozen=True)
class FormPage:
    heading: str
    intro: str
    fields: tuple[Field, ...]
    submit: str
    upload: bool = False
    link: str = ""  # the words of a link to this form (the personal page's "do it now")

    def with_choices(self, choices: Choices) -> FormPage:
        """This form with the options that depend on its subject (the agenda's items)."""
        if not choices:
            return self
        fields = tuple(
            replace(f, options=choices[f.name]) if f.name in choices else f for f in self.fields
        )
        return replace(self, fields=fields)


SCORES = tuple((str(n), str(n)) for n in range(1, 6))

FORM_PAGES: dict[Form, FormPage] = {
    Form.APOLOGIES: FormPage(
        "Send your apologies",
        "If you cannot attend, send your apologies. The chair and the other members will see "
        "them in the minutes, and you will not be reminded about this meeting again.",
        (),
        "Send my apologies",
        link="Send apologies",
    ),
    Form.ITEM: FormPage(
        "Put forward an agenda item",
        "Give a short title for the item. The chair decides the final agenda.",
        (Field("title", "Title of the item", hint="At most 300 characters."),),
        "Put forward this item",
        link="Put forward an item",
    ),
    Form.DECLARE: FormPage(
        "Declare an interest",
        "If you have an interest in an item of this meeting, declare it now. It is "
        "recorded with the meeting's declarations and shown in its minutes. An item not listed "
        "yet appears here once it is on the agenda.",
        (
            Field("item", "The item", "choice"),
            Field(
                "nature",
                "The nature of your interest",
                "textarea",
                hint="At most 1,000 characters.",
            ),
        ),
        "Declare my interest",
        link="Declare an interest",
    ),
    Form.REPORT: FormPage(
        "Submit the quarterly report",
        "Attach the report, or give a link to where it is published. It will be listed on the "
        "agenda of the body it goes to, and the reminders stop.",
        (
            Field(
                "document",
                "The report",
                "file",
                hint="PDF, Word, OpenDocument, Excel or plain text; at most 8 MB.",
                required=False,
            ),
            Field("link", "Or a link to it", required=False, hint="For example on SharePoint."),
        ),
        "Submit the report",
        upload=True,
        link="Submit the report",
    ),
    Form.DEADLINE: FormPage(
        "Agree the deadline, or propose another",
        "The deadline is for your organisation's formal response to the Safeguarding Board.",
        (
            Field(
                "answer",
                "Your answer",
                "choice",
                options=(("agree", "Agree the proposed deadline"), ("counter", "Propose another")),
            ),
            Field(
                "counter",
                "The deadline you propose",
                "date",
                required=False,
                hint="Only if you propose another.",
            ),
        ),
        "Send my answer",
        link="Agree or propose a deadline",
    ),
    Form.RESPONSE: FormPage(
        "Your organisation's formal response",
        "Set out the response or the action your organisation has taken.",
        (Field("response", "The response", "textarea", hint="At most 4,000 characters."),),
        "Submit the response",
        link="Send the formal response",
    ),
    Form.DISPUTE: FormPage(
        "Record the outcome of this stage",
        "As a representative of a party to the dispute, record how this stage ended.",
        (
            Field(
                "resolved",
                "Was the dispute resolved?",
                "choice",
                options=(("yes", "Yes, resolved"), ("no", "No, it moves to the next stage")),
            ),
            Field("note", "A note of the outcome", "textarea"),
        ),
        "Record the outcome",
        link="Record the outcome",
    ),
    Form.APPROVAL: FormPage(
        "Approve or refuse",
        "As chair of the approving body, record its decision.",
        (
            Field(
                "decision",
                "The decision",
                "choice",
                options=(("approve", "Approve"), ("refuse", "Refuse")),
            ),
            Field(
                "note",
                "A note of the decision",
                "textarea",
                required=False,
                hint="Needed when you refuse.",
            ),
        ),
        "Record the decision",
        link="Record the decision",
    ),
    Form.RISK: FormPage(
        "Review the risk",
        "Confirm the scores, or change them. The next review date follows from them.",
        (
            Field("likelihood", "Likelihood (1 rare to 5 almost certain)", "score", options=SCORES),
            Field("impact", "Impact (1 minor to 5 severe)", "score", options=SCORES),
        ),
        "Record the review",
        link="Review the risk",
    ),
}

CHALLENGE_PAGE = FormPage(
    "Challenge the published review",
    "Any interested party may challenge the review while the window is open.",
    (
        Field("name", "Your name", hint="And your organisation, if you write for one."),
        Field("text", "Your challenge", "textarea", hint="At most 2,000 characters."),
    ),
    "Send my challenge",
)
