from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switchboard_common.db.outbox import define_outbox_table
from switchboard_common.events import AgentStatus

SCHEMA = "router"
__all__ = ["SCHEMA", "Agent", "AgentStatus", "Base", "Task", "TaskState", "outbox_table"]


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


outbox_table = define_outbox_table(Base.metadata)


class TaskState(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    CLOSED = "closed"


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("active_count >= 0", name="agents_active_count_non_negative"),
        CheckConstraint("capacity >= 0", name="agents_capacity_non_negative"),
        Index("agents_skills", "skills", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(Text, unique=True)
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text))
    capacity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text, default=AgentStatus.OFFLINE.value)
    # Conversations assigned and not resolved; reserved and released only by atomic UPDATEs.
    active_count: Mapped[int] = mapped_column(Integer, default=0)
    last_assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Task(Base):
    """The routing of one conversation: queued until an agent is reserved for it, then assigned."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("tasks_queue", "priority", "enqueued_at", postgresql_where=text("state = 'queued'")),
        Index("tasks_agent_state", "agent_id", "state"),
        # The most recently closed assignments, whose durations are the queue estimates' handle times.
        Index(
            "tasks_closed", "closed_at", postgresql_where=text("state = 'closed' AND assigned_at IS NOT NULL")
        ),
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(Text, default=TaskState.QUEUED.value)
    required_skills: Mapped[list[str]] = mapped_column(ARRAY(Text))
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    channel: Mapped[str] = mapped_column(Text)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"))
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
