"""processed events, event counts, conversation facts

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
S = "metrics"


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index("processed_events_processed_at", "processed_events", ["processed_at"], schema=S)
    op.create_table(
        "event_counts",
        sa.Column("event_type", sa.Text, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        schema=S,
    )
    op.create_table(
        "conversation_facts",
        sa.Column("conversation_id", sa.Uuid, primary_key=True),
        sa.Column("channel", sa.Text),
        sa.Column("agent_id", sa.Uuid),
        sa.Column("opened_at", sa.DateTime(timezone=True)),
        sa.Column("queued_at", sa.DateTime(timezone=True)),
        sa.Column("assigned_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        schema=S,
    )


def downgrade() -> None:
    for table in ("conversation_facts", "event_counts", "processed_events"):
        op.drop_table(table, schema=S)
