from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "metrics"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class EventCount(Base):
    """Per event type, how many of its natural keys became known (see ``kpis.facts``)."""

    __tablename__ = "event_counts"

    event_type: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class MessageFact(Base):
    """Raw facts per message, from ``message.received`` and ``conversation.message_added`` in any order:
    every column is filled independently and, once set, keeps its value."""

    __tablename__ = "message_facts"
    __table_args__ = (
        Index("message_facts_received_at", "received_at"),
        Index("message_facts_conversation", "conversation_id"),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    channel: Mapped[str | None] = mapped_column(Text)
    direction: Mapped[str | None] = mapped_column(Text)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    agent_id: Mapped[uuid.UUID | None] = mapped_column()
    automated: Mapped[bool | None] = mapped_column(Boolean)


class ConversationFact(Base):
    """Raw timestamps per conversation, so KPI definitions can change and be recomputed. Events arrive from
    several topics in any order, so every column is filled independently, and a column once set keeps its
    value: applying an event twice changes nothing (idempotent by the conversation id)."""

    __tablename__ = "conversation_facts"
    __table_args__ = (
        Index("conversation_facts_open", "conversation_id", postgresql_where=text("is_open")),
        Index("conversation_facts_opened_at", "opened_at"),
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    channel: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[uuid.UUID | None] = mapped_column()
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A conversation.queued event was seen (queued_at is also told by conversation.assigned).
    queued: Mapped[bool | None] = mapped_column()
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    customer_id: Mapped[uuid.UUID | None] = mapped_column()
    queue: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    # When the tags were told: the opening, or the latest tag change (the tags of the latest one stay).
    tags_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    channels: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    first_reply_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[uuid.UUID | None] = mapped_column()
    first_reopened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_reopened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    is_open: Mapped[bool | None] = mapped_column(
        Boolean,
        Computed(
            "last_resolved_at IS NULL OR coalesce(last_reopened_at > last_resolved_at, false)", persisted=True
        ),
    )


class AgentStatusChange(Base):
    """One row per agent status change, inserted if absent: the raw material for time in each status."""

    __tablename__ = "agent_status_changes"

    agent_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    # The agent's capacity then, when the event carried it (the latest told is their capacity now).
    capacity: Mapped[int | None] = mapped_column(Integer)


class ConversationReopen(Base):
    """One row per reopening of a conversation, inserted if absent (a conversation may reopen many times, so
    the key is the conversation and when it reopened)."""

    __tablename__ = "conversation_reopens"

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    reopened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)


class ConversationRetag(Base):
    """One row per change of a conversation's tags (``conversation.tags_changed``), inserted if absent: each
    change counts once, whatever the order its events come in; the tags it carries now are in the facts."""

    __tablename__ = "conversation_retags"

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)


class ConversationHandoff(Base):
    """An assignment of a conversation to an agent, or its requeue (taken back): the conversation's
    holder now is read from the latest one by time."""

    __tablename__ = "conversation_handoffs"

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column()


class KpiCell(Base):
    """One cell of the KPI rollups (see ``kpis.observe``): how many observations, and their seconds, of
    one metric in one minute, for one channel, queue, agent and tag ('' for none or all), in one sketch
    bin (0 for counts). Windows and filters are sums of cells."""

    __tablename__ = "kpi_cells"

    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    metric: Mapped[str] = mapped_column(Text, primary_key=True)
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    agent: Mapped[str] = mapped_column(Text, primary_key=True)
    tag: Mapped[str] = mapped_column(Text, primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)


class SurveyAnswer(Base):
    """An answered satisfaction survey (``survey.answered``), keyed by the survey: a redelivery adds
    nothing."""

    __tablename__ = "survey_answers"
    __table_args__ = (Index("survey_answers_answered_at", "answered_at"),)

    survey_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(Text)  # csat, nps, ces
    score: Mapped[int] = mapped_column(SmallInteger)
    follow_up: Mapped[bool] = mapped_column(Boolean)
    channel: Mapped[str] = mapped_column(Text)
    agent_id: Mapped[uuid.UUID | None] = mapped_column()
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeliveryFact(Base):
    """When each delivery state of an outbound message was first reported (``delivery.status_changed``),
    keyed by the channel and the provider's message id (our message id for a send that failed for good,
    which has none). Each state has its own column, kept at its earliest report: reports come in any
    order and again, and a late ``delivered`` never undoes a ``read``."""

    __tablename__ = "delivery_facts"

    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    subject: Mapped[str] = mapped_column(Text, primary_key=True)
    message_id: Mapped[uuid.UUID | None] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RoutingOccurrence(Base):
    """Something the router did to a waiting conversation, once each (a redelivery adds nothing): an offer
    to an agent and how it ended (accepted, declined, timed out), an escalation step, an SLA breach. Offers
    are counted by agent, escalations and breaches by queue (see ``kpis.facts.Occurrence``)."""

    __tablename__ = "routing_occurrences"
    __table_args__ = (Index("routing_occurrences_at", "at"),)

    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    agent_id: Mapped[uuid.UUID | None] = mapped_column()
    queue: Mapped[str | None] = mapped_column(Text)
