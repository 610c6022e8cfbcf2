"""What each due step of a case does when its time comes (a timer run or the reconcile sweep)."""

from __future__ import annotations

from collections.abc import Callable

from models import accountability, disputes, risks
from models.disputes import DisputeStage
from models.errors import WctError
from models.tables import Step
from models.uow import UnitOfWork

Handler = Callable[[UnitOfWork, Step], bool]


def _case_id(step: Step) -> int:
    return int(step.subject.split(":", 1)[1])


def _dispute_deadline(uow: UnitOfWork, step: Step) -> bool:
    stage = DisputeStage(step.key.split(":")[2])
    return disputes.deadline_passed(uow, dispute_id=_case_id(step), stage=stage)


def _account_reminder(uow: UnitOfWork, step: Step) -> bool:
    return accountability.remind(uow, case_id=_case_id(step), key=step.key.rsplit(":", 2)[-2])


HANDLERS: dict[str, Handler] = {
    "dispute.deadline": _dispute_deadline,
    "account.stalemate": lambda uow, step: accountability.stalemate(uow, case_id=_case_id(step)),
    "account.reminder": _account_reminder,
    "account.overdue": lambda uow, step: accountability.deadline_passed(uow, case_id=_case_id(step)),
    "risk.review": lambda uow, step: risks.chase_review(uow, risk_id=_case_id(step)),
}


def act_on_case_step(uow: UnitOfWork, step: Step) -> bool:
    """Run the step's rule; True if it changed anything. A satisfied step is a no-op."""
    handler = HANDLERS.get(step.kind)
    if handler is None:
        raise WctError(f"no handler for step kind '{step.kind}' ({step.key})")
    return handler(uow, step)
