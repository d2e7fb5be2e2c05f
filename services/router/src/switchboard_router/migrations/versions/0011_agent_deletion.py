"""agents are deleted softly: ``deleted_at`` set, the row kept for the history that names it (tasks,
assignments), and the email free again for a new agent

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.add_column("agents", sa.Column("deleted_at", sa.DateTime(timezone=True)), schema=S)
    # A deleted agent's email may be given to a new agent: unique among the agents not deleted only.
    op.drop_constraint("agents_email_key", "agents", schema=S)
    op.create_index(
        "agents_email_live",
        "agents",
        ["email"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("agents_email_live", "agents", schema=S)
    op.create_unique_constraint("agents_email_key", "agents", ["email"], schema=S)
    op.drop_column("agents", "deleted_at", schema=S)
