"""6.2: consensus, else simple majority of those present and voting; casting vote on a tie."""

from __future__ import annotations

from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.constitution import Inquorate, Quorum
from models.decision import Decision, InvalidVote, Method, Outcome, Vote, decide
from models.errors import Refused

PEOPLE = [f"p{n}" for n in range(12)]
#: The rule as Wirral's constitution cites it: 6.2, and 18.1 for declarations of interest.
wirral = partial(decide, rule_clause="6.2", interest_clause="18.1")


def test_consensus_carries_without_a_count() -> None:
    d = wirral(present=["a", "b", "c"], votes={}, chair="a", consensus=True)
    assert (d.outcome, d.method) == (Outcome.CARRIED, Method.CONSENSUS)
    assert d.explanation == "Agreed by consensus (6.2)."


@pytest.mark.parametrize(
    ("votes", "outcome", "method", "words"),
    [
        (
            {"a": Vote.FOR, "b": Vote.FOR, "c": Vote.AGAINST},
            Outcome.CARRIED,
            Method.MAJORITY,
            "2 for",
        ),
        (
            {"a": Vote.AGAINST, "b": Vote.AGAINST, "c": Vote.FOR},
            Outcome.REJECTED,
            Method.MAJORITY,
            "",
        ),
        # abstentions are not votes: 1 for, 0 against carries
        (
            {"a": Vote.FOR, "b": Vote.ABSTAIN, "c": Vote.ABSTAIN},
            Outcome.CARRIED,
            Method.MAJORITY,
            "",
        ),
        ({"a": Vote.FOR, "b": Vote.AGAINST}, Outcome.NO_DECISION, Method.NONE, "tied"),
        ({"a": Vote.ABSTAIN}, Outcome.NO_DECISION, Method.NONE, "no votes"),
    ],
)
def test_table(votes: dict[str, Vote], outcome: Outcome, method: Method, words: str) -> None:
    d = decide(present=["a", "b", "c"], votes=votes, chair="a")
    assert (d.outcome, d.method) == (outcome, method)
    assert words in d.explanation


@pytest.mark.parametrize(
    ("cast", "outcome"), [(Vote.FOR, Outcome.CARRIED), (Vote.AGAINST, Outcome.REJECTED)]
)
def test_chair_breaks_a_tie_with_a_second_vote(cast: Vote, outcome: Outcome) -> None:
    votes = {"chair": Vote.FOR, "b": Vote.AGAINST, "c": Vote.FOR, "d": Vote.AGAINST}
    d = decide(present=list(votes), votes=votes, chair="chair", casting_vote=cast)
    assert (d.outcome, d.method, d.casting_vote) == (outcome, Method.CASTING_VOTE, cast)
    assert "casting vote" in d.explanation and "2 for, 2 against" in d.explanation


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"votes": {"x": Vote.FOR}}, "not present"),
        (
            {"votes": {"a": Vote.FOR, "b": Vote.AGAINST, "c": Vote.FOR}, "casting_vote": Vote.FOR},
            "not tied",
        ),
        ({"votes": {}, "casting_vote": Vote.FOR}, "no votes"),
        (
            {"votes": {"a": Vote.FOR, "b": Vote.AGAINST}, "casting_vote": Vote.ABSTAIN},
            "for or against",
        ),
        ({"votes": {"b": Vote.AGAINST}, "consensus": True}, "consensus"),
    ],
)
def test_contradictory_records_are_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidVote, match=words):
        decide(present=["a", "b", "c"], chair="a", **kwargs)  # type: ignore[arg-type]


def test_absent_chair_cannot_cast() -> None:
    with pytest.raises(InvalidVote, match="chair"):
        decide(
            present=["b", "c"],
            votes={"b": Vote.FOR, "c": Vote.AGAINST},
            chair="a",
            casting_vote=Vote.FOR,
        )


def test_nobody_present_is_refused() -> None:
    with pytest.raises(InvalidVote, match="no one present"):
        decide(present=[], votes={}, chair="a")


ballots = st.dictionaries(
    st.sampled_from(PEOPLE), st.sampled_from(list(Vote)), max_size=len(PEOPLE)
)


@given(ballots, st.sampled_from([None, Vote.FOR, Vote.AGAINST]))
def test_casting_vote_is_only_ever_used_on_a_tie(votes: dict[str, Vote], cast: Vote | None) -> None:
    try:
        d = decide(present=PEOPLE, votes=votes, chair=PEOPLE[0], casting_vote=cast)
    except InvalidVote:
        for_, against = (
            list(votes.values()).count(Vote.FOR),
            list(votes.values()).count(Vote.AGAINST),
        )
        assert cast is not None and (for_ != against or for_ == 0)
        return
    if d.method is Method.CASTING_VOTE:
        assert d.votes_for == d.votes_against > 0
        assert d.outcome is (Outcome.CARRIED if cast is Vote.FOR else Outcome.REJECTED)


@given(ballots, st.integers(min_value=0, max_value=5))
def test_abstentions_do_not_count_as_votes(votes: dict[str, Vote], extra: int) -> None:
    """Adding abstainers never changes the outcome."""
    before = decide(present=PEOPLE, votes=votes, chair=PEOPLE[0])
    voters = dict(votes)
    idle = [p for p in PEOPLE if p not in voters][:extra]
    voters.update(dict.fromkeys(idle, Vote.ABSTAIN))
    after = decide(present=PEOPLE, votes=voters, chair=PEOPLE[0])
    assert (after.outcome, after.method) == (before.outcome, before.method)
    assert after.abstentions == before.abstentions + len(idle)


