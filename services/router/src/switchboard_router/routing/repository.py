"""The router's SQL. Reservation is atomic in PostgreSQL: rows are locked with FOR UPDATE SKIP LOCKED and
capacity is taken by a conditional UPDATE, so replicas can never over-assign an agent or assign one
conversation twice."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Float, cast, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_router.models import Agent, AgentStatus, Task, TaskState


async def insert_task(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    required_skills: list[str],
    priority: int,
    channel: str,
    enqueued_at: datetime,
) -> Task | None:
    """Queue a conversation; None when it was already known (a redelivered event)."""
    stmt = (
        insert(Task)
        .values(
            conversation_id=conversation_id,
            state=TaskState.QUEUED.value,
            required_skills=required_skills,
            priority=priority,
            channel=channel,
            enqueued_at=enqueued_at,
        )
        .on_conflict_do_nothing(index_elements=[Task.conversation_id])
        .returning(Task)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock_queued_task(session: AsyncSession, conversation_id: uuid.UUID) -> Task | None:
    stmt = (
        select(Task)
        .where(Task.conversation_id == conversation_id, Task.state == TaskState.QUEUED.value)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock_best_agent(session: AsyncSession, required_skills: list[str]) -> Agent | None:
    """The eligible agent with the most spare capacity (by share), idle longest on ties."""
    stmt = (
        select(Agent)
        .where(
            Agent.status == AgentStatus.ONLINE.value,
            Agent.active_count < Agent.capacity,
            Agent.skills.contains(required_skills),
        )
        .order_by(
            (cast(Agent.active_count, Float) / Agent.capacity).asc(),
            Agent.last_assigned_at.asc().nulls_first(),
            Agent.id,
        )
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock_agent(session: AsyncSession, agent_id: uuid.UUID) -> Agent | None:
    stmt = select(Agent).where(Agent.id == agent_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock_queued_tasks_for(session: AsyncSession, skills: list[str], limit: int) -> Sequence[Task]:
    """Queued tasks the skills cover: highest priority first, then oldest."""
    stmt = (
        select(Task)
        .where(Task.state == TaskState.QUEUED.value, Task.required_skills.contained_by(skills))
        .order_by(Task.priority.desc(), Task.enqueued_at, Task.conversation_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def oldest_queued(session: AsyncSession, limit: int) -> Sequence[uuid.UUID]:
    stmt = (
        select(Task.conversation_id)
        .where(Task.state == TaskState.QUEUED.value)
        .order_by(Task.priority.desc(), Task.enqueued_at)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def reserve_capacity(session: AsyncSession, agent_id: uuid.UUID, at: datetime) -> bool:
    """Take one unit of the agent's capacity if they are online and have it; the single source of truth."""
    stmt = (
        update(Agent)
        .where(
            Agent.id == agent_id,
            Agent.status == AgentStatus.ONLINE.value,
            Agent.active_count < Agent.capacity,
        )
        .values(active_count=Agent.active_count + 1, last_assigned_at=at)
        .returning(Agent.id)
    )
    return (await session.scalar(stmt)) is not None


async def release_capacity(session: AsyncSession, agent_id: uuid.UUID) -> None:
    await session.execute(
        update(Agent)
        .where(Agent.id == agent_id, Agent.active_count > 0)
        .values(active_count=Agent.active_count - 1)
    )


async def mark_assigned(
    session: AsyncSession, conversation_id: uuid.UUID, agent_id: uuid.UUID, at: datetime
) -> bool:
    stmt = (
        update(Task)
        .where(Task.conversation_id == conversation_id, Task.state == TaskState.QUEUED.value)
        .values(state=TaskState.ASSIGNED.value, agent_id=agent_id, assigned_at=at)
        .returning(Task.conversation_id)
    )
    return (await session.scalar(stmt)) is not None


async def close_task(session: AsyncSession, conversation_id: uuid.UUID, at: datetime) -> Task | None:
    """Close a task that is not closed yet; returns it as it was (state and agent before closing)."""
    task = (
        await session.execute(
            select(Task)
            .where(Task.conversation_id == conversation_id, Task.state != TaskState.CLOSED.value)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if task is None:
        return None
    previous = Task(conversation_id=task.conversation_id, state=task.state, agent_id=task.agent_id)
    task.state = TaskState.CLOSED.value
    task.closed_at = at
    await session.flush()
    return previous


async def queue_snapshot(session: AsyncSession, limit: int) -> Sequence[Task]:
    stmt = (
        select(Task)
        .where(Task.state == TaskState.QUEUED.value)
        .order_by(Task.priority.desc(), Task.enqueued_at)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def queue_length(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(Task.state == TaskState.QUEUED.value)) or 0)
