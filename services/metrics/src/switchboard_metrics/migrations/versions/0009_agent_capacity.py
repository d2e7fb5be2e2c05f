"""agent capacity: agent_status_changes.capacity, the capacity an agent status change carries

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
S = "metrics"


def upgrade() -> None:
    op.add_column("agent_status_changes", sa.Column("capacity", sa.Integer), schema=S)


def downgrade() -> None:
    op.drop_column("agent_status_changes", "capacity", schema=S)
