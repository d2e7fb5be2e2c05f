"""what routing rules decide for a task: its queue, optional skills, SLA target and the rule; SLA breaches

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("queue", sa.Text, nullable=False, server_default=sa.text("'default'")), schema=S
    )
    op.add_column(
        "tasks",
        sa.Column(
            "optional_skills", postgresql.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")
        ),
        schema=S,
    )
    op.add_column("tasks", sa.Column("sla_target_s", sa.Integer), schema=S)
    op.add_column("tasks", sa.Column("rule_id", sa.Uuid), schema=S)
    op.add_column("tasks", sa.Column("sla_breached_at", sa.DateTime(timezone=True)), schema=S)
    op.create_index(
        "tasks_sla_watch",
        "tasks",
        ["enqueued_at"],
        postgresql_where=sa.text("state = 'queued' AND sla_target_s IS NOT NULL AND sla_breached_at IS NULL"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("tasks_sla_watch", "tasks", schema=S)
    for column in ("sla_breached_at", "rule_id", "sla_target_s", "optional_skills", "queue"):
        op.drop_column("tasks", column, schema=S)
