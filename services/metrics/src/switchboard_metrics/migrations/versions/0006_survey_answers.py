"""survey answers: one row per answered satisfaction survey, for CSAT, NPS, CES and the low ratings

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
S = "metrics"


def upgrade() -> None:
    op.create_table(
        "survey_answers",
        sa.Column("survey_id", sa.Uuid, primary_key=True),
        sa.Column("conversation_id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("score", sa.SmallInteger, nullable=False),
        sa.Column("follow_up", sa.Boolean, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Uuid),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("survey_answers_answered_at", "survey_answers", ["answered_at"], schema=S)


def downgrade() -> None:
    op.drop_table("survey_answers", schema=S)
