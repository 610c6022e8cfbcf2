"""channel health: the delivery channels' circuit breakers

Revision ID: 0005
Revises: 0004

One row per delivery channel (an SMTP server, a Teams webhook host) that has refused a connection:
its run of consecutive refusals, since when, and, while its breaker is open, when it is next
probed. `wct status` reads it; a dispatcher pauses a channel whose breaker is open.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import models.tables

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channelhealth",
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("since", models.tables.AwareDateTime(timezone=True), nullable=True),
        sa.Column("opened_at", models.tables.AwareDateTime(timezone=True), nullable=True),
        sa.Column("probes", sa.Integer(), nullable=False),
        sa.Column("next_probe_at", models.tables.AwareDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("updated_at", models.tables.AwareDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel"),
    )


def downgrade() -> None:
    op.drop_table("channelhealth")
