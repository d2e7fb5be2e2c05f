"""Agents: creation, skills and capacity, presence. An agent coming online or gaining capacity is given
queued work at once, in the same transaction. And the queue they serve: positions and estimated waits
(``routing.estimate``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.auth import Principal
from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Conflict, NotFound
from switchboard_common.events import (
    AgentCapacityChanged,
    AgentDeleted,
    AgentStatusChanged,
    EventEnvelope,
    utcnow,
)
from switchboard_router.agents import repository
from switchboard_router.agents.schemas import (
    AgentCreate,
    AgentUpdate,
    ChannelCapacity,
    QueueUpsert,
    TeamUpsert,
    proficiency_of,
)
from switchboard_router.models import Agent, AgentStatus, Queue, Task, Team
from switchboard_router.routing import estimate
from switchboard_router.routing import repository as routing_repository
from switchboard_router.routing import service as routing_service
from switchboard_router.routing.estimate import Estimate
from switchboard_router.routing.policy import WORKLOADS, Requirement, Waiting
from switchboard_router.routing.repository import QueuedTask
from switchboard_router.routing.service import PRODUCER, assign_queued
from switchboard_router.settings import RouterSettings
from switchboard_router.skills import service as skills_service


def _capacities(total: int, per: ChannelCapacity, current: Sequence[int] | None = None) -> list[int]:
    """Per workload: what the body says, else what the agent had, else the total."""
    given = per.model_dump()
    return [
        given[w] if given[w] is not None else (current[i] if current is not None else total)
        for i, w in enumerate(WORKLOADS)
    ]


async def create(session: AsyncSession, body: AgentCreate) -> Agent:
    proficiency = proficiency_of(body.skills)
    await skills_service.require_known(session, proficiency)
    agent = await repository.insert_agent(
        session,
        body.name,
        body.email,
        proficiency,
        sorted(set(body.languages)),
        sorted(set(body.teams)),
        body.role.value,
        body.capacity,
        _capacities(body.capacity, body.channel_capacity),
    )
    if agent is None:
        raise Conflict(f"an agent with email {body.email} exists", code="email_taken")
    return agent


async def get(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, *, for_update: bool = False
) -> Agent:
    """An agent the principal may see; anyone else's answers NotFound like a missing one."""
    agent = await repository.get_readable(session, principal, agent_id, for_update=for_update)
    if agent is None:
        raise NotFound("agent not found")
    return agent


async def update(
    session: AsyncSession, outbox: Outbox, principal: Principal, agent_id: uuid.UUID, body: AgentUpdate
) -> Agent:
    agent = await get(session, principal, agent_id, for_update=True)
    if body.skills is not None:
        agent.proficiency = proficiency_of(body.skills)
        await skills_service.require_known(session, agent.proficiency)
        agent.skills = sorted(agent.proficiency)
    if body.languages is not None:
        agent.languages = sorted(set(body.languages))
    if body.teams is not None:
        agent.teams = sorted(set(body.teams))
    if body.role is not None:
        agent.role = body.role.value
    # Lowering capacity below the current load reassigns nothing; new work waits until load drops.
    if body.capacity is not None and body.capacity != agent.capacity:
        resized = AgentCapacityChanged(
            agent_id=agent.id,
            capacity=body.capacity,
            previous_capacity=agent.capacity,
            status=AgentStatus(agent.status),
            changed_at=utcnow(),
        )
        agent.capacity = body.capacity
        await outbox.add(
            session, topics.AGENT_EVENTS, str(agent.id), EventEnvelope.wrap(resized, producer=PRODUCER)
        )
    if body.channel_capacity is not None:
        agent.capacities = _capacities(agent.capacity, body.channel_capacity, agent.capacities)
    await session.flush()
    if await assign_queued(session, outbox, [agent.id]):
        await session.refresh(agent)
    return agent


async def _change_status(
    session: AsyncSession, outbox: Outbox, agent: Agent, status: AgentStatus, now: datetime
) -> None:
    """Set the locked agent's presence and announce it (``agent.status_changed``)."""
    changed = AgentStatusChanged(
        agent_id=agent.id,
        status=status,
        previous_status=AgentStatus(agent.status),
        changed_at=now,
        capacity=agent.capacity,
    )
    agent.status = status.value
    agent.status_changed_at = now
    await session.flush()
    await outbox.add(
        session, topics.AGENT_EVENTS, str(agent.id), EventEnvelope.wrap(changed, producer=PRODUCER)
    )


async def set_status(
    session: AsyncSession, outbox: Outbox, principal: Principal, agent_id: uuid.UUID, status: AgentStatus
) -> Agent:
    """Change presence (which counts as a heartbeat); an agent coming online is given queued work at once,
    one going offline hands back their offers at once (and their conversations after the grace period)."""
    agent = await get(session, principal, agent_id, for_update=True)
    previous = AgentStatus(agent.status)
    now = utcnow()
    await routing_repository.touch_presence(session, agent.id, now)
    if previous is not status:
        await _change_status(session, outbox, agent, status, now)
        if status is AgentStatus.OFFLINE:
            await routing_service.agents_went_offline(session, outbox, [agent.id])
            await session.refresh(agent)
    if status is AgentStatus.ONLINE and await assign_queued(session, outbox, [agent.id]):
        await session.refresh(agent)
    return agent


