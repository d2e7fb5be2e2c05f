"""channels: attachments, content kinds and email fields of customers' messages, delivery reports of replies

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
S = "conversation"


def upgrade() -> None:
    op.add_column("messages", sa.Column("attachments", postgresql.JSONB), schema=S)
    op.add_column("messages", sa.Column("content_kind", sa.Text), schema=S)
    op.add_column("messages", sa.Column("subject", sa.Text), schema=S)
    op.add_column("messages", sa.Column("original_body", sa.Text), schema=S)
    op.add_column("messages", sa.Column("thread_refs", postgresql.ARRAY(sa.Text)), schema=S)
    op.add_column("messages", sa.Column("delivery_error", sa.Text), schema=S)
    op.add_column("messages", sa.Column("delivery_updated_at", sa.DateTime(timezone=True)), schema=S)
    # Every report on a sent message, as the provider gave it: callbacks can arrive before the dispatcher's
    # report that ties the provider's id to the reply, and in any order, so they are kept and folded.
    op.create_table(
        "delivery_reports",
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("external_id", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error_code", sa.Text),
        sa.Column("error_reason", sa.Text),
        sa.CheckConstraint(
            "status IN ('queued', 'sent', 'delivered', 'read', 'failed')", name="delivery_reports_status"
        ),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("delivery_reports", schema=S)
    for column in (
        "delivery_updated_at",
        "delivery_error",
        "thread_refs",
        "original_body",
        "subject",
        "content_kind",
        "attachments",
    ):
        op.drop_column("messages", column, schema=S)
