"""outbox: message.received events committed with their receipts, published by the relay

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from switchboard_common.db.outbox import outbox_columns

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("outbox", *outbox_columns(), schema="ingest")


def downgrade() -> None:
    op.drop_table("outbox", schema="ingest")
