"""revoked_agents: agents deleted at the router, whose tokens this service refuses

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
S = "conversation"


def upgrade() -> None:
    op.create_table(
        "revoked_agents",
        sa.Column("agent_id", sa.Uuid, primary_key=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("revoked_agents", schema=S)
