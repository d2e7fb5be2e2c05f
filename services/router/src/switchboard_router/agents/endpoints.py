"""Agents, presence and the queue. Admin credentials manage everything; an agent may read themself and
set their own presence (another agent's id answers 404, as a missing one)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from switchboard_common.auth import AdminPrincipal, Principal, Role, issue_agent_token
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
    ForceAssign,
    ForcedAssignment,
    OfferAccepted,
    OfferPublic,
    QueuedConversation,
    QueueEstimate,
    QueuePublic,
    QueueSnapshot,
    QueueUpsert,
    TeamPublic,
    TeamUpsert,
)
from switchboard_router.models import Agent, AgentStatus, Queue, Team
from switchboard_router.principal import EstimateReader, LivePrincipal
from switchboard_router.routing import service as routing_service
from switchboard_router.routing.estimate import Estimate
from switchboard_router.settings import RouterSettings
from switchboard_router.skills.service import CATALOGUED

router = APIRouter(prefix="/v1", tags=["agents"])
# Agent ids are matched as UUIDs by the router itself, so `/v1/agents/me` is never taken for an id: a
# method it does not serve answers 405 rather than reaching `/v1/agents/{agent_id}` and failing there.
AGENT = "/agents/{agent_id:uuid}"
EMAIL_TAKEN = {409: "The email is taken (`email_taken`)."}
UNKNOWN_SKILL = {
    422: "The request is invalid (`validation_error`; `details` lists each invalid field), or a skill is "
    "not in the skills catalogue (`unknown_skill`; `details.skills` names them: add with `PUT "
    "/v1/skills/{name}`)."
}


def _settings(runtime: ServiceRuntime) -> RouterSettings:
    settings = runtime.settings
    assert isinstance(settings, RouterSettings)
    return settings


def _token(runtime: ServiceRuntime, agent: Agent) -> AgentToken:
    token, ttl = issue_agent_token(_settings(runtime), agent.id, Role(agent.role), agent.teams)
    return AgentToken(access_token=token, expires_in=ttl)


@router.post(
    "/agents",
    status_code=status.HTTP_201_CREATED,
    summary="Create an agent (returns their token)",
    responses=errors(400, 401, 403, 409, 413, 422, 503, described={**EMAIL_TAKEN, **UNKNOWN_SKILL}),
    openapi_extra=CATALOGUED,
)
async def create_agent(
    body: AgentCreate, _: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> AgentCreated:
    agent = await service.create(session, body)
    return AgentCreated(**AgentPublic.of(agent).model_dump(), token=_token(runtime, agent))


@router.get("/agents", summary="List agents", responses=errors(401, 403, 422, 503))
async def list_agents(
    principal: AdminPrincipal,
    session: SessionDep,
    status: AgentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AgentPublic]:
    agents = await repository.list_readable(session, principal, status, limit, offset)
    return [AgentPublic.of(a) for a in agents]


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
async def me(principal: LivePrincipal, session: SessionDep) -> AgentPublic:
    if principal.agent_id is None:
        raise Forbidden("an admin credential is not an agent; use /v1/agents/{id}", code="not_an_agent")
    return AgentPublic.of(await service.get(session, principal, principal.agent_id))


@router.get(AGENT, summary="One agent", responses=errors(401, 404, 503))
async def get_agent(agent_id: uuid.UUID, principal: LivePrincipal, session: SessionDep) -> AgentPublic:
    return AgentPublic.of(await service.get(session, principal, agent_id))


@router.patch(
    AGENT,
    summary="Change an agent's skills or capacity",
    responses=errors(400, 401, 403, 404, 413, 422, 503, described=UNKNOWN_SKILL),
    openapi_extra=CATALOGUED,
)
async def update_agent(
    agent_id: uuid.UUID,
    body: AgentUpdate,
    principal: AdminPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> AgentPublic:
    agent = await service.update(session, runtime.outbox, principal, agent_id, body)
    return AgentPublic.of(agent)


@router.delete(
    AGENT,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an agent: their offers and conversations go back to the queue at once, their token "
    "stops working, their history is kept",
    responses=errors(
        401,
        403,
        404,
        503,
        described={404: "No such agent, or already deleted (a second delete answers 404)."},
    ),
)
async def delete_agent(
    agent_id: uuid.UUID, principal: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> None:
    await service.delete(session, runtime.outbox, principal, agent_id)


@router.put(
    f"{AGENT}/status",
    summary="Set presence: online agents receive conversations",
    responses=errors(400, 401, 404, 413, 422, 503),
)
async def set_status(
    agent_id: uuid.UUID,
    body: AgentStatusUpdate,
    principal: LivePrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> AgentPublic:
    agent = await service.set_status(session, runtime.outbox, principal, agent_id, body.status)
    return AgentPublic.of(agent)


@router.post(
    f"{AGENT}/heartbeat",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="The agent's desktop is alive (send every ~30 s; silence past the presence timeout sets the "
    "agent offline)",
    responses=errors(401, 404, 503),
)
async def heartbeat(agent_id: uuid.UUID, principal: LivePrincipal, session: SessionDep) -> None:
    await service.heartbeat(session, principal, agent_id)


def _agent_id(principal: Principal) -> uuid.UUID:
    if principal.agent_id is None:
        raise Forbidden("offers are answered by the agent they were made to", code="not_an_agent")
    return principal.agent_id


@router.get(
    "/offers",
    summary="The calling agent's open offers, oldest first",
    responses=errors(401, 403, 503, described={403: "The credential is not an agent's (`not_an_agent`)."}),
)
async def list_offers(principal: LivePrincipal, session: SessionDep) -> list[OfferPublic]:
    tasks = await repository.open_offers(session, _agent_id(principal))
    return [
        OfferPublic(
            conversation_id=t.conversation_id,
            channel=t.channel,
            required_skills=t.required_skills,
            priority=t.priority,
            queued_at=t.enqueued_at,
            offered_at=t.offered_at or t.enqueued_at,
            expires_at=t.offer_expires_at or t.enqueued_at,
        )
        for t in tasks
    ]


OFFER = "/offers/{conversation_id:uuid}"
NO_OFFER = {
    404: "No such offer is open for the calling agent (`offer_not_found`): never made, answered, "
    "lapsed, or someone else's."
}


@router.post(
    f"{OFFER}/accept",
    summary="Accept an offer: the conversation is assigned to the calling agent",
    responses=errors(401, 403, 404, 503, described=NO_OFFER),
)
async def accept_offer(
    conversation_id: uuid.UUID, principal: LivePrincipal, session: SessionDep, runtime: RuntimeDep
) -> OfferAccepted:
    assigned = await routing_service.accept_offer(
        session, runtime.outbox, _agent_id(principal), conversation_id
    )
    return OfferAccepted(conversation_id=conversation_id, assigned_at=assigned.assigned_at)


@router.post(
    f"{OFFER}/decline",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Decline an offer: the conversation goes to someone else, never back to the calling agent",
    responses=errors(401, 403, 404, 503, described=NO_OFFER),
)
async def decline_offer(
    conversation_id: uuid.UUID, principal: LivePrincipal, session: SessionDep, runtime: RuntimeDep
) -> None:
    await routing_service.decline_offer(session, runtime.outbox, _agent_id(principal), conversation_id)


TEAM = "/teams/{name}"
# A team's or a queue's name.
SettingName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


@router.get("/teams", summary="List teams", tags=["teams"], responses=errors(401, 403, 503))
async def list_teams(_: AdminPrincipal, session: SessionDep) -> list[TeamPublic]:
    return [TeamPublic.model_validate(t) for t in await repository.list_named(session, Team)]


@router.put(
    TEAM,
    summary="Create or change a team: whether its members auto-accept, and how long offers wait",
    tags=["teams"],
    responses=errors(400, 401, 403, 413, 422, 503),
)
async def put_team(
    name: SettingName,
    body: TeamUpsert,
    _: AdminPrincipal,
    session: SessionDep,
) -> TeamPublic:
    return TeamPublic.model_validate(await service.upsert_team(session, name, body))


@router.delete(
    TEAM,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a team (its members then auto-accept, unless another of their teams says otherwise)",
    tags=["teams"],
    responses=errors(401, 403, 404, 422, 503),
)
async def delete_team(name: SettingName, _: AdminPrincipal, session: SessionDep) -> None:
    await service.delete_named(session, Team, name)


QUEUE = "/queues/{name}"


@router.get(
    "/queues", summary="List queues and their policies", tags=["queues"], responses=errors(401, 403, 503)
)
async def list_queues(_: AdminPrincipal, session: SessionDep) -> list[QueuePublic]:
    return [QueuePublic.model_validate(q) for q in await repository.list_named(session, Queue)]


@router.get(
    QUEUE + "/estimate",
    summary="The expected wait of a conversation arriving now in a queue",
    tags=["queues"],
    dependencies=[EstimateReader],
    responses=errors(401, 403, 422, 503),
)
async def queue_estimate(name: SettingName, session: SessionDep, runtime: RuntimeDep) -> QueueEstimate:
    """For other services (a service key) as well as ops: ingest's voice greeting states it."""
    waiting, result = await service.arrival_estimate(session, _settings(runtime), name)
    return QueueEstimate(
        queue=name,
        waiting=waiting,
        position=result.position,
        estimated_wait_seconds=result.wait_seconds,
        estimate_basis=result.basis,
    )


