from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switchboard_common.db.outbox import define_outbox_table

SCHEMA = "conversation"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


outbox_table = define_outbox_table(Base.metadata)


class ConversationStatus(StrEnum):
    """Where a conversation stands. Waiting for an agent: new (not yet queued by the router), queued,
    reopened. With an agent: assigned, waiting_on_customer (the agent answered last), waiting_on_agent (the
    customer wrote last), snoozed (until a time, or the customer's next message). Then resolved."""

    NEW = "new"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    WAITING_ON_CUSTOMER = "waiting_on_customer"
    WAITING_ON_AGENT = "waiting_on_agent"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    REOPENED = "reopened"  # resolved, then the customer wrote again within the window: waiting again


# Waiting for an agent: visible in the queue of the team that serves it.
WAITING = (ConversationStatus.NEW, ConversationStatus.QUEUED, ConversationStatus.REOPENED)
# With an agent (the router holds the agent's capacity for it).
WITH_AGENT = (
    ConversationStatus.ASSIGNED,
    ConversationStatus.WAITING_ON_CUSTOMER,
    ConversationStatus.WAITING_ON_AGENT,
    ConversationStatus.SNOOZED,
)


class MessageDirection(StrEnum):
    """An item of the thread: a customer's message, an agent's reply, or an internal note (never sent)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NOTE = "note"


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    display_name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set when merged into another customer: this row stays as a tombstone so an old id still resolves.
    merged_into: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))


class CustomerIdentity(Base):
    """A way to reach a customer: (kind, value) such as ("phone", "+14155550100"). Unique across customers."""

    __tablename__ = "customer_identities"

    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Conversation(Base):
    """One thread per customer across every channel; at most one not resolved at a time."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index(
            "conversations_one_unresolved_per_customer",
            "customer_id",
            unique=True,
            postgresql_where=text("status <> 'resolved'"),
        ),
        Index("conversations_agent_status", "assigned_agent_id", "status"),
        # A returning customer's latest resolution (the reopen decision), and their history.
        Index("conversations_customer_resolved", "customer_id", "resolved_at"),
        Index("conversations_tags", "tags", postgresql_using="gin"),
        Index("conversations_snoozed", "snoozed_until", postgresql_where=text("status = 'snoozed'")),
        Index(
            "conversations_team_waiting",
            "team",
            "priority",
            "opened_at",
            postgresql_where=text("status IN ('new', 'queued', 'reopened')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(Text, default=ConversationStatus.NEW.value)
    first_channel: Mapped[str] = mapped_column(Text)
    last_channel: Mapped[str] = mapped_column(Text)
    required_skills: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    assigned_agent_id: Mapped[uuid.UUID | None] = mapped_column()
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_message_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reopened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # When an agent first replied: the raw fact for first response time.
    first_replied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    snoozed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # "what:..." and "why:..." names from the tags catalogue.
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default=text("'{}'"))
    # The router's queue for it, and the team serving that queue: agents of the team see it while it waits.
    queue: Mapped[str | None] = mapped_column(Text)
    team: Mapped[str | None] = mapped_column(Text)
    # A low satisfaction score asks for someone to follow the customer up.
    follow_up: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Closed by a customer merge (status resolved): its messages moved into this conversation.
    merged_into: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("conversations.id"))


class Message(Base):
    """An item of a conversation's thread: an inbound message, an agent's reply or an internal note."""

    __tablename__ = "messages"
    __table_args__ = (
        # The provider's id is unique within its channel: a redelivered message is never stored twice.
        Index("messages_channel_external_id", "channel", "external_id", unique=True),
        Index("messages_conversation_sent", "conversation_id", "sent_at"),
        # An agent's request repeated with its idempotency key (a double click, a client retry) is one reply.
        Index(
            "messages_conversation_idempotency_key",
            "conversation_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id"))
    channel: Mapped[str | None] = mapped_column(Text)  # none for a note
    # The provider's id: none for an agent's reply (until the dispatcher sends it) and for a note.
    external_id: Mapped[str | None] = mapped_column(Text)
    direction: Mapped[str] = mapped_column(Text)  # MessageDirection
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    author_agent_id: Mapped[uuid.UUID | None] = mapped_column()  # replies and notes
    delivery_status: Mapped[str | None] = mapped_column(Text)  # events.DeliveryState, replies only
    idempotency_key: Mapped[str | None] = mapped_column(Text)  # replies only
    # Media the customer sent, as references (a list of events.Attachment); none when there is none.
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    content_kind: Mapped[str | None] = mapped_column(Text)  # events.MessageReceived.content_kind
    # Email: the subject, the text as written when ``body`` shows less (quotes and signature stripped), and
    # the Message-IDs it answers (a reply's threading headers are built from them).
    subject: Mapped[str | None] = mapped_column(Text)
    original_body: Mapped[str | None] = mapped_column(Text)
    thread_refs: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    delivery_error: Mapped[str | None] = mapped_column(Text)  # why a reply failed, as the provider said
    delivery_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # An outbound message sent by automation (an acknowledgement), not typed by an agent: it is no first
    # response.
    automated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


