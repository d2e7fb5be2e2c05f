"""agent_feed: what each agent's realtime stream carries, written with the change it reports

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
S = "conversation"

# One notification per writing statement, delivered on commit: the agents it concerns, comma-separated,
# or '*' when there are too many for a notification's 8000 bytes (every stream then looks once).
_NOTIFY = """
CREATE FUNCTION conversation.agent_feed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    agents text;
BEGIN
    SELECT CASE WHEN count(DISTINCT agent_id) > 100 THEN '*'
        ELSE string_agg(DISTINCT agent_id::text, ',') END
    INTO agents FROM new_rows;
    IF agents IS NOT NULL THEN
        PERFORM pg_notify('switchboard_agent_feed', agents);
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "agent_feed",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        # The writing transaction's id: streams read in (tx, seq) order up to the oldest transaction still
        # running, so a row committed late with a smaller seq is never skipped (docs/agent-stream.md).
        sa.Column(
            "tx",
            sa.BigInteger,
            server_default=sa.text("(pg_current_xact_id())::text::bigint"),
            nullable=False,
        ),
        sa.Column("agent_id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        # What the item is about within its kind (a message id, an offer's time...): a redelivered event
        # finds its row and adds none.
        sa.Column("item_key", sa.Text, nullable=False),
        sa.Column("conversation_id", sa.Uuid, nullable=False),
        sa.Column("data", postgresql.JSONB, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("agent_id", "kind", "item_key", name="agent_feed_item"),
        schema=S,
    )
    op.create_index("agent_feed_agent_position", "agent_feed", ["agent_id", "tx", "seq"], schema=S)
    op.create_index("agent_feed_position", "agent_feed", ["tx", "seq"], schema=S)
    op.create_index("agent_feed_at", "agent_feed", ["at"], schema=S)
    op.execute(_NOTIFY)
    op.execute(
        "CREATE TRIGGER agent_feed_notify AFTER INSERT ON conversation.agent_feed "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION conversation.agent_feed_notify()"
    )


def downgrade() -> None:
    op.drop_table("agent_feed", schema=S)
    op.execute("DROP FUNCTION conversation.agent_feed_notify()")
