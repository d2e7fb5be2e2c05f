"""closed assignments by closing time, for the measured handle times of queue estimates

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.create_index(
        "tasks_closed",
        "tasks",
        ["closed_at"],
        postgresql_where=sa.text("state = 'closed' AND assigned_at IS NOT NULL"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("tasks_closed", table_name="tasks", schema=S)
