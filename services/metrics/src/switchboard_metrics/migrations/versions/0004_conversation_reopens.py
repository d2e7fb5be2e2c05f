"""conversation reopens, counted by (conversation id, reopened at)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
S = "metrics"


def upgrade() -> None:
    op.create_table(
        "conversation_reopens",
        sa.Column("conversation_id", sa.Uuid, primary_key=True),
        sa.Column("reopened_at", sa.DateTime(timezone=True), primary_key=True),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("conversation_reopens", schema=S)