async def delete(session: AsyncSession, outbox: Outbox, principal: Principal, agent_id: uuid.UUID) -> None:
    """Delete an agent, softly: the row stays for the history that names it (tasks, assignments), but the
    agent is offline for good, never routed to, listed or authenticated again. Their offers and assigned
    conversations go back to the queue at once with their original age. NotFound for an unknown agent or
    one already deleted."""
    agent = await get(session, principal, agent_id, for_update=True)
    now = utcnow()
    agent.deleted_at = now
    if agent.status != AgentStatus.OFFLINE.value:
        await _change_status(session, outbox, agent, AgentStatus.OFFLINE, now)
    await session.flush()
    deleted = AgentDeleted(agent_id=agent.id, deleted_at=now)
    await outbox.add(
        session, topics.AGENT_EVENTS, str(agent.id), EventEnvelope.wrap(deleted, producer=PRODUCER)
    )
    await routing_service.agents_deleted(session, outbox, [agent.id])


async def heartbeat(session: AsyncSession, principal: Principal, agent_id: uuid.UUID) -> None:
    """The agent's desktop is alive. Written apart from the agent's row: a heartbeat never waits for
    routing, and never changes presence by itself (an offline agent comes back through their status)."""
    if await repository.get_readable(session, principal, agent_id) is None:
        raise NotFound("agent not found")
    await routing_repository.touch_presence(session, agent_id, utcnow())


async def upsert_team(session: AsyncSession, name: str, body: TeamUpsert) -> Team:
    return await repository.upsert_named(session, Team, name, body.model_dump())


async def upsert_queue(session: AsyncSession, name: str, body: QueueUpsert) -> Queue:
    if body.team is not None and await session.get(Team, body.team) is None:
        raise Conflict("no such team", code="unknown_team")
    values = {
        "policy": body.policy.value,
        "escalation": [step.model_dump() for step in body.escalation],
        "team": body.team,
    }
    return await repository.upsert_named(session, Queue, name, values)


async def delete_named(session: AsyncSession, model: type[Team] | type[Queue], name: str) -> None:
    if not await repository.delete_named(session, model, name):
        raise NotFound(f"{model.__tablename__.rstrip('s')} not found")


async def queue(
    session: AsyncSession, settings: RouterSettings, limit: int
) -> tuple[int, list[tuple[Task, Estimate]]]:
    """How many conversations wait, and the first ``limit`` in the order they are served, each with its
    position in its queue and estimated wait. The head of the whole queue holds every conversation ahead of
    each one in its own queue, so the positions are exact."""
    tasks = await routing_repository.queue_snapshot(session, limit)
    length = await routing_repository.queue_length(session)
    if not tasks:
        return length, []
    slots = await routing_repository.queue_slots(session, [t.queue for t in tasks])
    measured = await routing_repository.handle_times(session, settings.router_handle_time_sample)
    waiting = [
        Waiting(
            t.conversation_id, Requirement.of(t.required_skills), t.priority, t.enqueued_at, queue=t.queue
        )
        for t in tasks
    ]
    estimates = estimate.estimate(waiting, slots, measured, settings.router_default_handle_time_s)
    return length, [(t, estimates[t.conversation_id]) for t in tasks]


async def arrival_estimate(
    session: AsyncSession, settings: RouterSettings, queue: str
) -> tuple[int, Estimate]:
    """How many conversations wait in ``queue``, and the position and estimated wait of one arriving now:
    after every one of them (a higher priority would be served sooner, so this is the longer estimate)."""
    waiting, slots = await routing_repository.arrival(session, queue)
    measured = await routing_repository.handle_times(session, settings.router_handle_time_sample)
    served = {queue: slots} if slots is not None else {}
    result = estimate.estimate_one(
        waiting + 1, queue, served, measured, settings.router_default_handle_time_s
    )
    return waiting, result


async def queue_position(
    session: AsyncSession, settings: RouterSettings, conversation_id: uuid.UUID
) -> tuple[QueuedTask, Estimate]:
    """A waiting conversation's position in its queue and estimated wait; NotFound when it is not waiting
    (unknown, assigned or closed)."""
    task = await routing_repository.queued_with_position(session, conversation_id)
    if task is None:
        raise NotFound("conversation not waiting")
    slots = await routing_repository.queue_slots(session, [task.queue])
    measured = await routing_repository.handle_times(session, settings.router_handle_time_sample)
    result = estimate.estimate_one(
        task.ahead + 1, task.queue, slots, measured, settings.router_default_handle_time_s
    )
    return task, result
