"""routing occurrences: offers and how they ended, escalations and SLA breaches, one row each

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
S = "metrics"


def upgrade() -> None:
    op.create_table(
        "routing_occurrences",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("conversation_id", sa.Uuid, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("agent_id", sa.Uuid),
        sa.Column("queue", sa.Text),
        schema=S,
    )
    op.create_index("routing_occurrences_at", "routing_occurrences", ["at"], schema=S)


def downgrade() -> None:
    op.drop_table("routing_occurrences", schema=S)
