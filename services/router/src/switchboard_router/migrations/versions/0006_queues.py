"""queues: the policy that chooses among eligible agents for the conversations of a queue; the waiting
tasks indexed in the order they are served

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("policy", sa.Text, nullable=False, server_default=sa.text("'least_loaded'")),
        sa.Column("escalation", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("policy IN ('least_loaded', 'round_robin', 'most_skilled')", name="queues_policy"),
        schema=S,
    )
    # In queue order (priority high first, then the oldest): each agent's head of the queue is read in
    # index order, without a sort (the old index ran the other way on enqueued_at).
    op.create_index(
        "tasks_queue_order",
        "tasks",
        [sa.text("priority DESC"), "enqueued_at", "conversation_id"],
        postgresql_where=sa.text("state = 'queued'"),
        schema=S,
    )
    op.drop_index("tasks_queue", "tasks", schema=S)


def downgrade() -> None:
    op.create_index(
        "tasks_queue",
        "tasks",
        ["priority", "enqueued_at"],
        postgresql_where=sa.text("state = 'queued'"),
        schema=S,
    )
    op.drop_index("tasks_queue_order", "tasks", schema=S)
    op.drop_table("queues", schema=S)
