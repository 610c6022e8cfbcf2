"""Is the running system doing its job? The rule that reads facts gathered from the Prefect server
and the outbox and says what is wrong, so `wct status` and the `wct up` console agree.

Pure: the facts are gathered elsewhere (deployments/health.py); here only the judgement, with `now`
passed in, so a test can ask "what would this look like ten minutes later" without waiting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

#: A deployment with a schedule gets its first runs within seconds of being registered (Prefect's
#: recent-deployments scheduler loops every 5 s); after this long without any, the scheduler is
#: not working.
SCHEDULER_GRACE = timedelta(minutes=3)
#: Due messages older than this mean the dispatcher is not running (it is served every minute).
OUTBOX_STALE = timedelta(minutes=10)


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class ScheduledDeployment:
    """A deployment on an interval schedule: the scheduler should always keep runs ahead of it."""

    name: str
    every_seconds: float
    registered_at: datetime
    runs_ahead: int


@dataclass(frozen=True)
class ChannelDown:
    """A delivery channel whose circuit breaker is open (models/outbox.py `Breaker`)."""

    channel: str  # "SMTP mail.example.org:587", "Teams prod-01.westeurope.logic.azure.com"
    since: datetime | None
    refused: int
    next_probe_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class RuntimeFacts:
    """What was observed, at one moment, of the server, its scheduler, the dispatcher and outbox."""

    api_url: str | None
    server_answers: bool
    log: str | None = None
    scheduled: list[ScheduledDeployment] = field(default_factory=list)
    last_runs_created_at: datetime | None = None
    last_dispatch_at: datetime | None = None
    oldest_due_unsent: datetime | None = None
    due_unsent: int = 0
    unreadable: str | None = None  # the server answered /health but its state could not be read
    web_url: str | None = None  # where the members' pages should answer (WCT_WEB_URL)
    web_answers: bool | None = None  # None: not looked at
    channels_down: list[ChannelDown] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    level: Level
    what: str
    message: str
    about: str = ""  # what it is about (a deployment), so a repeated finding is recognised

    @property
    def identity(self) -> str:
        return f"{self.what}:{self.about}"


@dataclass(frozen=True)
class RuntimeHealth:
    facts: RuntimeFacts
    findings: list[Finding]

    @property
    def level(self) -> Level:
        levels = {f.level for f in self.findings}
        if Level.ERROR in levels:
            return Level.ERROR
        return Level.WARNING if Level.WARNING in levels else Level.OK

    @property
    def scheduler_ok(self) -> bool | None:
        """None when there is nothing to judge by (no server, or nothing on a schedule yet)."""
        if not self.facts.server_answers or not self.facts.scheduled:
            return None
        return not any(f.what == "scheduler" and f.level is Level.ERROR for f in self.findings)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        f = self.facts
        age = (now - f.oldest_due_unsent).total_seconds() if f.oldest_due_unsent else None
        return {
            "level": self.level.value,
            "server": {"api_url": f.api_url, "answers": f.server_answers, "log": f.log},
            "scheduler": {
                "ok": self.scheduler_ok,
                "last_runs_created_at": _iso(f.last_runs_created_at),
                "deployments": [
                    {**asdict(d), "registered_at": _iso(d.registered_at)} for d in f.scheduled
                ],
            },
            "dispatch": {"last_completed_at": _iso(f.last_dispatch_at)},
            "web": {"url": f.web_url, "answers": f.web_answers},
            "outbox": {
                "due_unsent": f.due_unsent,
                "oldest_due_unsent_age_seconds": round(age) if age is not None else None,
            },
            "channels_down": [
                asdict(c) | {"since": _iso(c.since), "next_probe_at": _iso(c.next_probe_at)}
                for c in f.channels_down
            ],
            "findings": [asdict(x) | {"level": x.level.value} for x in self.findings],
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _ago(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def assess(facts: RuntimeFacts, now: datetime, *, expected_up: bool = False) -> RuntimeHealth:
    """Judge the facts: a server that `wct up` says it runs but does not answer, a scheduler that
    creates no runs, members' pages that `wct up` serves but do not answer, a dispatcher that
    leaves due messages waiting, a delivery channel whose breaker is open. A stopped system with
    nothing due is not a fault: `wct status` before the first `wct up` is fine."""
    findings: list[Finding] = []
    log = f" (server log: {facts.log})" if facts.log else ""
    if not facts.server_answers:
        if expected_up:
            findings.append(
                Finding(
                    Level.ERROR,
                    "server",
                    f"the Prefect server at {facts.api_url} does not "
                    f"answer although `wct up` is running{log}",
                )
            )
    elif facts.unreadable:
        findings.append(
            Finding(
                Level.ERROR,
                "server",
                f"the Prefect server at {facts.api_url} answers but "
                f"its state could not be read: {facts.unreadable}{log}",
            )
        )
    else:
        for d in facts.scheduled:
            if d.runs_ahead == 0 and now - d.registered_at > SCHEDULER_GRACE:
                findings.append(
                    Finding(
                        Level.ERROR,
                        "scheduler",
                        f"the Prefect scheduler is not creating runs: '{d.name}' runs every "
                        f"{d.every_seconds:g} s but has no run scheduled, "
                        f"{_ago(now, d.registered_at)} after it was registered{log}",
                        d.name,
                    )
                )
    if expected_up and facts.web_url is not None and facts.web_answers is False:
        findings.append(
            Finding(
                Level.ERROR,
                "web",
                f"the members' pages at {facts.web_url} do not answer although `wct up` is "
                "running: the links in members' messages do not work (is WCT_WEB_URL right, "
                "or its port taken?)",
            )
        )
    if facts.oldest_due_unsent is not None and now - facts.oldest_due_unsent > OUTBOX_STALE:
        running = " although the server is up" if facts.server_answers else ""
        findings.append(
            Finding(
                Level.ERROR if facts.server_answers else Level.WARNING,
                "outbox",
                f"{facts.due_unsent} due message(s) not sent; the oldest has waited "
                f"{_ago(now, facts.oldest_due_unsent)}{running}: is the dispatcher running "
                "(`wct up`, or `wct dispatch`)?",
            )
        )
    for down in facts.channels_down:
        since = f" since {down.since:%H:%M}" if down.since else ""
        retry = f"; next try at {down.next_probe_at:%H:%M:%S}" if down.next_probe_at else ""
        reason = f" (last: {down.last_error})" if down.last_error else ""
        findings.append(
            Finding(
                Level.ERROR,
                "channel",
                f"{down.channel} unreachable{since} ({down.refused} attempts refused): its "
                f"messages wait{retry}{reason}",
                down.channel,
            )
        )
    return RuntimeHealth(facts, findings)
