"""Every template set renders; user data cannot inject markup, template syntax or headers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifications import render as render_module
from notifications.contexts import CONTEXTS, ContextInvalid, validate_context
from notifications.render import HeaderInjection, TemplateFailed, kinds, render
from notifications.samples import SAMPLES, sample

REQUIRED = {
    "meeting_notice",
    "call_for_items",
    "agenda",
    "reminder",
    "report_request",
    "report_overdue",
    "review_due",
    "risk_escalated",
    "dispute_stage",
    "call_to_account",
    "approval_request",
    "meeting_cancelled",
}

HOSTILE = "<script>alert(1)</script> {{ 7 * 7 }} {% raw %}"


def test_every_kind_has_a_template_set_a_context_model_and_a_sample() -> None:
    assert REQUIRED <= set(kinds())
    assert set(kinds()) == set(CONTEXTS) == set(SAMPLES)
    for kind in kinds():
        folder = render_module.TEMPLATES / kind
        assert sorted(p.name for p in folder.iterdir()) == sorted(render_module.PARTS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_kind_says_what_by_when_which_clause_and_what_to_do(kind: str) -> None:
    context = validate_context(kind, sample(kind, "Pat Doe"))
    out = render(kind, context)
    assert out.subject and "\n" not in out.subject
    for body in (out.text, out.html):
        assert "Pat Doe" in body
        assert f"clause {context.clause}" in body
        assert "What to do:" in body
    assert context.action.split()[0] in out.text
    assert f"MoU clause {context.clause.replace('.', '.')}" in out.teams
    assert out.html.lstrip().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_a_message_sent_late_says_so_once_and_on_time_not_at_all(kind: str) -> None:
    on_time = render(kind, validate_context(kind, sample(kind, "Pat Doe")))
    late = render(
        kind, validate_context(kind, {**sample(kind, "Pat Doe"), "was_due": "2026-11-19T09:00"})
    )
    said = "sent late: it was due on Thursday 19 November 2026 at 09:00."
    for part in ("text", "html", "teams"):
        assert "sent late" not in getattr(on_time, part)
        assert getattr(late, part).replace("</strong>", "").replace("**", "").count(said) == 1
    assert late.subject == on_time.subject


def test_dates_are_shown_as_given_in_london_time() -> None:
    out = render("report_request", validate_context("report_request", sample("report_request")))
    assert "due Tuesday 5 January 2027" in out.subject
    notice = render("meeting_notice", validate_context("meeting_notice", sample("meeting_notice")))
    assert "Tuesday 12 January 2027 at 10:00 to 12:00" in notice.text


def test_user_data_is_escaped_in_html_and_never_evaluated() -> None:
    context = validate_context(
        "risk_escalated", {**sample("risk_escalated", HOSTILE), "title": HOSTILE}
    )
    out = render("risk_escalated", context)
    assert "<script>" not in out.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert "{{ 7 * 7 }}" in out.html and "49" not in out.html
    assert "{{ 7 * 7 }}" in out.text  # plain text shows it as typed
    assert "{% raw %}" in out.subject
    assert "\\<script\\>" in out.teams  # markdown: shown, not interpreted


def test_line_breaks_in_a_subject_are_refused_with_a_clear_error() -> None:
    context = validate_context(
        "risk_escalated", {**sample("risk_escalated"), "title": "Risk\r\nBcc: all@example.org"}
    )
    with pytest.raises(HeaderInjection, match="subject of 'risk_escalated' contains a line break"):
        render("risk_escalated", context)


def test_a_context_that_does_not_fit_its_kind_is_named() -> None:
    bad = {k: v for k, v in sample("agenda").items() if k != "items"}
    with pytest.raises(ContextInvalid, match="context for 'agenda' is invalid: items: Field"):
        validate_context("agenda", bad)
    with pytest.raises(ContextInvalid, match="unknown message kind 'nope'"):
        validate_context("nope", {})


@pytest.fixture
def editable_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the templates an admin may edit, used instead of the shipped ones."""
    copy = tmp_path / "templates"
    shutil.copytree(render_module.TEMPLATES, copy)
    monkeypatch.setattr(render_module, "TEMPLATES", copy)
    render_module.environment.cache_clear()
    yield copy
    render_module.environment.cache_clear()


def test_an_undefined_variable_names_the_template_and_line(editable_templates: Path) -> None:
    path = editable_templates / "reminder" / "body.txt.j2"
    path.write_text("Dear {{ recipient }},\n\nDue {{ deadline_typo }}\n")
    with pytest.raises(TemplateFailed) as caught:
        render("reminder", validate_context("reminder", sample("reminder")))
    assert str(caught.value) == (
        "template reminder/body.txt.j2 line 3: 'deadline_typo' is undefined"
    )


def test_a_syntax_error_names_the_template_and_line(editable_templates: Path) -> None:
    path = editable_templates / "agenda" / "body.html.j2"
    path.write_text("<p>ok</p>\n<p>{% if %}</p>\n")
    with pytest.raises(TemplateFailed, match=r"template agenda/body.html.j2 line 2: syntax error"):
        render("agenda", validate_context("agenda", sample("agenda")))


def test_the_sandbox_refuses_reaching_into_python(editable_templates: Path) -> None:
    path = editable_templates / "reminder" / "subject.txt.j2"
    path.write_text("{{ what.__class__.__mro__[1].__subclasses__() }}\n")
    with pytest.raises(TemplateFailed, match="reminder/subject.txt.j2"):
        render("reminder", validate_context("reminder", sample("reminder")))


def test_a_notice_with_a_raised_sequence_says_it_replaces_the_earlier_one() -> None:
    first = render("meeting_notice", validate_context("meeting_notice", sample("meeting_notice")))
    moved = validate_context("meeting_notice", {**sample("meeting_notice"), "ical_sequence": 1})
    second = render("meeting_notice", moved)
    assert not first.subject.startswith("Updated:")
    assert second.subject.startswith("Updated: ")
    assert "replaces the earlier one" in second.text


BRAND = {
    "partnership": "Anytown Children's Partnership",
    "agreement": "Anytown Children's Partnership Agreement",
    "agreement_short": "Partnership Agreement",
    "contact_name": "Casey Coordinator",
    "contact_email": "casey@anytown.example",
    "logo_url": "https://anytown.example/logo.png",
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_kind_shows_the_partnerships_agreement_contact_and_logo(kind: str) -> None:
    out = render(kind, validate_context(kind, {**sample(kind), "brand": BRAND}))
    clause = validate_context(kind, sample(kind)).clause
    for body in (out.text, out.html):
        assert f"clause {clause} of the Anytown Children&#39;s Partnership Agreement" in (
            body.replace("'", "&#39;")
        )
        assert "Memorandum of Understanding" not in body
        assert "casey@anytown.example" in body
    assert f"_Partnership Agreement clause {clause}_" in out.teams and "MoU" not in out.teams
    logo = '<img src="https://anytown.example/logo.png" alt="Anytown Children&#39;s Partnership"'
    assert logo in out.html and "<img" not in out.text


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_a_message_without_a_clause_shows_no_clause_line(kind: str) -> None:
    out = render(kind, validate_context(kind, {**sample(kind), "clause": ""}))
    assert "clause" not in out.text + out.html + out.teams
    assert "on behalf of the partnership" in out.text and "<img" not in out.html


def test_a_logo_that_is_not_https_is_refused() -> None:
    with pytest.raises(ContextInvalid, match="logo_url"):
        validate_context(
            "reminder",
            {**sample("reminder"), "brand": {**BRAND, "logo_url": "http://x.example/l.png"}},
        )
