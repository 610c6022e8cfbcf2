"""actions, confidential agenda items, extraordinary meetings

Revision ID: 0004
Revises: 0003

An action agreed at a meeting (owner, due date, status) for the action tracker; an agenda item
may be confidential (left out of the public papers) and put forward under an approval request;
a meeting may be extraordinary (off the body's cadence), and remembers the cadence date it
stands for when it is moved; an approval request has a date by which the approving body should
decide. Existing rows are neither confidential nor extraordinary.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import models.tables

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meetingaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("agenda_item_id", sa.Integer(), nullable=True),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", models.tables.AwareDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", models.tables.AwareDateTime(timezone=True), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.ForeignKeyConstraint(["agenda_item_id"], ["agendaitem.id"]),
        sa.ForeignKeyConstraint(["meeting_id"], ["meeting.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("meetingaction", schema=None) as batch_op:
        batch_op.create_index("ix_meetingaction_meeting_id", ["meeting_id"], unique=False)
        batch_op.create_index("ix_meetingaction_owner_id", ["owner_id"], unique=False)
        batch_op.create_index("ix_meetingaction_status", ["status"], unique=False)
    with op.batch_alter_table("agendaitem", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("confidential", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("approval_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_agendaitem_approval_id", "approvalrequest", ["approval_id"], ["id"]
        )
    with op.batch_alter_table("meeting", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("extraordinary", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("cadence_on", sa.Date(), nullable=True))
    with op.batch_alter_table("approvalrequest", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvalrequest", schema=None) as batch_op:
        batch_op.drop_column("due_on")
    with op.batch_alter_table("meeting", schema=None) as batch_op:
        batch_op.drop_column("cadence_on")
        batch_op.drop_column("extraordinary")
    with op.batch_alter_table("agendaitem", schema=None) as batch_op:
        batch_op.drop_constraint("fk_agendaitem_approval_id", type_="foreignkey")
        batch_op.drop_column("approval_id")
        batch_op.drop_column("confidential")
    with op.batch_alter_table("meetingaction", schema=None) as batch_op:
        batch_op.drop_index("ix_meetingaction_status")
        batch_op.drop_index("ix_meetingaction_owner_id")
        batch_op.drop_index("ix_meetingaction_meeting_id")
    op.drop_table("meetingaction")
