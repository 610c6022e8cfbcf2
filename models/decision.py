"""6.2: how a body reaches a decision on a motion; 18.1: a member who declared an interest in
the item does not count among those voting on it; a quorum, where the agreement sets one."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from models.constitution import Inquorate, Quorum
from models.errors import InvalidInput, Refused, cited


class Vote(StrEnum):
    """A show of hands: for, against, or abstain (an abstention is not a vote cast)."""

    FOR = "for"
    AGAINST = "against"
    ABSTAIN = "abstain"


class Outcome(StrEnum):
    CARRIED = "carried"
    REJECTED = "rejected"
    NO_DECISION = "no_decision"


class Method(StrEnum):
    CONSENSUS = "consensus"
    MAJORITY = "majority"
    CASTING_VOTE = "casting_vote"
    NONE = "none"
    INQUORATE = "inquorate"


class InvalidVote(InvalidInput):
    """The recorded votes contradict each other or the meeting's attendance."""


@dataclass(frozen=True)
class Decision:
    """What 6.2 made of a motion, with the counts and a one-line explanation for the minutes."""

    outcome: Outcome
    method: Method
    votes_for: int
    votes_against: int
    abstentions: int
    casting_vote: Vote | None
    explanation: str
    votes_set_aside: int = 0


def decide(
    *,
    present: Collection[str],
    votes: Mapping[str, Vote],
    chair: str,
    consensus: bool = False,
    casting_vote: Vote | None = None,
    interested: Collection[str] = (),
    quorum: Quorum | None = None,
    rule_clause: str = "",
    interest_clause: str = "",
) -> Decision:
    """6.2: consensus where possible; else a simple majority of those present and voting;
    on a tie the person chairing may give a second, casting vote; otherwise no decision.

    `consensus` is the chair's record that the meeting agreed without a vote. Voters must be
    present; abstentions are not votes cast; a casting vote is accepted only on a tie of at
    least one vote each way and only from a chair who is present.

    18.1: the votes of `interested` members (who declared an interest in the item) are set
    aside before counting, and the explanation says so; a chair who declared one may not cast.

    Quorum: with fewer present than the body's `quorum`, the decision is refused (citing the
    quorum's clause) or, where the constitution says so, recorded as inquorate: no decision.

    An explanation cites `rule_clause` (the clause of this rule: Wirral's 6.2) and, for votes
    set aside, `interest_clause` (Wirral's 18.1); an empty one is not cited.
    """
    if not present:
        raise InvalidVote("no one present: a motion cannot be decided")
    if quorum is not None and len(present) < quorum.present:
        short = f"{len(present)} present, the quorum is {quorum.present} ({quorum.clause})"
        if quorum.inquorate is Inquorate.REFUSE:
            raise Refused(f"the meeting is inquorate: {short}", clause=quorum.clause)
        return Decision(
            Outcome.NO_DECISION,
            Method.INQUORATE,
            0,
            0,
            0,
            None,
            f"No decision: the meeting was inquorate, {short}.",
        )
    absent_voters = sorted(set(votes) - set(present))
    if absent_voters:
        raise InvalidVote(f"votes recorded for people not present: {', '.join(absent_voters)}")
    if chair not in present and casting_vote is not None:
        raise InvalidVote(f"casting vote recorded but the chair ({chair}) is not present")
    if casting_vote is Vote.ABSTAIN:
        raise InvalidVote("a casting vote must be for or against")
    if casting_vote is not None and chair in interested:
        raise InvalidVote(
            cited(
                f"the chair ({chair}) declared an interest in this item and may not cast a vote",
                interest_clause,
            )
        )
    set_aside = sorted(p for p in votes if p in interested and votes[p] is not Vote.ABSTAIN)
    votes = {p: v for p, v in votes.items() if p not in interested}
    votes_for = sum(1 for v in votes.values() if v is Vote.FOR)
    against = sum(1 for v in votes.values() if v is Vote.AGAINST)
    abstain = sum(1 for v in votes.values() if v is Vote.ABSTAIN)

    def rule(sentence: str) -> str:
        """`sentence`, citing the rule's clause, with its full stop."""
        return f"{cited(sentence, rule_clause)}."

    def result(outcome: Outcome, method: Method, why: str, cast: Vote | None = None) -> Decision:
        if set_aside:
            count = f"{len(set_aside)} vote{'s' if len(set_aside) > 1 else ''}"
            why += " " + cited(
                f"Not counted: {count} of members who declared an interest in this item",
                interest_clause,
            )
            why += "."
        return Decision(outcome, method, votes_for, against, abstain, cast, why, len(set_aside))

    if consensus:
        if against or casting_vote is not None:
            raise InvalidVote("consensus recorded, but so were votes against or a casting vote")
        return result(Outcome.CARRIED, Method.CONSENSUS, rule("Agreed by consensus"))
    tally = f"{votes_for} for, {against} against, {abstain} abstaining"
    if votes_for != against:
        if casting_vote is not None:
            raise InvalidVote(f"casting vote recorded but the vote was not tied ({tally})")
        won = votes_for > against
        return result(
            Outcome.CARRIED if won else Outcome.REJECTED,
            Method.MAJORITY,
            rule(
                f"{'Carried' if won else 'Rejected'} by simple majority of those present and "
                f"voting: {tally}"
            ),
        )
    if votes_for == 0:
        if casting_vote is not None:
            raise InvalidVote("casting vote recorded but no votes were cast: there is no tie")
        return result(
            Outcome.NO_DECISION, Method.NONE, rule(f"No decision: no votes were cast ({tally})")
        )
    if casting_vote is None:
        return result(
            Outcome.NO_DECISION,
            Method.NONE,
            rule(f"No decision: tied {tally}, and the chair gave no casting vote"),
        )
    won = casting_vote is Vote.FOR
    return result(
        Outcome.CARRIED if won else Outcome.REJECTED,
        Method.CASTING_VOTE,
        rule(
            f"{'Carried' if won else 'Rejected'} on the chair's casting vote after a tie: " + tally
        ),
        casting_vote,
    )
