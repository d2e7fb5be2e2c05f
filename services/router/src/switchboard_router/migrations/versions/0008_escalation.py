"""escalation rings: what a waiting task was decided to need, and how many of its queue's steps it took

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("base_skills", postgresql.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        schema=S,
    )
    op.add_column(
        "tasks",
        sa.Column(
            "base_levels", postgresql.ARRAY(sa.SmallInteger), nullable=False, server_default=sa.text("'{}'")
        ),
        schema=S,
    )
    # Tasks from before: what they require now is what was decided.
    op.execute("UPDATE router.tasks SET base_skills = required_skills, base_levels = min_levels")
    op.add_column(
        "tasks",
        sa.Column("escalation_step", sa.SmallInteger, nullable=False, server_default=sa.text("0")),
        schema=S,
    )


def downgrade() -> None:
    for column in ("escalation_step", "base_levels", "base_skills"):
        op.drop_column("tasks", column, schema=S)
