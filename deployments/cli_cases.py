"""`wct risk|dispute|account|approval|cases`: start and answer event-driven cases by hand."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import date
from typing import Annotated, TypeVar

import typer
from sqlmodel import Session

from deployments.cli_base import JsonFlag, app, errors, print_json, runtime
from models import accountability, instructions
from models.accountability import AccountKind
from models.cases import list_cases
from models.errors import InvalidInput
from models.service import Command

T = TypeVar("T")

risk_app = typer.Typer(
    help="Risks to the CYPP, managed by the Executive (16.1).", no_args_is_help=True
)
dispute_app = typer.Typer(help="Disputes between partners (18.2).", no_args_is_help=True)
account_app = typer.Typer(
    help="The WSCB calls a partner to account (11.5.1).", no_args_is_help=True
)
approval_app = typer.Typer(
    help="Proposals awaiting another body (11.3.5, 21.1.1).", no_args_is_help=True
)
app.add_typer(risk_app, name="risk")
app.add_typer(dispute_app, name="dispute")
app.add_typer(account_app, name="account")
app.add_typer(approval_app, name="approval")

As = Annotated[str, typer.Option("--as", help="Your email (or pseudonym): who is acting.")]
Note = Annotated[str, typer.Option(help="What was said or decided.")]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"'{text}' is not a date (use YYYY-MM-DD)") from None


def _act(ctx: typer.Context, who: str, command: Command[T]) -> T:
    """Run one case command as `who` (all of it, or none of it)."""
    return runtime(ctx).act(who, command)


def _show(result: object, as_json: bool, line: str) -> None:
    if as_json:
        assert is_dataclass(result) and not isinstance(result, type)
        print_json(asdict(result))
    else:
        typer.echo(line)


# --- risks ----------------------------------------------------------------------------------


@risk_app.command("raise")
@errors
def risk_raise(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="What could go wrong in delivering the CYPP.")],
    owner: Annotated[str, typer.Option(help="Email of the member who owns the risk.")],
    likelihood: Annotated[int, typer.Option(help="1 (rare) to 5 (almost certain).")],
    impact: Annotated[int, typer.Option(help="1 (minor) to 5 (severe).")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Record a risk; at the constitution's threshold it goes straight to the Board."""
    r = _act(
        ctx,
        who,
        instructions.RaiseRisk(title=title, owner=owner, likelihood=likelihood, impact=impact),
    )
    verb = "raised" if r.created else "already recorded"
    _show(r, as_json, f"risk #{r.risk_id} {verb}: score {r.score}, {r.status}")