@router.put(
    QUEUE,
    summary="Create or change a queue: the policy that chooses among eligible agents (routing rules name "
    "the queue; one without settings is least loaded)",
    tags=["queues"],
    responses=errors(
        400, 401, 403, 409, 413, 422, 503, described={409: "The team does not exist (`unknown_team`)."}
    ),
)
async def put_queue(
    name: SettingName, body: QueueUpsert, _: AdminPrincipal, session: SessionDep
) -> QueuePublic:
    return QueuePublic.model_validate(await service.upsert_queue(session, name, body))


@router.delete(
    QUEUE,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a queue's settings (its conversations are then routed least loaded)",
    tags=["queues"],
    responses=errors(401, 403, 404, 422, 503),
)
async def delete_queue(name: SettingName, _: AdminPrincipal, session: SessionDep) -> None:
    await service.delete_named(session, Queue, name)


@router.post(
    f"{AGENT}/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Issue a new agent token",
    responses=errors(401, 403, 404, 503),
)
async def issue_token(
    agent_id: uuid.UUID, principal: AdminPrincipal, session: SessionDep, runtime: RuntimeDep
) -> AgentToken:
    return _token(runtime, await service.get(session, principal, agent_id))


def _queued(
    conversation_id: uuid.UUID,
    queue: str,
    required_skills: list[str],
    priority: int,
    channel: str,
    enqueued_at: datetime,
    estimate: Estimate,
    now: datetime,
) -> QueuedConversation:
    return QueuedConversation(
        conversation_id=conversation_id,
        queue=queue,
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
        _queued(t.conversation_id, t.queue, t.required_skills, t.priority, t.channel, t.enqueued_at, e, now)
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
        task.queue,
        task.required_skills,
        task.priority,
        task.channel,
        task.enqueued_at,
        estimate,
        now,
    )


@router.post(
    "/queue/{conversation_id:uuid}/assign",
    summary="Supervisor force-assign: give a conversation to an agent, whatever their skills and load",
    responses=errors(
        400,
        401,
        403,
        404,
        409,
        413,
        422,
        503,
        described={
            404: "No such agent, or the conversation is not open in routing (`conversation_not_routable`).",
            409: "The agent is offline (`agent_offline`).",
        },
    ),
)
async def force_assign(
    conversation_id: uuid.UUID,
    body: ForceAssign,
    _: AdminPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ForcedAssignment:
    assigned = await routing_service.force_assign(session, runtime.outbox, conversation_id, body.agent_id)
    return ForcedAssignment(
        conversation_id=conversation_id, agent_id=assigned.agent_id, assigned_at=assigned.assigned_at
    )
