"""automation: automated outbound messages (acknowledgements) and canned responses

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
S = "conversation"


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("automated", sa.Boolean, nullable=False, server_default=sa.text("false")),
        schema=S,
    )
    op.create_table(
        "canned_responses",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("shortcut", sa.Text, nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("canned_responses", schema=S)
    op.drop_column("messages", "automated", schema=S)
