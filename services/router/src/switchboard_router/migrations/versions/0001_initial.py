"""agents, tasks, outbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from switchboard_common.db.outbox import outbox_columns

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("skills", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("active_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True)),
        sa.Column(
            "status_changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("active_count >= 0", name="agents_active_count_non_negative"),
        sa.CheckConstraint("capacity >= 0", name="agents_capacity_non_negative"),
        sa.CheckConstraint("status IN ('online', 'away', 'offline')", name="agents_status"),
        schema=S,
    )
    op.create_index("agents_skills", "agents", ["skills"], postgresql_using="gin", schema=S)
    op.create_table(
        "tasks",
        sa.Column("conversation_id", sa.Uuid, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("required_skills", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Uuid, sa.ForeignKey(f"{S}.agents.id")),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("state IN ('queued', 'assigned', 'closed')", name="tasks_state"),
        schema=S,
    )
    op.create_index(
        "tasks_queue",
        "tasks",
        ["priority", "enqueued_at"],
        postgresql_where=sa.text("state = 'queued'"),
        schema=S,
    )
    op.create_index("tasks_agent_state", "tasks", ["agent_id", "state"], schema=S)
    op.create_table("outbox", *outbox_columns(), schema=S)


def downgrade() -> None:
    for table in ("outbox", "tasks", "agents"):
        op.drop_table(table, schema=S)
