"""KPI rollups (sketch cells), handoffs, and the conversation facts they need

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
S = "metrics"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("message_facts", sa.Column("agent_id", sa.Uuid), schema=S)
    op.add_column("message_facts", sa.Column("automated", sa.Boolean), schema=S)
    # Reply times are computed over a conversation's messages.
    op.create_index("message_facts_conversation", "message_facts", ["conversation_id"], schema=S)
    for name, type_ in (
        ("customer_id", sa.Uuid),
        ("queue", sa.Text),
        ("tags", postgresql.ARRAY(sa.Text)),
        ("channels", postgresql.ARRAY(sa.Text)),
        ("first_reply_at", TS),
        ("resolved_by", sa.Uuid),
        ("first_reopened_at", TS),
        ("last_resolved_at", TS),
        ("last_reopened_at", TS),
    ):
        op.add_column("conversation_facts", sa.Column(name, type_), schema=S)
    op.execute("UPDATE metrics.conversation_facts SET last_resolved_at = resolved_at")
    op.execute(
        """UPDATE metrics.conversation_facts f SET first_reopened_at = r.first, last_reopened_at = r.last
        FROM (SELECT conversation_id, min(reopened_at) AS first, max(reopened_at) AS last
              FROM metrics.conversation_reopens GROUP BY conversation_id) r
        WHERE r.conversation_id = f.conversation_id"""
    )
    # Open: never resolved, or reopened after its last resolution. Generated, so the partial index below
    # always agrees with the columns it is computed from.
    op.add_column(
        "conversation_facts",
        sa.Column(
            "is_open",
            sa.Boolean,
            sa.Computed(
                "last_resolved_at IS NULL OR coalesce(last_reopened_at > last_resolved_at, false)",
                persisted=True,
            ),
        ),
        schema=S,
    )
    op.create_index(
        "conversation_facts_open",
        "conversation_facts",
        ["conversation_id"],
        schema=S,
        postgresql_where=sa.text("is_open"),
    )
    op.create_index("conversation_facts_opened_at", "conversation_facts", ["opened_at"], schema=S)
    op.create_table(
        "conversation_handoffs",
        sa.Column("conversation_id", sa.Uuid, primary_key=True),
        sa.Column("at", TS, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("agent_id", sa.Uuid, nullable=False),
        schema=S,
    )
    op.create_table(
        "kpi_cells",
        sa.Column("minute", TS, primary_key=True),
        sa.Column("metric", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("queue", sa.Text, primary_key=True),
        sa.Column("agent", sa.Text, primary_key=True),
        sa.Column("tag", sa.Text, primary_key=True),
        sa.Column("bin", sa.Integer, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("message_facts_conversation", "message_facts", schema=S)
    op.drop_column("message_facts", "automated", schema=S)
    op.drop_column("message_facts", "agent_id", schema=S)
    op.drop_table("kpi_cells", schema=S)
    op.drop_table("conversation_handoffs", schema=S)
    op.drop_index("conversation_facts_opened_at", "conversation_facts", schema=S)
    op.drop_index("conversation_facts_open", "conversation_facts", schema=S)
    for name in (
        "is_open",
        "last_reopened_at",
        "last_resolved_at",
        "first_reopened_at",
        "resolved_by",
        "first_reply_at",
        "channels",
        "tags",
        "queue",
        "customer_id",
    ):
        op.drop_column("conversation_facts", name, schema=S)