@given(ballots)
def test_majority_matches_the_count(votes: dict[str, Vote]) -> None:
    d = wirral(present=PEOPLE, votes=votes, chair=PEOPLE[0])
    for_, against = d.votes_for, d.votes_against
    assert for_ + against + d.abstentions == len(votes)
    if for_ > against:
        assert d.outcome is Outcome.CARRIED
    elif for_ < against:
        assert d.outcome is Outcome.REJECTED
    else:
        assert d.outcome is Outcome.NO_DECISION
    assert d.explanation.endswith("(6.2).")


def test_a_declared_members_vote_that_would_have_made_the_tie_is_set_aside() -> None:
    """18.1: p1 declared an interest in the item; without p1's vote the motion carries 2-1."""
    votes = {"p0": Vote.FOR, "p2": Vote.FOR, "p1": Vote.AGAINST, "p3": Vote.AGAINST}
    tied = decide(present=PEOPLE, votes=votes, chair="p0")
    assert tied.outcome is Outcome.NO_DECISION
    d = wirral(present=PEOPLE, votes=votes, chair="p0", interested={"p1"})
    assert (d.outcome, d.method, d.votes_for, d.votes_against) == (
        Outcome.CARRIED,
        Method.MAJORITY,
        2,
        1,
    )
    assert d.votes_set_aside == 1
    assert d.explanation.endswith(
        "Not counted: 1 vote of members who declared an interest in this item (18.1)."
    )


def test_a_chair_who_declared_an_interest_may_not_cast() -> None:
    votes = {"p1": Vote.FOR, "p2": Vote.AGAINST}
    with pytest.raises(InvalidVote, match=r"declared an interest .* \(18\.1\)"):
        wirral(present=PEOPLE, votes=votes, chair="p0", casting_vote=Vote.FOR, interested={"p0"})


@given(ballots, st.sets(st.sampled_from(PEOPLE)))
def test_interested_members_count_as_if_they_had_not_voted(
    votes: dict[str, Vote], interested: set[str]
) -> None:
    """18.1, for any show of hands: setting aside the declared members' votes decides exactly as
    if they had not voted, and says how many were set aside."""
    d = wirral(present=PEOPLE, votes=votes, chair="p0", interested=interested)
    rest = {p: v for p, v in votes.items() if p not in interested}
    plain = decide(present=PEOPLE, votes=rest, chair="p0")
    assert (d.outcome, d.method, d.votes_for, d.votes_against) == (
        plain.outcome,
        plain.method,
        plain.votes_for,
        plain.votes_against,
    )
    cast_aside = sum(1 for p, v in votes.items() if p in interested and v is not Vote.ABSTAIN)
    assert d.votes_set_aside == cast_aside
    assert ("(18.1)" in d.explanation) == (cast_aside > 0)


@given(ballots, st.integers(min_value=1, max_value=len(PEOPLE)))
def test_a_quorum_that_is_met_changes_nothing(votes: dict[str, Vote], needed: int) -> None:
    quorum = Quorum(present=needed, clause="9.9")
    assert decide(present=PEOPLE, votes=votes, chair="p0", quorum=quorum) == decide(
        present=PEOPLE, votes=votes, chair="p0"
    )


def test_a_quorum_not_met_refuses_or_records_as_the_constitution_says() -> None:
    votes = {"p0": Vote.FOR}
    with pytest.raises(Refused, match=r"1 present, the quorum is 3 \(9\.9\)"):
        decide(present=["p0"], votes=votes, chair="p0", quorum=Quorum(present=3, clause="9.9"))
    record = Quorum(present=3, clause="9.9", inquorate=Inquorate.RECORD)
    d = decide(present=["p0"], votes=votes, chair="p0", quorum=record)
    assert (d.outcome, d.method) == (Outcome.NO_DECISION, Method.INQUORATE)


@given(
    ballots,
    st.sets(st.sampled_from(PEOPLE)),
    st.sampled_from([None, Vote.FOR, Vote.AGAINST]),
    st.booleans(),
)
def test_without_clauses_the_explanation_cites_none(
    votes: dict[str, Vote], interested: set[str], cast: Vote | None, consensus: bool
) -> None:
    """A constitution that gives this rule no clause: the same decision, explained in the same
    words with no clause cited and no empty brackets; given clauses, each is cited where
    Wirral's were."""

    def decided(rule: str = "", interest: str = "") -> Decision | str:
        try:
            return decide(
                present=PEOPLE,
                votes=votes,
                chair="p1",
                interested=interested,
                casting_vote=cast,
                consensus=consensus,
                rule_clause=rule,
                interest_clause=interest,
            )
        except InvalidVote as refused:
            return str(refused)

    bare, cited = decided(), decided("4.2", "4.5")
    if isinstance(bare, str) or isinstance(cited, str):
        assert isinstance(bare, str) and isinstance(cited, str)
        assert "()" not in bare and "4." not in bare
        assert cited.replace(" (4.5)", "") == bare
        return
    assert (bare.outcome, bare.method, bare.votes_for) == (
        cited.outcome,
        cited.method,
        cited.votes_for,
    )
    assert "()" not in bare.explanation and "4." not in bare.explanation
    assert bare.explanation.endswith(".") and not bare.explanation.endswith("..")
    assert cited.explanation.replace(" (4.2)", "").replace(" (4.5)", "") == bare.explanation
    assert ("(4.5)" in cited.explanation) == (bare.votes_set_aside > 0)
    assert "(4.2)." in cited.explanation