class Survey(Base):
    """A satisfaction survey asked after a resolution, through the customer's channel; answered by their
    next message when that is a score on its scale."""

    __tablename__ = "surveys"
    __table_args__ = (
        Index("surveys_pending", "customer_id", postgresql_where=text("answered_at IS NULL")),
        Index("surveys_conversation", "conversation_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(Text)  # surveys.policy.SurveyKind
    channel: Mapped[str] = mapped_column(Text)
    agent_id: Mapped[uuid.UUID | None] = mapped_column()  # who had the conversation when it was resolved
    asked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    score: Mapped[int | None] = mapped_column(SmallInteger)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answer_message_id: Mapped[uuid.UUID | None] = mapped_column()


class Tag(Base):
    """The catalogue of tags agents may put on a conversation: "what" it is about and "why" it happened."""

    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(Text, primary_key=True)  # "what:refund", "why:bug"
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeliveryReport(Base):
    """A provider's report on a sent message, keyed by the provider's id: it can arrive before the
    dispatcher's report that ties that id to the reply, so reports are kept and folded into the message."""

    __tablename__ = "delivery_reports"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'sent', 'delivered', 'read', 'failed')", name="delivery_reports_status"
        ),
    )

    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    error_code: Mapped[str | None] = mapped_column(Text)
    error_reason: Mapped[str | None] = mapped_column(Text)


class AgentFeedItem(Base):
    """An item of an agent's realtime stream (``/v1/stream``), written in the transaction of the change it
    reports; a trigger notifies the streams on commit. Kept ``SWITCHBOARD_STREAM_RETENTION_S``."""

    __tablename__ = "agent_feed"
    __table_args__ = (
        UniqueConstraint("agent_id", "kind", "item_key", name="agent_feed_item"),
        Index("agent_feed_agent_position", "agent_id", "tx", "seq"),
        Index("agent_feed_position", "tx", "seq"),
        Index("agent_feed_at", "at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The writing transaction's id: the stream's order is (tx, seq) (docs/agent-stream.md).
    tx: Mapped[int] = mapped_column(BigInteger, server_default=text("(pg_current_xact_id())::text::bigint"))
    agent_id: Mapped[uuid.UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(Text)  # stream.schemas.FeedKind
    item_key: Mapped[str] = mapped_column(Text)
    conversation_id: Mapped[uuid.UUID] = mapped_column()
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomerMerge(Base):
    """The audit of a merge: who merged which customer into which, when, and what moved."""

    __tablename__ = "customer_merges"
    __table_args__ = (Index("customer_merges_source", "source_customer_id", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    source_customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    target_customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    merged_by_agent_id: Mapped[uuid.UUID | None] = mapped_column()  # none: the admin credential
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    identities: Mapped[list[dict[str, str]]] = mapped_column(JSONB)  # [{"kind", "value"}] moved
    conversation_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))  # moved to the target
    closed_conversation_id: Mapped[uuid.UUID | None] = mapped_column()  # the source's, closed
    kept_conversation_id: Mapped[uuid.UUID | None] = mapped_column()  # the target's, which took its messages


# Canned responses are defined in their own module; importing it here puts them in Base.metadata
# (migrations, tests/integration/test_schemas.py).
from switchboard_conversation.automation import models as _automation_models  # noqa: E402, F401


class RevokedAgent(Base):
    """An agent deleted at the router (``agent.deleted``): this service refuses their tokens (revoked.py)."""

    __tablename__ = "revoked_agents"

    agent_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
