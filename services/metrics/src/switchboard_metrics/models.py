from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Integer, MetaData, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "metrics"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class PartitionOffset(Base):
    """The next offset to count, per partition read by the metrics group, written in the same transaction
    as the counts: a redelivered record (offset below it) is not counted again. One row per partition,
    whatever the traffic."""

    __tablename__ = "partition_offsets"
    __table_args__ = (CheckConstraint("next_offset >= 0", name="partition_offsets_next_offset_non_negative"),)

    topic: Mapped[str] = mapped_column(Text, primary_key=True)  # physical name (with the prefix)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


class EventCount(Base):
    __tablename__ = "event_counts"

    event_type: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class ConversationFact(Base):
    """Raw timestamps per conversation, so KPI definitions can change and be recomputed. Events arrive from
    several topics in any order, so every column is filled independently, and a column once set keeps its
    value: applying an event twice changes nothing (idempotent by the conversation id)."""

    __tablename__ = "conversation_facts"

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    channel: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[uuid.UUID | None] = mapped_column()
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
