"""steps carry their subject and typed parameters

Revision ID: 0002
Revises: 0001

A step names its subject by type and id and keeps its parameters in a JSON column, so nothing
reads them back out of its key. The steps planned before this revision are filled in here, from
their subject and key: the one place where a step's key is ever taken apart.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STEP = sa.table(
    "step",
    sa.column("id", sa.Integer()),
    sa.column("key", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("subject", sa.String()),
    sa.column("subject_type", sa.String()),
    sa.column("subject_id", sa.Integer()),
    sa.column("params", sa.JSON()),
)


def legacy_params(kind: str, key: str) -> dict[str, Any]:
    """The parameters the handlers of revision 0001 read out of a step's key."""
    parts = key.split(":")
    if kind in ("report.reminder", "review.reminder"):
        return {"days": int(parts[-1].removeprefix("reminder-"))}
    if kind == "account.reminder":  # account:ID:reminder:DEADLINE:DAYS
        return {"days": int(parts[-1])}
    if kind == "dispute.deadline":  # dispute:ID:STAGE:deadline
        return {"stage": parts[2]}
    return {}


def upgrade() -> None:
    with op.batch_alter_table("step", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("subject_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(sa.Column("subject_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(STEP.c.id, STEP.c.key, STEP.c.kind, STEP.c.subject)).all()
    for step_id, key, kind, subject in rows:
        subject_type, _, subject_id = subject.partition(":")
        bind.execute(
            STEP.update()
            .where(STEP.c.id == step_id)
            .values(
                subject_type=subject_type,
                subject_id=int(subject_id),
                params=legacy_params(kind, key),
            )
        )
    with op.batch_alter_table("step", schema=None) as batch_op:
        batch_op.alter_column(
            "subject_type",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=16),
            nullable=False,
        )
        batch_op.alter_column("subject_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("params", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("step", schema=None) as batch_op:
        batch_op.drop_column("params")
        batch_op.drop_column("subject_id")
        batch_op.drop_column("subject_type")
