from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    func,
    text,
)
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


class DispatchState(StrEnum):
    """A reply's place in the dispatcher: waiting (or retrying), sent, refused for good, or given up."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class OutboundDelivery(Base):
    """An agent's reply to send. Its schedule is a row, not a place in a partition: a failing provider
    delays only its own replies, never another channel's."""

    __tablename__ = "outbound_deliveries"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'sent', 'failed', 'dead')", name="outbound_deliveries_state"),
        Index("outbound_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        Index(
            "outbound_deliveries_conversation_pending",
            "conversation_id",
            "seq",
            postgresql_where=text("state = 'pending'"),
        ),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column()
    channel: Mapped[str] = mapped_column(Text)
    recipient: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    envelope: Mapped[str] = mapped_column(Text)  # the message.outbound event, dead-lettered as it came
    state: Mapped[str] = mapped_column(Text, server_default=DispatchState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # Pending: when it is due. A claimed reply's is pushed a lease ahead, so a sender that died mid-call
    # leaves it due again then.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    external_id: Mapped[str | None] = mapped_column(Text)  # the provider's id, once sent
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


from switchboard_ingest.webchat import models as _webchat_models  # noqa: E402, F401 - registers web chat's tables
