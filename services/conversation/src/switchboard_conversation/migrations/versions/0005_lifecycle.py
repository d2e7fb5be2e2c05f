"""lifecycle: the states agents work with, snoozing, tags from a documented catalogue, the queue and team a
waiting conversation waits in

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
S = "conversation"

STATES = "'new', 'queued', 'assigned', 'waiting_on_customer', 'waiting_on_agent', 'snoozed', 'resolved', 'reopened'"

# The default "what" (the subject) and "why" (the cause) tag sets, documented in docs/tags.md.
DEFAULT_TAGS = {
    "what:billing": "Invoices, charges, payment methods",
    "what:refund": "A refund asked for or in progress",
    "what:shipping": "Delivery, tracking, returns",
    "what:account": "Sign-in, profile, account settings",
    "what:technical": "Something does not work as expected",
    "what:product": "Questions about a product or plan",
    "what:complaint": "The customer is unhappy with the service",
    "what:feedback": "Suggestions and praise",
    "why:bug": "A defect on our side",
    "why:how_to": "The customer did not know how",
    "why:policy": "Our policy caused it",
    "why:delay": "Something took longer than promised",
    "why:damaged": "Goods arrived damaged or wrong",
    "why:fraud": "Suspected fraud or abuse",
    "why:outage": "An outage or incident",
    "why:other": "None of the above",
}


def upgrade() -> None:
    op.drop_constraint("conversations_status", "conversations", schema=S)
    # 'open' meant waiting for an agent: the router has queued it (or is about to).
    op.execute("UPDATE conversation.conversations SET status = 'queued' WHERE status = 'open'")
    op.create_check_constraint("conversations_status", "conversations", f"status IN ({STATES})", schema=S)
    op.add_column("conversations", sa.Column("snoozed_until", sa.DateTime(timezone=True)), schema=S)
    op.add_column(
        "conversations",
        sa.Column("tags", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        schema=S,
    )
    op.add_column("conversations", sa.Column("queue", sa.Text), schema=S)
    op.add_column("conversations", sa.Column("team", sa.Text), schema=S)
    op.create_check_constraint(
        "conversations_snoozed_until",
        "conversations",
        "(status = 'snoozed') = (snoozed_until IS NOT NULL)",
        schema=S,
    )
    op.create_index("conversations_tags", "conversations", ["tags"], schema=S, postgresql_using="gin")
    op.create_index(
        "conversations_snoozed",
        "conversations",
        ["snoozed_until"],
        schema=S,
        postgresql_where=sa.text("status = 'snoozed'"),
    )
    # An agent's team queue: the waiting conversations of a team, oldest of the highest priority first.
    op.create_index(
        "conversations_team_waiting",
        "conversations",
        ["team", "priority", "opened_at"],
        schema=S,
        postgresql_where=sa.text("status IN ('new', 'queued', 'reopened')"),
    )
    tags = op.create_table(
        "tags",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("name ~ '^(what|why):[a-z0-9][a-z0-9_-]{0,62}$'", name="tags_name"),
        schema=S,
    )
    op.bulk_insert(tags, [{"name": n, "description": d} for n, d in DEFAULT_TAGS.items()])


def downgrade() -> None:
    op.drop_table("tags", schema=S)
    op.drop_index("conversations_team_waiting", "conversations", schema=S)
    op.drop_index("conversations_snoozed", "conversations", schema=S)
    op.drop_index("conversations_tags", "conversations", schema=S)
    op.drop_constraint("conversations_snoozed_until", "conversations", schema=S)
    for column in ("team", "queue", "tags", "snoozed_until"):
        op.drop_column("conversations", column, schema=S)
    op.drop_constraint("conversations_status", "conversations", schema=S)
    op.execute(
        "UPDATE conversation.conversations SET status = CASE "
        "WHEN status IN ('new', 'queued') THEN 'open' "
        "WHEN status IN ('waiting_on_customer', 'waiting_on_agent', 'snoozed') THEN 'assigned' "
        "ELSE status END"
    )
    op.create_check_constraint(
        "conversations_status",
        "conversations",
        "status IN ('open', 'assigned', 'resolved', 'reopened')",
        schema=S,
    )
