from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, MetaData, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switchboard_common.db.outbox import define_outbox_table

SCHEMA = "ingest"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


# message.received events, committed in the same transaction as their receipts; the relay publishes them.
outbox_table = define_outbox_table(Base.metadata)


class Receipt(Base):
    """One row per (channel, provider message id) ever accepted: the dedup key for provider retries."""

    __tablename__ = "receipts"

    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    # sha256 of the normalized message (service.content_digest): the same id with another message is a
    # client bug (409), not a retry.
    content_digest: Mapped[str] = mapped_column(Text, nullable=False)
    # The event's received_at. Committed together with the message.received outbox row: a receipt means
    # "durable, and will be published".
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
