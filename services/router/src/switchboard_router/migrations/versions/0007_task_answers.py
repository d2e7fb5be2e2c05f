"""when the assigned agent first answered, so an unanswered assignment can be requeued

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.add_column("tasks", sa.Column("answered_at", sa.DateTime(timezone=True)), schema=S)
    op.create_index(
        "tasks_unanswered",
        "tasks",
        ["assigned_at"],
        postgresql_where=sa.text("state = 'assigned' AND answered_at IS NULL"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("tasks_unanswered", "tasks", schema=S)
    op.drop_column("tasks", "answered_at", schema=S)
