"""natural keys replace partition offsets

Counts move from "once per log record" to "once per natural key": message facts (keyed by message id),
a `queued` column on conversation facts (conversation.assigned also tells queued_at, so queued_at cannot
tell whether conversation.queued was seen), and agent status changes keyed by (agent id, changed at).
The partition offsets go.

Counts so far stay, but the facts they came from were not all kept: a message.received,
conversation.message_added or conversation.queued event counted before this revision and read again
afterwards (a record whose offset was not committed when the old version stopped) counts once more.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
S = "metrics"


def upgrade() -> None:
    op.create_table(
        "message_facts",
        sa.Column("message_id", sa.Uuid, primary_key=True),
        sa.Column("channel", sa.Text),
        sa.Column("direction", sa.Text),
        sa.Column("conversation_id", sa.Uuid),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("received_at", sa.DateTime(timezone=True)),
        schema=S,
    )
    op.create_index("message_facts_received_at", "message_facts", ["received_at"], schema=S)
    op.add_column("conversation_facts", sa.Column("queued", sa.Boolean), schema=S)
    op.create_table(
        "agent_status_changes",
        sa.Column("agent_id", sa.Uuid, primary_key=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        schema=S,
    )
    op.drop_table("partition_offsets", schema=S)


def downgrade() -> None:
    # Empty: the previous version then counts from the consumer group's committed offsets.
    op.create_table(
        "partition_offsets",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.CheckConstraint("next_offset >= 0", name="partition_offsets_next_offset_non_negative"),
        schema=S,
    )
    op.drop_table("agent_status_changes", schema=S)
    op.drop_column("conversation_facts", "queued", schema=S)
    op.drop_index("message_facts_received_at", "message_facts", schema=S)
    op.drop_table("message_facts", schema=S)
