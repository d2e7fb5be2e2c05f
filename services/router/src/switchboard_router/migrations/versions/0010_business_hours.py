"""business hours per team, and the team serving a queue (out-of-hours auto-replies)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.create_table(
        "business_hours",
        sa.Column("team", sa.Text, sa.ForeignKey("router.teams.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("weekly", postgresql.JSONB, nullable=False),
        sa.Column("country", sa.Text),
        sa.Column("subdivision", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.add_column(
        "queues",
        sa.Column("team", sa.Text, sa.ForeignKey("router.teams.name", ondelete="SET NULL")),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("queues", "team", schema=S)
    op.drop_table("business_hours", schema=S)
