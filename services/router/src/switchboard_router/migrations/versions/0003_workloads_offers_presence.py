"""skill proficiency, languages, teams, capacity per workload, offers, presence heartbeats, sticky routing

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
S = "router"


def upgrade() -> None:
    op.add_column(
        "agents",
        sa.Column("proficiency", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=S,
    )
    op.add_column(
        "agents",
        sa.Column("languages", postgresql.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        schema=S,
    )
    op.add_column(
        "agents",
        sa.Column("teams", postgresql.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        schema=S,
    )
    op.add_column("agents", sa.Column("capacities", postgresql.ARRAY(sa.Integer)), schema=S)
    op.add_column(
        "agents",
        sa.Column(
            "loads", postgresql.ARRAY(sa.Integer), nullable=False, server_default=sa.text("'{0,0,0,0}'")
        ),
        schema=S,
    )
    # Existing agents keep what they had: every skill at level 1, the total capacity on every workload,
    # their current conversations counted as messaging (the workload of every channel served so far).
    op.execute(
        """
        UPDATE router.agents SET
            proficiency = coalesce((SELECT jsonb_object_agg(s, 1) FROM unnest(skills) s), '{}'::jsonb),
            capacities = ARRAY[capacity, capacity, capacity, capacity],
            loads = ARRAY[0, active_count, 0, 0]
        """
    )
    op.alter_column("agents", "capacities", nullable=False, schema=S)
    op.drop_constraint("agents_status", "agents", schema=S)
    op.create_check_constraint(
        "agents_status", "agents", "status IN ('online', 'away', 'on_break', 'offline')", schema=S
    )

    op.create_table(
        "teams",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("auto_accept", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("offer_timeout_s", sa.Integer, nullable=False, server_default=sa.text("30")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_table(
        "agent_presence",
        sa.Column(
            "agent_id", sa.Uuid, sa.ForeignKey("router.agents.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )

    op.add_column("tasks", sa.Column("customer_id", sa.Uuid), schema=S)
    op.add_column(
        "tasks",
        sa.Column(
            "min_levels", postgresql.ARRAY(sa.SmallInteger), nullable=False, server_default=sa.text("'{}'")
        ),
        schema=S,
    )
    op.execute(
        """
        UPDATE router.tasks SET min_levels = array_fill(1::smallint, ARRAY[cardinality(required_skills)])
        WHERE cardinality(required_skills) > 0
        """
    )
    op.add_column("tasks", sa.Column("language", sa.Text), schema=S)
    op.add_column(
        "tasks", sa.Column("workload", sa.SmallInteger, nullable=False, server_default=sa.text("2")), schema=S
    )
    op.add_column(
        "tasks",
        sa.Column("declined_by", postgresql.ARRAY(sa.Uuid), nullable=False, server_default=sa.text("'{}'")),
        schema=S,
    )
    op.add_column("tasks", sa.Column("offered_at", sa.DateTime(timezone=True)), schema=S)
    op.add_column("tasks", sa.Column("offer_expires_at", sa.DateTime(timezone=True)), schema=S)
    op.drop_constraint("tasks_state", "tasks", schema=S)
    op.create_check_constraint(
        "tasks_state", "tasks", "state IN ('queued', 'offered', 'assigned', 'closed')", schema=S
    )
    op.create_index(
        "tasks_customer",
        "tasks",
        ["customer_id", "assigned_at"],
        postgresql_where=sa.text("agent_id IS NOT NULL"),
        schema=S,
    )
    op.create_index(
        "tasks_offers",
        "tasks",
        ["offer_expires_at"],
        postgresql_where=sa.text("state = 'offered'"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("tasks_offers", "tasks", schema=S)
    op.drop_index("tasks_customer", "tasks", schema=S)
    op.drop_constraint("tasks_state", "tasks", schema=S)
    op.execute("UPDATE router.tasks SET state = 'queued', agent_id = NULL WHERE state = 'offered'")
    op.create_check_constraint("tasks_state", "tasks", "state IN ('queued', 'assigned', 'closed')", schema=S)
    for column in ("offer_expires_at", "offered_at", "declined_by", "workload", "language", "min_levels"):
        op.drop_column("tasks", column, schema=S)
    op.drop_column("tasks", "customer_id", schema=S)
    op.drop_table("agent_presence", schema=S)
    op.drop_table("teams", schema=S)
    op.drop_constraint("agents_status", "agents", schema=S)
    op.execute("UPDATE router.agents SET status = 'away' WHERE status = 'on_break'")
    op.create_check_constraint("agents_status", "agents", "status IN ('online', 'away', 'offline')", schema=S)
    for column in ("loads", "capacities", "teams", "languages", "proficiency"):
        op.drop_column("agents", column, schema=S)
