"""The assignment engine: skills (the agent must have every required skill), load (most spare capacity
first, then the agent idle longest), queue order (priority, then age)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    ConversationAssigned,
    ConversationOpened,
    ConversationQueued,
    ConversationResolved,
    EventEnvelope,
    utcnow,
)
from switchboard_router.models import AgentStatus, Task, TaskState
from switchboard_router.routing import repository

PRODUCER = "router"


async def _assign(
    session: AsyncSession, outbox: Outbox, task: Task, agent_id: uuid.UUID, cause: EventEnvelope | None
) -> bool:
    now = utcnow()
    if not await repository.reserve_capacity(session, agent_id, now):
        return False
    if not await repository.mark_assigned(session, task.conversation_id, agent_id, now):
        raise RuntimeError(f"task {task.conversation_id} was locked but is no longer queued")
    assigned = ConversationAssigned(
        conversation_id=task.conversation_id, agent_id=agent_id, queued_at=task.enqueued_at, assigned_at=now
    )
    envelope = EventEnvelope.wrap(assigned, producer=PRODUCER, causation=cause)
    await outbox.add(session, topics.ROUTING_EVENTS, str(task.conversation_id), envelope)
    return True


async def try_assign(
    session: AsyncSession, outbox: Outbox, conversation_id: uuid.UUID, cause: EventEnvelope | None = None
) -> uuid.UUID | None:
    """Assign a queued conversation to the best eligible agent; returns the agent, or None if it waits."""
    task = await repository.lock_queued_task(session, conversation_id)
    if task is None:
        return None  # assigned meanwhile, or another transaction is routing it right now
    agent = await repository.lock_best_agent(session, task.required_skills)
    if agent is None or not await _assign(session, outbox, task, agent.id, cause):
        return None
    return agent.id


async def fill_agent(session: AsyncSession, outbox: Outbox, agent_id: uuid.UUID) -> int:
    """Give an agent queued work up to their free capacity; returns how many were assigned."""
    agent = await repository.lock_agent(session, agent_id)
    if agent is None or agent.status != AgentStatus.ONLINE.value:
        return 0
    free = agent.capacity - agent.active_count
    if free <= 0:
        return 0
    assigned = 0
    for task in await repository.lock_queued_tasks_for(session, agent.skills, free):
        if await _assign(session, outbox, task, agent.id, None):
            assigned += 1
    return assigned


async def on_conversation_opened(
    session: AsyncSession, outbox: Outbox, envelope: EventEnvelope, event: ConversationOpened
) -> None:
    task = await repository.insert_task(
        session,
        event.conversation_id,
        sorted(event.required_skills),
        event.priority,
        event.channel.value,
        utcnow(),
    )
    if task is None:
        return  # already routed or routing: a redelivery
    queued = ConversationQueued(
        conversation_id=task.conversation_id,
        required_skills=task.required_skills,
        priority=task.priority,
        queued_at=task.enqueued_at,
    )
    await outbox.add(
        session,
        topics.ROUTING_EVENTS,
        str(task.conversation_id),
        EventEnvelope.wrap(queued, producer=PRODUCER, causation=envelope),
    )
    await session.flush()
    await try_assign(session, outbox, task.conversation_id, envelope)


async def on_conversation_resolved(
    session: AsyncSession, outbox: Outbox, event: ConversationResolved
) -> None:
    previous = await repository.close_task(session, event.conversation_id, event.resolved_at)
    if previous is None or previous.state != TaskState.ASSIGNED.value or previous.agent_id is None:
        return
    await repository.release_capacity(session, previous.agent_id)
    await fill_agent(session, outbox, previous.agent_id)


async def sweep(session: AsyncSession, outbox: Outbox, limit: int = 100) -> int:
    """Try to place the oldest waiting conversations. Covers the race in which a conversation is queued
    while, in another transaction, the only eligible agent comes online: neither sees the other."""
    assigned = 0
    for conversation_id in await repository.oldest_queued(session, limit):
        if await try_assign(session, outbox, conversation_id) is not None:
            assigned += 1
    return assigned
