from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, MetaData, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "metrics"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class ProcessedEvent(Base):
    """Event ids already counted: makes every count idempotent under redelivery."""

    __tablename__ = "processed_events"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class EventCount(Base):
    __tablename__ = "event_counts"

    event_type: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class ConversationFact(Base):
    """Raw timestamps per conversation, so KPI definitions can change and be recomputed. Events arrive from
    several topics in any order, so every column is filled independently."""

    __tablename__ = "conversation_facts"

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    channel: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[uuid.UUID | None] = mapped_column()
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
