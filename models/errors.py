"""Errors the domain raises; each carries a message a coordinator can act on."""

from __future__ import annotations


class WctError(Exception):
    """A failure the user can fix: the CLI prints it as one line and exits non-zero."""


class ConstitutionInvalid(WctError):
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


class MembersInvalid(WctError):
    """A members file has bad rows; nothing from it was written."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        noun = "row" if len(problems) == 1 else "rows"
        super().__init__(
            f"{source}: {len(problems)} bad {noun}, nothing imported: "
            + "; ".join(map(str, problems))
        )


class NotInitialised(WctError):
    """The database has no constitution loaded yet."""

    def __init__(self) -> None:
        super().__init__("no constitution loaded: run `wct init` first")
