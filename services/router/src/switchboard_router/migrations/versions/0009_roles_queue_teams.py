"""agents' roles (supervisors see every conversation) and the team that serves each queue

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.add_column(
        "agents", sa.Column("role", sa.Text, nullable=False, server_default=sa.text("'agent'")), schema=S
    )
    op.create_check_constraint("agents_role", "agents", "role IN ('agent', 'supervisor')", schema=S)
    op.add_column("queues", sa.Column("team", sa.Text), schema=S)


def downgrade() -> None:
    op.drop_column("queues", "team", schema=S)
    op.drop_constraint("agents_role", "agents", schema=S)
    op.drop_column("agents", "role", schema=S)
