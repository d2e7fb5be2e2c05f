"""outbound deliveries: agents' replies waiting to be sent, being retried, sent or given up on

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
S = "ingest"


def upgrade() -> None:
    op.create_table(
        "outbound_deliveries",
        sa.Column("message_id", sa.Uuid, primary_key=True),
        # Arrival order: one conversation's replies are sent one at a time, in this order.
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("conversation_id", sa.Uuid, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("external_id", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'failed', 'dead')", name="outbound_deliveries_state"
        ),
        schema=S,
    )
    op.create_index(
        "outbound_deliveries_due",
        "outbound_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'pending'"),
        schema=S,
    )
    op.create_index(
        "outbound_deliveries_conversation_pending",
        "outbound_deliveries",
        ["conversation_id", "seq"],
        postgresql_where=sa.text("state = 'pending'"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("outbound_deliveries", schema=S)
