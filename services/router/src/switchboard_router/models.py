from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switchboard_common.db.outbox import define_outbox_table
from switchboard_common.events import AgentStatus

SCHEMA = "router"
__all__ = [
    "SCHEMA",
    "Agent",
    "AgentPresence",
    "AgentStatus",
    "Base",
    "Queue",
    "Task",
    "TaskState",
    "Team",
    "outbox_table",
]


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


outbox_table = define_outbox_table(Base.metadata)


class TaskState(StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"  # held for one agent, who has until offer_expires_at to accept
    ASSIGNED = "assigned"
    CLOSED = "closed"


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("active_count >= 0", name="agents_active_count_non_negative"),
        CheckConstraint("capacity >= 0", name="agents_capacity_non_negative"),
        Index("agents_skills", "skills", postgresql_using="gin"),
        # Unique among the agents not deleted: a deleted agent's email may be given to someone new.
        Index("agents_email_live", "email", unique=True, postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(Text)
    # The keys of ``proficiency``, kept as an array so the GIN index answers "has these skills".
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text))
    proficiency: Mapped[dict[str, int]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    languages: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    teams: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    # "agent" or "supervisor" (sees every conversation); carried by the agent's token.
    role: Mapped[str] = mapped_column(Text, server_default=text("'agent'"))
    capacity: Mapped[int] = mapped_column(Integer)  # in total, across workloads
    # Per workload, in routing.policy.WORKLOADS order (chat, messaging, email, voice).
    capacities: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    status: Mapped[str] = mapped_column(Text, default=AgentStatus.OFFLINE.value)
    # Conversations offered or assigned and not resolved, in total and per workload; reserved and released
    # only by atomic UPDATEs.
    active_count: Mapped[int] = mapped_column(Integer, default=0)
    loads: Mapped[list[int]] = mapped_column(ARRAY(Integer), server_default=text("'{0,0,0,0}'"))
    last_assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Deleted agents are kept (tasks and their history name them) but never routed to, listed or
    # authenticated again.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Team(Base):
    """A team of agents, and how they take work: auto-accept, or offers that wait for an answer."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    auto_accept: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    offer_timeout_s: Mapped[int] = mapped_column(Integer, server_default=text("30"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Queue(Base):
    """A queue's settings; a queue named by a routing rule without a row here uses the defaults."""

    __tablename__ = "queues"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    policy: Mapped[str] = mapped_column(Text, server_default=text("'least_loaded'"))  # routing.policy.Policy
    # routing.escalation.Step objects, by increasing after_s.
    escalation: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # The team serving it: its agents see the conversations waiting in it, and its business hours apply to
    # them (a queue without one is served by the default queue's team).
    team: Mapped[str | None] = mapped_column(ForeignKey("teams.name", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AgentPresence(Base):
    """Heartbeats, apart from ``agents``: routing locks agent rows, and a heartbeat must never wait on it."""

    __tablename__ = "agent_presence"

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Task(Base):
    """The routing of one conversation: queued until an agent is reserved for it, then assigned."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index(
            "tasks_queue_order",
            text("priority DESC"),
            "enqueued_at",
            "conversation_id",
            postgresql_where=text("state = 'queued'"),
        ),
        Index("tasks_agent_state", "agent_id", "state"),
        # The most recently closed assignments, whose durations are the queue estimates' handle times.
        Index(
            "tasks_closed", "closed_at", postgresql_where=text("state = 'closed' AND assigned_at IS NOT NULL")
        ),
        # The customer's previous agent (sticky routing).
        Index("tasks_customer", "customer_id", "assigned_at", postgresql_where=text("agent_id IS NOT NULL")),
        Index("tasks_offers", "offer_expires_at", postgresql_where=text("state = 'offered'")),
        # Assignments not answered yet, which the sweeper requeues after the no-answer time.
        Index(
            "tasks_unanswered",
            "assigned_at",
            postgresql_where=text("state = 'assigned' AND answered_at IS NULL"),
        ),
        # Waiting tasks with an SLA target not yet breached, which the sweeper watches.
        Index(
            "tasks_sla_watch",
            "enqueued_at",
            postgresql_where=text(
                "state = 'queued' AND sla_target_s IS NOT NULL AND sla_breached_at IS NULL"
            ),
        ),
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(Text, default=TaskState.QUEUED.value)
    customer_id: Mapped[uuid.UUID | None] = mapped_column()  # none for tasks older than sticky routing
    # Sorted by skill, with each one's minimum proficiency at the same place in ``min_levels``.
    required_skills: Mapped[list[str]] = mapped_column(ARRAY(Text))
    min_levels: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger), server_default=text("'{}'"))
    # What was decided, before escalation widened it (routing.escalation); the steps taken so far.
    base_skills: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    base_levels: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger), server_default=text("'{}'"))
    escalation_step: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    language: Mapped[str | None] = mapped_column(Text)  # required of the agent, when a rule says so
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    # What the routing rule that matched decided (the default queue when none did).
    queue: Mapped[str] = mapped_column(Text, server_default=text("'default'"))
    optional_skills: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    sla_target_s: Mapped[int | None] = mapped_column(Integer)
    rule_id: Mapped[uuid.UUID | None] = mapped_column()
    sla_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(Text)
    workload: Mapped[int] = mapped_column(SmallInteger, server_default=text("2"))  # 1-based, policy.WORKLOADS
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"))
    # Agents who declined an offer of it or let one lapse: not offered it again.
    declined_by: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), server_default=text("'{}'"))
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    offered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    offer_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the agent's first reply
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# The routing rules table is defined in its own module; importing it here puts it in Base.metadata
# (migrations, tests/integration/test_schemas.py).
from switchboard_router.hours import models as _hours_models  # noqa: E402, F401
from switchboard_router.rules import models as _rules_models  # noqa: E402, F401
from switchboard_router.skills import models as _skills_models  # noqa: E402, F401
