from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.auth import Principal
from switchboard_router.models import Agent, AgentStatus


def readable(principal: Principal) -> sa.Select[Agent]:
    """Agents ``principal`` may see: an agent only themself, an admin everyone."""
    stmt = sa.select(Agent)
    if not principal.is_admin:
        stmt = stmt.where(Agent.id == principal.agent_id)
    return stmt


async def insert_agent(
    session: AsyncSession, name: str, email: str, skills: list[str], capacity: int
) -> Agent | None:
    """None when the email is taken."""
    stmt = (
        insert(Agent)
        .values(
            id=uuid.uuid4(),
            name=name,
            email=email,
            skills=skills,
            capacity=capacity,
            status=AgentStatus.OFFLINE.value,
            active_count=0,
        )
        .on_conflict_do_nothing(index_elements=[Agent.email])
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
