"""customer merges: tombstones, conversations closed by a merge, and the audit of every merge

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
S = "conversation"


def upgrade() -> None:
    # A merged customer stays as a tombstone pointing at the customer it became, so an old id resolves.
    op.add_column(
        "customers", sa.Column("merged_into", sa.Uuid, sa.ForeignKey(f"{S}.customers.id")), schema=S
    )
    # A conversation a merge closed (its messages moved into the surviving one): resolved, never reopened.
    op.add_column(
        "conversations",
        sa.Column("merged_into", sa.Uuid, sa.ForeignKey(f"{S}.conversations.id")),
        schema=S,
    )
    op.create_table(
        "customer_merges",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("source_customer_id", sa.Uuid, sa.ForeignKey(f"{S}.customers.id"), nullable=False),
        sa.Column("target_customer_id", sa.Uuid, sa.ForeignKey(f"{S}.customers.id"), nullable=False),
        sa.Column("merged_by_agent_id", sa.Uuid),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identities", postgresql.JSONB, nullable=False),
        sa.Column("conversation_ids", postgresql.ARRAY(sa.Uuid), nullable=False),
        sa.Column("closed_conversation_id", sa.Uuid),
        sa.Column("kept_conversation_id", sa.Uuid),
        schema=S,
    )
    # A customer is merged away once: it is a tombstone afterwards.
    op.create_index(
        "customer_merges_source", "customer_merges", ["source_customer_id"], unique=True, schema=S
    )


def downgrade() -> None:
    op.drop_index("customer_merges_source", table_name="customer_merges", schema=S)
    op.drop_table("customer_merges", schema=S)
    op.drop_column("conversations", "merged_into", schema=S)
    op.drop_column("customers", "merged_into", schema=S)
