"""Agents, presence and the queue. Admin credentials manage everything; an agent may read themself and
set their own presence."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from switchboard_common.auth import AdminPrincipal, CurrentPrincipal, Principal, issue_agent_token
from switchboard_common.events import utcnow
from switchboard_common.http.app import runtime_of
from switchboard_common.http.errors import ApiError
from switchboard_common.runtime import ServiceRuntime
from switchboard_router.agents import repository, service
from switchboard_router.agents.schemas import (
    AgentCreate,
    AgentCreated,
    AgentPublic,
    AgentStatusUpdate,
    AgentToken,
    AgentUpdate,
    QueuedConversation,
    QueueSnapshot,
)
from switchboard_router.models import AgentStatus
from switchboard_router.routing import repository as routing_repository

router = APIRouter(prefix="/v1", tags=["agents"])
RuntimeDep = Annotated[ServiceRuntime, Depends(runtime_of)]


def _self_or_admin(principal: Principal, agent_id: uuid.UUID) -> None:
    if not principal.can_act_for(agent_id):
        raise ApiError(403, "agents may only act for themselves")


def _token(runtime: ServiceRuntime, agent_id: uuid.UUID) -> AgentToken:
    token, ttl = issue_agent_token(runtime.settings, agent_id)
    return AgentToken(access_token=token, expires_in=ttl)


@router.post("/agents", status_code=status.HTTP_201_CREATED, summary="Create an agent (returns their token)")
async def create_agent(body: AgentCreate, _: AdminPrincipal, runtime: RuntimeDep) -> AgentCreated:
    async with runtime.db.unit_of_work() as session:
        agent = await service.create(session, body)
        public = AgentPublic.model_validate(agent)
    return AgentCreated(**public.model_dump(), token=_token(runtime, agent.id))


@router.get("/agents", summary="List agents")
async def list_agents(
    _: AdminPrincipal,
    runtime: RuntimeDep,
    status: AgentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AgentPublic]:
    async with runtime.db.unit_of_work() as session:
        return [
            AgentPublic.model_validate(a) for a in await repository.list_all(session, status, limit, offset)
        ]


@router.get("/agents/me", summary="The calling agent")
async def me(principal: CurrentPrincipal, runtime: RuntimeDep) -> AgentPublic:
    if principal.agent_id is None:
        raise ApiError(400, "an admin credential is not an agent; use /v1/agents/{id}")
    return await get_agent(principal.agent_id, principal, runtime)


@router.get("/agents/{agent_id}", summary="One agent")
async def get_agent(agent_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep) -> AgentPublic:
    _self_or_admin(principal, agent_id)
    async with runtime.db.unit_of_work() as session:
        return AgentPublic.model_validate(await service.get_or_404(session, agent_id))


@router.patch("/agents/{agent_id}", summary="Change an agent's skills or capacity")
async def update_agent(
    agent_id: uuid.UUID, body: AgentUpdate, _: AdminPrincipal, runtime: RuntimeDep
) -> AgentPublic:
    async with runtime.db.unit_of_work() as session:
        return AgentPublic.model_validate(await service.update(session, runtime.outbox, agent_id, body))


@router.put("/agents/{agent_id}/status", summary="Set presence: online agents receive conversations")
async def set_status(
    agent_id: uuid.UUID, body: AgentStatusUpdate, principal: CurrentPrincipal, runtime: RuntimeDep
) -> AgentPublic:
    _self_or_admin(principal, agent_id)
    async with runtime.db.unit_of_work() as session:
        return AgentPublic.model_validate(
            await service.set_status(session, runtime.outbox, agent_id, body.status)
        )


@router.post(
    "/agents/{agent_id}/tokens", status_code=status.HTTP_201_CREATED, summary="Issue a new agent token"
)
async def issue_token(agent_id: uuid.UUID, _: AdminPrincipal, runtime: RuntimeDep) -> AgentToken:
    async with runtime.db.unit_of_work() as session:
        await service.get_or_404(session, agent_id)
    return _token(runtime, agent_id)


@router.get("/queue", summary="Conversations waiting for an agent, in the order they will be served")
async def queue(
    _: AdminPrincipal, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> QueueSnapshot:
    now = utcnow()
    async with runtime.db.unit_of_work() as session:
        tasks = await routing_repository.queue_snapshot(session, limit)
        length = await routing_repository.queue_length(session)
    items = [
        QueuedConversation(
            conversation_id=t.conversation_id,
            required_skills=t.required_skills,
            priority=t.priority,
            channel=t.channel,
            enqueued_at=t.enqueued_at,
            waiting_seconds=(now - t.enqueued_at).total_seconds(),
        )
        for t in tasks
    ]
    oldest = max((i.waiting_seconds for i in items), default=None)
    return QueueSnapshot(length=length, oldest_wait_seconds=oldest, items=items)
