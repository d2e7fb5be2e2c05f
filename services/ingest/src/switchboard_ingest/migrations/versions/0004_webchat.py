"""web chat: visitors' sessions, and agents' replies waiting on visitors' streams

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
S = "ingest"


def upgrade() -> None:
    op.create_table(
        "webchat_sessions",
        sa.Column("session_id", sa.Uuid, primary_key=True),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_table(
        "webchat_outbox",
        # The stream's event id; one identity's rows commit in this order (see webchat/models.py).
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("message_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    op.create_index("webchat_outbox_identity_seq", "webchat_outbox", ["identity", "seq"], schema=S)


def downgrade() -> None:
    op.drop_table("webchat_outbox", schema=S)
    op.drop_table("webchat_sessions", schema=S)
