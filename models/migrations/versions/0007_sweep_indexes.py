"""sweep indexes

Revision ID: 0007
Revises: 0006

The sweep's scan (pending steps due by now), the timers' horizon and the overdue list ask for
rows by status and time: `step` gets one (status, due_at) index, which replaces its status index
(a prefix of it); a late policy's look at the other steps of the same subject gets a
(subject_type, subject_id) index; and `report` and `review` get an index on their status (the
overdue ones). Only indexes: no row changes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_step_status_due_at", "step", ["status", "due_at"], unique=False)
    op.drop_index("ix_step_status", table_name="step")
    op.create_index(
        "ix_step_subject_type_subject_id", "step", ["subject_type", "subject_id"], unique=False
    )
    op.create_index("ix_report_status", "report", ["status"], unique=False)
    op.create_index("ix_review_status", "review", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_review_status", table_name="review")
    op.drop_index("ix_report_status", table_name="report")
    op.drop_index("ix_step_subject_type_subject_id", table_name="step")
    op.create_index("ix_step_status", "step", ["status"], unique=False)
    op.drop_index("ix_step_status_due_at", table_name="step")
