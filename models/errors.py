"""Errors the domain raises; each carries a message a coordinator can act on."""

from __future__ import annotations

import re


class WctError(Exception):
    """A failure the user can fix: the CLI prints it as one line and exits non-zero (1, or the
    code of one of the kinds below)."""


class InvalidInput(WctError):
    """What was given can never be right as given: a bad date or period, empty or too-long text,
    a number out of range, arguments that contradict each other, a file that is not readable."""


class NotFound(WctError):
    """What was named does not exist: no such meeting, report, review, member, case, body, ..."""


class Refused(WctError):
    """The request is well formed and names what exists, but the rules say no (now, or to this
    person). `clause` is the clause of the agreement whose rule refuses, when the constitution
    gives one (none or "": the message cites none); the message cites it, after `agreement`
    (what the partnership calls its agreement where space is short, as `Constitution.refused`
    and models/permissions.py `require` give it; none: the clause alone)."""

    def __init__(
        self, message: str, *, clause: str | None = None, agreement: str | None = None
    ) -> None:
        self.clause = clause or None
        super().__init__(cited(message, self.clause, agreement=agreement))


def cited(text: str, clause: str | None, *, agreement: str | None = None) -> str:
    """`text (clause)` (`text (agreement clause)` given the agreement's name): `text` citing
    `clause`; `text` alone when there is no clause (the constitution gives none: never an
    empty `()`) or `text` already names it. The one rule for putting a clause after words a
    user reads."""
    if not clause or _cites(text, clause):
        return text
    return f"{text} ({agreement} {clause})" if agreement else f"{text} ({clause})"


def _cites(message: str, clause: str) -> bool:
    """Whether `message` already names `clause` (whole: 7.2 is not in 17.2 or 7.2.1)."""
    return re.search(rf"(?<![\d.]){re.escape(clause)}(?!\.?\d)", message) is not None


class ConstitutionInvalid(InvalidInput):
    """The constitution breaks the schema or one of the MoU's structural rules."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun}: " + "; ".join(map(str, problems)))


class Problem:
    """One failure in an input file: which rule (MoU clause or 'schema'), where, and what."""

    __slots__ = ("clause", "path", "line", "message")

    def __init__(self, clause: str, path: str, message: str, line: int | None = None) -> None:
        self.clause = clause
        self.path = path
        self.message = message
        self.line = line

    def where(self) -> str:
        parts = [f"line {self.line}" if self.line else "", self.path]
        return ", ".join(p for p in parts if p) or "(whole file)"

    def __str__(self) -> str:
        return f"[{self.clause}] {self.where()}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def as_dict(self) -> dict[str, object]:
        return {
            "clause": self.clause,
            "path": self.path,
            "line": self.line,
            "message": self.message,
        }


class MembersInvalid(InvalidInput):
    """A members file has bad rows; nothing from it was written."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        noun = "row" if len(problems) == 1 else "rows"
        super().__init__(
            f"{source}: {len(problems)} bad {noun}, nothing imported: "
            + "; ".join(map(str, problems))
        )


class NotInitialised(NotFound):
    """The database has no constitution loaded yet (or no tables at all)."""

    def __init__(self, message: str = "no constitution loaded: run `wct init` first") -> None:
        super().__init__(message)
