"""agents' replies and internal notes in the thread: authors, delivery status, idempotency keys, first reply

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
S = "conversation"


def upgrade() -> None:
    op.add_column("conversations", sa.Column("first_replied_at", sa.DateTime(timezone=True)), schema=S)
    op.add_column("messages", sa.Column("author_agent_id", sa.Uuid), schema=S)
    op.add_column("messages", sa.Column("delivery_status", sa.Text), schema=S)
    op.add_column("messages", sa.Column("idempotency_key", sa.Text), schema=S)
    # A reply has no provider id until it is sent, a note has neither provider id nor channel.
    op.alter_column("messages", "channel", nullable=True, schema=S)
    op.alter_column("messages", "external_id", nullable=True, schema=S)
    op.create_check_constraint(
        "messages_direction", "messages", "direction IN ('inbound', 'outbound', 'note')", schema=S
    )
    op.create_check_constraint(
        "messages_shape",
        "messages",
        """
        CASE direction
            WHEN 'inbound' THEN channel IS NOT NULL AND external_id IS NOT NULL AND author_agent_id IS NULL
                AND delivery_status IS NULL AND idempotency_key IS NULL
            WHEN 'outbound' THEN channel IS NOT NULL AND delivery_status IS NOT NULL
            ELSE channel IS NULL AND external_id IS NULL AND delivery_status IS NULL
                AND idempotency_key IS NULL
        END
        """,
        schema=S,
    )
    op.create_check_constraint(
        "messages_delivery_status",
        "messages",
        "delivery_status IN ('queued', 'sent', 'delivered', 'read', 'failed')",
        schema=S,
    )
    op.create_index(
        "messages_conversation_idempotency_key",
        "messages",
        ["conversation_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        schema=S,
    )


def downgrade() -> None:
    # Replies and notes have no place in the previous schema.
    op.execute("DELETE FROM conversation.messages WHERE direction <> 'inbound'")
    op.drop_index("messages_conversation_idempotency_key", "messages", schema=S)
    for name in ("messages_delivery_status", "messages_shape", "messages_direction"):
        op.drop_constraint(name, "messages", schema=S)
    op.alter_column("messages", "external_id", nullable=False, schema=S)
    op.alter_column("messages", "channel", nullable=False, schema=S)
    for column in ("idempotency_key", "delivery_status", "author_agent_id"):
        op.drop_column("messages", column, schema=S)
    op.drop_column("conversations", "first_replied_at", schema=S)
