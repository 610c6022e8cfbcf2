"""Signed links (models/links.py): genuine and in date, or refused with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.links import LinkRefused, Refusal, mint, new_key, verify

KEY = b"k" * 32
NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def token(**kw: object) -> str:
    args: dict[str, object] = {
        "person": "p-1a2b",
        "action": "meeting.apologies",
        "subject": "meeting:12",
        "now": NOW,
    }
    return mint(KEY, **{**args, **kw})  # type: ignore[arg-type]


def refusal(key: bytes, text: str, now: datetime = NOW) -> Refusal:
    with pytest.raises(LinkRefused) as refused:
        verify(key, text, now=now)
    return refused.value.reason


def test_a_genuine_link_says_who_may_do_what_to_what_until_when() -> None:
    link = verify(KEY, token(lifetime=timedelta(days=3)), now=NOW + timedelta(days=2))
    assert (link.person, link.action, link.subject) == ("p-1a2b", "meeting.apologies", "meeting:12")
    assert link.expires == NOW + timedelta(days=3)


def test_each_link_is_distinct() -> None:
    assert verify(KEY, token(), now=NOW).nonce != verify(KEY, token(), now=NOW).nonce


def test_an_expired_link_is_refused_as_expired() -> None:
    assert refusal(KEY, token(lifetime=timedelta(days=1)), NOW + timedelta(days=1)) == "expired"


def test_a_link_signed_with_another_key_is_refused_as_tampered() -> None:
    assert refusal(new_key(), token()) == Refusal.TAMPERED


@pytest.mark.parametrize("text", ["", "nodot", "a.b.c", "x" * 2000 + ".y"])
def test_what_is_not_a_token_is_refused_as_malformed(text: str) -> None:
    assert refusal(KEY, text) == Refusal.MALFORMED


@given(st.integers(min_value=0), st.sampled_from("ABCxyz019-_"))
def test_any_changed_character_is_refused(position: int, char: str) -> None:
    genuine = token(nonce="fixed")
    i = position % len(genuine)
    if genuine[i] == char or genuine[i] == ".":
        return
    changed = genuine[:i] + char + genuine[i + 1 :]
    with pytest.raises(LinkRefused):
        verify(KEY, changed, now=NOW)


def test_a_changed_subject_in_the_payload_is_refused() -> None:
    other = token(subject="meeting:13", nonce="n")
    genuine = token(nonce="n")
    forged = other.split(".")[0] + "." + genuine.split(".")[1]
    assert refusal(KEY, forged) == Refusal.TAMPERED


def test_a_short_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        mint(b"short", person="p", action="a", subject="s", now=NOW)
