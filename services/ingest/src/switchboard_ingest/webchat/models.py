"""Web chat tables, on ingest's metadata (``switchboard_ingest.models`` imports this module so that Alembic
and the schema test see them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from switchboard_ingest.models import Base


class WebchatSession(Base):
    """A visitor's session, as issued: its token is self-contained, so this is the record of who was given
    one and until when (support, audit, purging), not something every request reads."""

    __tablename__ = "webchat_sessions"

    session_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebchatOutboxRow(Base):
    """An agent's reply for a web chat identity. ``seq`` is the stream's event id: one identity's rows are
    written one transaction at a time (an advisory lock), so their seq order is their commit order and a
    stream that resumes after the last id it sent can miss none."""

    __tablename__ = "webchat_outbox"
    __table_args__ = (Index("webchat_outbox_identity_seq", "identity", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    identity: Mapped[str] = mapped_column(Text)
    # A reply sent again (the dispatcher's lease ran out mid-send) is the same row, the same event id.
    message_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebchatRateCounter(Base):
    """Hits on one rate-limit key (a session's messages, an address's messages or new sessions) in its
    current window, shared by every replica. One row per key, reset in place when its window has ended."""

    __tablename__ = "webchat_rate_counters"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hits: Mapped[int] = mapped_column(Integer)
