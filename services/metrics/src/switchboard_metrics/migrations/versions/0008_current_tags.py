"""current tags: conversation_facts.tags_at (the tags of the latest change stay) and a row per tag change

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
S = "metrics"


def upgrade() -> None:
    op.add_column("conversation_facts", sa.Column("tags_at", sa.DateTime(timezone=True)), schema=S)
    # The tags stored so far are those the conversations opened with: told at their opening.
    op.execute("UPDATE metrics.conversation_facts SET tags_at = opened_at WHERE tags IS NOT NULL")
    op.create_table(
        "conversation_retags",
        sa.Column("conversation_id", sa.Uuid, primary_key=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), primary_key=True),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("conversation_retags", schema=S)
    op.drop_column("conversation_facts", "tags_at", schema=S)
