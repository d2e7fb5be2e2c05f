"""agents' roles: supervisors see every conversation (the team serving a queue, whose agents see its
waiting conversations, comes with business hours in 0010)

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


def downgrade() -> None:
    op.drop_constraint("agents_role", "agents", schema=S)
    op.drop_column("agents", "role", schema=S)