@risk_app.command("review")
@errors
def risk_review(
    ctx: typer.Context,
    risk_id: Annotated[int, typer.Argument(help="Risk number.")],
    likelihood: Annotated[int, typer.Option(help="1 to 5.")],
    impact: Annotated[int, typer.Option(help="1 to 5.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Record the Executive's review of a risk (new scores, next review date)."""
    r = _act(
        ctx, who, instructions.ReviewRisk(risk_id=risk_id, likelihood=likelihood, impact=impact)
    )
    _show(r, as_json, f"risk #{r.risk_id} reviewed: score {r.score}, {r.status}")


@risk_app.command("escalate")
@errors
def risk_escalate(
    ctx: typer.Context,
    risk_id: Annotated[int, typer.Argument(help="Risk number.")],
    reason: Annotated[str, typer.Option(help="Why the Executive escalates it.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """The Executive escalates a risk to the Board for formal assessment."""
    r = _act(ctx, who, instructions.EscalateRisk(risk_id=risk_id, reason=reason))
    _show(r, as_json, f"risk #{r.risk_id} escalated to the Board")


@risk_app.command("assess")
@errors
def risk_assess(
    ctx: typer.Context,
    risk_id: Annotated[int, typer.Argument(help="Risk number.")],
    assessment: Annotated[str, typer.Option(help="The Board's formal assessment.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Record the Board's formal assessment of an escalated risk."""
    r = _act(ctx, who, instructions.AssessRisk(risk_id=risk_id, assessment=assessment))
    _show(r, as_json, f"risk #{r.risk_id} assessed by the Board")


@risk_app.command("close")
@errors
def risk_close(
    ctx: typer.Context,
    risk_id: Annotated[int, typer.Argument(help="Risk number.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Close a risk that no longer needs managing."""
    r = _act(ctx, who, instructions.CloseRisk(risk_id=risk_id))
    _show(r, as_json, f"risk #{r.risk_id} closed")


# --- disputes -------------------------------------------------------------------------------


@dispute_app.command("open")
@errors
def dispute_open(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="What the dispute is about.")],
    party: Annotated[list[str], typer.Option(help="Organisation id of a party; give two or more.")],
    who: As,
    note: Annotated[str, typer.Option(help="Background.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Open a dispute at informal discussion, with its deadline."""
    r = _act(ctx, who, instructions.OpenDispute(title=title, parties=party, note=note))
    verb = "opened" if r.created else "is already open"
    _show(r, as_json, f"dispute #{r.dispute_id} {verb}: {r.stage} until {r.deadline}")


@dispute_app.command("outcome")
@errors
def dispute_outcome(
    ctx: typer.Context,
    dispute_id: Annotated[int, typer.Argument(help="Dispute number.")],
    stage: Annotated[
        str, typer.Option(help="The stage you are answering (the constitution's ladder).")
    ],
    resolved: Annotated[bool, typer.Option("--resolved/--unresolved", help="Was it resolved?")],
    note: Note,
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Record the outcome of the current stage: resolved closes it, unresolved escalates it."""
    r = _act(
        ctx,
        who,
        instructions.RecordDisputeOutcome(
            dispute_id=dispute_id, stage=stage, resolved=resolved, note=note
        ),
    )
    _show(r, as_json, f"dispute #{r.dispute_id}: now {r.stage}" + _until(r.deadline))


def _until(day: date | None) -> str:
    return f" until {day}" if day else ""


@dispute_app.command("adr")
@errors
def dispute_adr(
    ctx: typer.Context,
    dispute_id: Annotated[int, typer.Argument(help="Dispute number.")],
    provider: Annotated[str, typer.Option(help="The ADR provider.")],
    resolved: Annotated[bool, typer.Option("--resolved/--unresolved", help="The result.")],
    note: Note,
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Record the alternative dispute resolution and its result; the dispute closes."""
    r = _act(
        ctx,
        who,
        instructions.RecordAdr(
            dispute_id=dispute_id, provider=provider, resolved=resolved, note=note
        ),
    )
    _show(r, as_json, f"dispute #{r.dispute_id} closed: {r.outcome}")


@dispute_app.command("declare")
@errors
def dispute_declare(
    ctx: typer.Context,
    dispute_id: Annotated[int, typer.Argument(help="Dispute number.")],
    nature: Annotated[str, typer.Option(help="The interest or conduct matter (18.1).")],
    who: As,
) -> None:
    """Declare an interest in a dispute (18.1)."""
    n = _act(ctx, who, instructions.DeclareDisputeInterest(dispute_id=dispute_id, nature=nature))
    typer.echo(f"declaration #{n} recorded on dispute #{dispute_id}")


# --- calls to account -----------------------------------------------------------------------


def _account_line(r: accountability.AccountResult) -> str:
    agreed = f", agreed deadline {r.agreed_deadline}" if r.agreed_deadline else ""
    proposed = (
        f", proposed deadline {r.proposed_deadline}"
        if r.status is accountability.AccountStatus.NEGOTIATING
        else ""
    )
    waiting = f"; waiting on the {r.waiting_on}" if r.waiting_on else ""
    return f"call to account #{r.case_id}: {r.status.value}{proposed}{agreed}{waiting}"


@account_app.command("open")
@errors
def account_open(
    ctx: typer.Context,
    organisation: Annotated[str, typer.Option(help="Organisation id called to account.")],
    evidence: Annotated[str, typer.Option(help="Evidence that children are not safeguarded.")],
    deadline: Annotated[str, typer.Option(help="Proposed response deadline, YYYY-MM-DD.")],
    who: As,
    evidence_request: Annotated[
        bool, typer.Option(help="A request for evidence of rigour in commissioning instead.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The WSCB calls a partner to account and proposes a response deadline."""
    kind = AccountKind.EVIDENCE_REQUEST if evidence_request else AccountKind.CALL_TO_ACCOUNT
    day = _day(deadline)
    r = _act(
        ctx,
        who,
        instructions.OpenCallToAccount(
            organisation=organisation, evidence=evidence, proposed_deadline=day, kind=kind
        ),
    )
    _show(r, as_json, _account_line(r))


@account_app.command("agree")
@errors
def account_agree(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="Case number.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Accept the other side's proposed deadline."""
    r = _act(ctx, who, instructions.AnswerDeadline(case_id=case_id, accept=True))
    _show(r, as_json, _account_line(r))


@account_app.command("counter")
@errors
def account_counter(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="Case number.")],
    deadline: Annotated[str, typer.Option(help="Your proposed deadline, YYYY-MM-DD.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Counter-propose a deadline, within the constitution's bounds."""
    day = _day(deadline)
    r = _act(ctx, who, instructions.AnswerDeadline(case_id=case_id, accept=False, counter=day))
    _show(r, as_json, _account_line(r))


@account_app.command("respond")
@errors
def account_respond(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="Case number.")],
    response: Annotated[str, typer.Option(help="The formal response or action.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Record the partner's formal response or action."""
    r = _act(ctx, who, instructions.RespondToCall(case_id=case_id, response=response))
    _show(r, as_json, _account_line(r))


@account_app.command("accept")
@errors
def account_accept(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="Case number.")],
    note: Note,
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """The WSCB accepts the response and closes the case."""
    r = _act(ctx, who, instructions.JudgeResponse(case_id=case_id, accept=True, note=note))
    _show(r, as_json, _account_line(r))


@account_app.command("reopen")
@errors
def account_reopen(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="Case number.")],
    note: Note,
    deadline: Annotated[str, typer.Option(help="New proposed deadline, YYYY-MM-DD.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """The WSCB reopens the case with a new proposed deadline."""
    day = _day(deadline)
    r = _act(
        ctx,
        who,
        instructions.JudgeResponse(case_id=case_id, accept=False, note=note, new_deadline=day),
    )
    _show(r, as_json, _account_line(r))


# --- approvals ------------------------------------------------------------------------------


@approval_app.command("request")
@errors
def approval_request(
    ctx: typer.Context,
    gate: Annotated[str, typer.Option(help="Approval gate id from the constitution.")],
    title: Annotated[str, typer.Option(help="The proposal.")],
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Ask the approving body; the request waits on its next agenda."""
    r = _act(ctx, who, instructions.RequestApproval(gate=gate, title=title))
    verb = "requested" if r.created else "already requested"
    _show(r, as_json, f"approval #{r.request_id} {verb}: waiting on {r.approver_body}")


@approval_app.command("decide")
@errors
def approval_decide(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number.")],
    approve: Annotated[bool, typer.Option("--approve/--refuse", help="The body's decision.")],
    note: Note,
    who: As,
    as_json: JsonFlag = False,
) -> None:
    """Record the approving body's decision."""
    r = _act(
        ctx, who, instructions.DecideApproval(request_id=request_id, approve=approve, note=note)
    )
    _show(r, as_json, f"approval #{r.request_id}: {r.status}")


@app.command("cases")
@errors
def cases(
    ctx: typer.Context,
    only_open: Annotated[bool, typer.Option("--open", help="Only cases still open.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Every case with its stage, whom it waits on, and until when."""
    rt = runtime(ctx)
    with Session(rt.ready_engine()) as session:
        views = list_cases(session, only_open=only_open)
    if as_json:
        print_json([v.as_dict() for v in views])
        return
    if not views:
        typer.echo("no cases" + (" open" if only_open else ""))
        return
    rows = [("CASE", "STAGE", "WAITING ON", "UNTIL", "TITLE")]
    for v in views:
        rows.append((f"{v.kind} #{v.id}", v.stage, v.waiting_on or "-", v.until or "-", v.title))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)]
        typer.echo("  ".join([*cells, row[4]]))
