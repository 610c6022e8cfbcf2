"""body channel posts

Revision ID: 0006
Revises: 0005

An outbox row may be a post to a body's Teams channel (the constitution's `teams_channel`)
instead of a message to a person: `person_id` may be empty and `body_id` names the body.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outboxmessage", schema=None) as batch_op:
        batch_op.alter_column("person_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(
            sa.Column("body_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("outboxmessage", schema=None) as batch_op:
        batch_op.drop_column("body_id")
        batch_op.alter_column("person_id", existing_type=sa.Integer(), nullable=False)
