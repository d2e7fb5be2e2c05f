"""web chat: rate-limit counters of the visitor API, shared by every replica

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
S = "ingest"


def upgrade() -> None:
    op.create_table(
        "webchat_rate_counters",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("webchat_rate_counters", schema=S)
