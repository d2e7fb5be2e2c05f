"""surveys: satisfaction surveys asked after a resolution and answered through the customer's channel;
conversations flagged for a follow-up after a low score

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
S = "conversation"


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("conversation_id", sa.Uuid, sa.ForeignKey("conversation.conversations.id"), nullable=False),
        sa.Column("customer_id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Uuid),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.SmallInteger),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
        sa.Column("answer_message_id", sa.Uuid),
        sa.CheckConstraint("kind IN ('csat', 'nps', 'ces')", name="surveys_kind"),
        sa.CheckConstraint("(score IS NULL) = (answered_at IS NULL)", name="surveys_answer"),
        schema=S,
    )
    # The surveys a customer may still answer: read by every inbound batch, for the customers it names.
    op.create_index(
        "surveys_pending",
        "surveys",
        ["customer_id"],
        schema=S,
        postgresql_where=sa.text("answered_at IS NULL"),
    )
    op.create_index("surveys_conversation", "surveys", ["conversation_id"], schema=S)
    op.add_column(
        "conversations",
        sa.Column("follow_up", sa.Boolean, nullable=False, server_default=sa.text("false")),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("conversations", "follow_up", schema=S)
    op.drop_table("surveys", schema=S)
