"""Agents, presence and the queue. Admin credentials manage everything; an agent may read themself and
set their own presence (another agent's id answers 404, as a missing one)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from switchboard_common.auth import AdminPrincipal, CurrentPrincipal, issue_agent_token
from switchboard_common.errors import Forbidden
from switchboard_common.events import utcnow
from switchboard_common.http.deps import RuntimeDep, SessionDep
from switchboard_common.http.openapi import errors
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
from switchboard_router.routing.estimate import Estimate
from switchboard_router.settings import RouterSettings

router = APIRouter(prefix="/v1", tags=["agents"])
# Agent ids are matched as UUIDs by the router itself, so `/v1/agents/me` is never taken for an id: a
# method it does not serve answers 405 rather than reaching `/v1/agents/{agent_id}` and failing there.
AGENT = "/agents/{agent_id:uuid}"


def _settings(runtime: ServiceRuntime) -> RouterSettings:
    settings = runtime.settings
    assert isinstance(settings, RouterSettings)
    return settings


def _token(runtime: ServiceRuntime, agent_id: uuid.UUID) -> AgentToken:
    token, ttl = issue_agent_token(_settings(runtime), agent_id)
    return AgentToken(access_token=token, expires_in=ttl)


@router.post(
    "/agents",
    status_code=status.HTTP_201_CREATED,
    summary="Create an agent (returns their token)",
    responses=errors(
        400, 401, 403, 409, 413, 422, 503, described={409: "The email is taken (`email_taken`)."}
    ),
)
async def create_agent(
    body: AgentCreate, _: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> AgentCreated:
    agent = await service.create(session, body)
    return AgentCreated(**AgentPublic.model_validate(agent).model_dump(), token=_token(runtime, agent.id))


@router.get("/agents", summary="List agents", responses=errors(401, 403, 422, 503))
async def list_agents(
    principal: AdminPrincipal,
    session: SessionDep,
    status: AgentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AgentPublic]:
    agents = await repository.list_readable(session, principal, status, limit, offset)
    return [AgentPublic.model_validate(a) for a in agents]


@router.get(
    "/agents/me",
    summary="The calling agent",
    responses=errors(
        401,
        403,
        404,
        503,
        described={403: "The credential is the admin key, not an agent's (`not_an_agent`)."},
    ),
)
async def me(principal: CurrentPrincipal, session: SessionDep) -> AgentPublic:
    if principal.agent_id is None:
        raise Forbidden("an admin credential is not an agent; use /v1/agents/{id}", code="not_an_agent")
    return AgentPublic.model_validate(await service.get(session, principal, principal.agent_id))


@router.get(AGENT, summary="One agent", responses=errors(401, 404, 503))
async def get_agent(agent_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep) -> AgentPublic:
    return AgentPublic.model_validate(await service.get(session, principal, agent_id))


@router.patch(
    AGENT,
    summary="Change an agent's skills or capacity",
    responses=errors(400, 401, 403, 404, 413, 422, 503),
)
async def update_agent(
    agent_id: uuid.UUID,
    body: AgentUpdate,
    principal: AdminPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> AgentPublic:
    agent = await service.update(session, runtime.outbox, principal, agent_id, body)
    return AgentPublic.model_validate(agent)


@router.put(
    f"{AGENT}/status",
    summary="Set presence: online agents receive conversations",
    responses=errors(400, 401, 404, 413, 422, 503),
)
async def set_status(
    agent_id: uuid.UUID,
    body: AgentStatusUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> AgentPublic:
    agent = await service.set_status(session, runtime.outbox, principal, agent_id, body.status)
    return AgentPublic.model_validate(agent)


@router.post(
    f"{AGENT}/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Issue a new agent token",
    responses=errors(401, 403, 404, 503),
)
async def issue_token(
    agent_id: uuid.UUID, principal: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> AgentToken:
    await service.get(session, principal, agent_id)
    return _token(runtime, agent_id)


def _queued(
    conversation_id: uuid.UUID,
    required_skills: list[str],
    priority: int,
    channel: str,
    enqueued_at: datetime,
    estimate: Estimate,
    now: datetime,
) -> QueuedConversation:
    return QueuedConversation(
        conversation_id=conversation_id,
        required_skills=required_skills,
        priority=priority,
        channel=channel,
        enqueued_at=enqueued_at,
        waiting_seconds=(now - enqueued_at).total_seconds(),
        position=estimate.position,
        estimated_wait_seconds=estimate.wait_seconds,
        estimate_basis=estimate.basis,
    )


@router.get(
    "/queue",
    summary="Conversations waiting for an agent, in the order they will be served, with positions and "
    "estimated waits",
    responses=errors(401, 403, 422, 503),
)
async def queue(
    _: AdminPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> QueueSnapshot:
    now = utcnow()
    length, entries = await service.queue(session, _settings(runtime), limit)
    items = [
        _queued(t.conversation_id, t.required_skills, t.priority, t.channel, t.enqueued_at, e, now)
        for t, e in entries
    ]
    oldest = max((i.waiting_seconds for i in items), default=None)
    return QueueSnapshot(length=length, oldest_wait_seconds=oldest, items=items)


@router.get(
    "/queue/{conversation_id:uuid}",
    summary="One waiting conversation's position and estimated wait",
    responses=errors(
        401, 403, 404, 503, described={404: "The conversation is not waiting: unknown, assigned or closed."}
    ),
)
async def queue_position(
    conversation_id: uuid.UUID, _: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> QueuedConversation:
    now = utcnow()
    task, estimate = await service.queue_position(session, _settings(runtime), conversation_id)
    return _queued(
        task.conversation_id,
        task.required_skills,
        task.priority,
        task.channel,
        task.enqueued_at,
        estimate,
        now,
    )
