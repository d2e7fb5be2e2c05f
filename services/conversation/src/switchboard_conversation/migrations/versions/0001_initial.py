"""customers, identities, conversations, messages, outbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from switchboard_common.db.outbox import outbox_columns

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
S = "conversation"


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_table(
        "customer_identities",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Uuid, sa.ForeignKey(f"{S}.customers.id"), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("customer_id", sa.Uuid, sa.ForeignKey(f"{S}.customers.id"), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("first_channel", sa.Text, nullable=False),
        sa.Column("last_channel", sa.Text, nullable=False),
        sa.Column("required_skills", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("assigned_agent_id", sa.Uuid),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('open', 'assigned', 'resolved')", name="conversations_status"),
        schema=S,
    )
    op.create_index(
        "conversations_one_unresolved_per_customer",
        "conversations",
        ["customer_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
        schema=S,
    )
    op.create_index("conversations_agent_status", "conversations", ["assigned_agent_id", "status"], schema=S)
    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("conversation_id", sa.Uuid, sa.ForeignKey(f"{S}.conversations.id"), nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index(
        "messages_channel_external_id", "messages", ["channel", "external_id"], unique=True, schema=S
    )
    op.create_index("messages_conversation_sent", "messages", ["conversation_id", "sent_at"], schema=S)
    op.create_table("outbox", *outbox_columns(), schema=S)


def downgrade() -> None:
    for table in ("outbox", "messages", "conversations", "customer_identities", "customers"):
        op.drop_table(table, schema=S)
