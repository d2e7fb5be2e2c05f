"""the skills catalogue: agents' skills and routing rules' required and optional skills must name a
catalogued skill; seeded from the skills agents and rules already name, so existing data stays valid

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.create_table(
        "skills",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.execute(
        """
        INSERT INTO router.skills (name)
        SELECT unnest(skills) FROM router.agents
        UNION SELECT jsonb_object_keys(outcome -> 'required_skills') FROM router.routing_rules
        UNION SELECT jsonb_array_elements_text(outcome -> 'optional_skills') FROM router.routing_rules
        ON CONFLICT DO NOTHING
        """
    )


def downgrade() -> None:
    op.drop_table("skills", schema=S)
