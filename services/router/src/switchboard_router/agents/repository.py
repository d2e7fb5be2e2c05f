from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.auth import Principal
from switchboard_router.models import Agent, AgentStatus, Queue, Task, TaskState, Team
from switchboard_router.skills.models import Skill


def readable(principal: Principal) -> sa.Select[Agent]:
    """Agents ``principal`` may see: an agent only themself, an admin everyone; never a deleted agent."""
    stmt = sa.select(Agent).where(Agent.deleted_at.is_(None))
    if not principal.is_admin:
        stmt = stmt.where(Agent.id == principal.agent_id)
    return stmt


async def insert_agent(
    session: AsyncSession,
    name: str,
    email: str,
    proficiency: dict[str, int],
    languages: list[str],
    teams: list[str],
    role: str,
    capacity: int,
    capacities: list[int],
) -> Agent | None:
    """None when the email is taken."""
    stmt = (
        insert(Agent)
        .values(
            id=uuid.uuid4(),
            name=name,
            email=email,
            skills=sorted(proficiency),
            proficiency=proficiency,
            languages=languages,
            teams=teams,
            role=role,
            capacity=capacity,
            capacities=capacities,
            loads=[0] * len(capacities),
            status=AgentStatus.OFFLINE.value,
            active_count=0,
        )
        .on_conflict_do_nothing(index_elements=[Agent.email], index_where=Agent.deleted_at.is_(None))
        .returning(Agent)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_readable(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, *, for_update: bool = False
) -> Agent | None:
    stmt = readable(principal).where(Agent.id == agent_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_readable(
    session: AsyncSession, principal: Principal, status: AgentStatus | None, limit: int, offset: int
) -> Sequence[Agent]:
    stmt = readable(principal).order_by(Agent.created_at, Agent.id).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(Agent.status == status.value)
    return (await session.execute(stmt)).scalars().all()


Named = TypeVar("Named", Team, Queue, Skill)


async def list_named(session: AsyncSession, model: type[Named]) -> Sequence[Named]:
    """Teams or queues, by name."""
    return (await session.execute(sa.select(model).order_by(model.name))).scalars().all()


async def upsert_named(session: AsyncSession, model: type[Named], name: str, values: dict[str, Any]) -> Named:
    """Create or change a named row (a team, a queue, a catalogued skill): its settings are ``values``."""
    stmt = (
        insert(model)
        .values(name=name, **values)
        .on_conflict_do_update(index_elements=[model.name], set_=values)
        .returning(model)
    )
    return (await session.execute(stmt, execution_options={"populate_existing": True})).scalar_one()


async def delete_named(session: AsyncSession, model: type[Team | Queue | Skill], name: str) -> bool:
    """Whether the row was there. Teams' members and queues' conversations keep the name; without its
    row it has the defaults (a skill is only deleted once nothing names it: ``skills.service.delete``)."""
    result = await session.execute(sa.delete(model).where(model.name == name).returning(model.name))
    return result.scalar_one_or_none() is not None


_LIVE = sa.select(sa.literal(1)).where(Agent.id == sa.bindparam("agent"), Agent.deleted_at.is_(None))


async def exists(session: AsyncSession, agent_id: uuid.UUID) -> bool:
    """Whether the agent exists and is not deleted."""
    return (await session.scalar(_LIVE, {"agent": agent_id})) is not None


_OPEN_OFFERS = (
    sa.select(Task)
    .where(Task.state == TaskState.OFFERED.value, Task.agent_id == sa.bindparam("agent"))
    .order_by(Task.offered_at, Task.conversation_id)
)


async def open_offers(session: AsyncSession, agent_id: uuid.UUID) -> Sequence[Task]:
    """The agent's open offers, oldest first (filtered in SQL: an agent sees only their own)."""
    return (await session.execute(_OPEN_OFFERS, {"agent": agent_id})).scalars().all()
