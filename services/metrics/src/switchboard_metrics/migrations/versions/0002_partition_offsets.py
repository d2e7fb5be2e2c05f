"""partition offsets replace processed events

Counts are made exactly-once by the next offset per partition, stored with them; conversation facts are
idempotent by their key. The per-event table goes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
S = "metrics"


def upgrade() -> None:
    op.create_table(
        "partition_offsets",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.CheckConstraint("next_offset >= 0", name="partition_offsets_next_offset_non_negative"),
        schema=S,
    )
    # Counts so far stay. The group resumes from its committed offsets, so only a record the old version
    # counted without its offset being committed (a crash in between) could be counted once more.
    op.drop_table("processed_events", schema=S)


def downgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index("processed_events_processed_at", "processed_events", ["processed_at"], schema=S)
    op.drop_table("partition_offsets", schema=S)
