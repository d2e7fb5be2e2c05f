"""reopening: a reopened status, when and how often a conversation reopened, customers' latest resolutions

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
S = "conversation"


def upgrade() -> None:
    op.add_column("conversations", sa.Column("reopened_at", sa.DateTime(timezone=True)), schema=S)
    op.add_column(
        "conversations",
        sa.Column("reopen_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        schema=S,
    )
    op.drop_constraint("conversations_status", "conversations", schema=S)
    op.create_check_constraint(
        "conversations_status",
        "conversations",
        "status IN ('open', 'assigned', 'resolved', 'reopened')",
        schema=S,
    )
    op.create_index(
        "conversations_customer_resolved", "conversations", ["customer_id", "resolved_at"], schema=S
    )


def downgrade() -> None:
    # A reopened conversation waits for an agent, as an open one does.
    op.execute("UPDATE conversation.conversations SET status = 'open' WHERE status = 'reopened'")
    op.drop_index("conversations_customer_resolved", "conversations", schema=S)
    op.drop_constraint("conversations_status", "conversations", schema=S)
    op.create_check_constraint(
        "conversations_status", "conversations", "status IN ('open', 'assigned', 'resolved')", schema=S
    )
    op.drop_column("conversations", "reopen_count", schema=S)
    op.drop_column("conversations", "reopened_at", schema=S)
