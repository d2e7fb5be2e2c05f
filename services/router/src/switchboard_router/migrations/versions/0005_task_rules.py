"""what routing rules decide for a task: its queue, optional skills, SLA target and the rule

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


def downgrade() -> None:
    for column in ("rule_id", "sla_target_s", "optional_skills", "queue"):
        op.drop_column("tasks", column, schema=S)
