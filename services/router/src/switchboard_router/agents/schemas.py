from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)

from switchboard_common.validation import EMAIL, NonBlankText, json_integer
from switchboard_router.models import Agent, AgentStatus
from switchboard_router.routing.estimate import EstimateBasis
from switchboard_router.routing.policy import WORKLOADS, Policy

Skill = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
# Patterns only (see switchboard_common.validation), and nothing stripped before the checks: the document
# has to describe exactly the values that are accepted.
Name = Annotated[NonBlankText, StringConstraints(min_length=1, max_length=200)]
Email = Annotated[str, StringConstraints(to_lower=True, max_length=320, pattern=EMAIL)]


Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
TeamName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]

# The bounds come first, so they are the integer's own and appear in the document.
Capacity = Annotated[
    int, Field(ge=0, le=100, description="Conversations handled at once."), BeforeValidator(json_integer)
]
Proficiency = Annotated[int, Field(ge=1, le=5), BeforeValidator(json_integer)]
# A plain list of skills gives each this proficiency.
DEFAULT_PROFICIENCY = 3

SKILLS_DESCRIPTION = (
    f"Skills, each a name (proficiency {DEFAULT_PROFICIENCY}) or a name with its proficiency 1-5: "
    '`["sales", {"skill": "billing", "level": 5}]`.'
)


class SkillLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill: Skill
    level: Proficiency


SkillList = list[Skill | SkillLevel]


class ChannelCapacity(BaseModel):
    """Conversations of each workload handled at once: web chat is `chat`; WhatsApp, SMS, Messenger,
    Instagram and the API are `messaging`. Each defaults to the total capacity."""

    model_config = ConfigDict(extra="forbid")

    chat: Capacity | None = None
    messaging: Capacity | None = None
    email: Capacity | None = None
    voice: Capacity | None = None


class AgentRole(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"


ROLE_DESCRIPTION = (
    "`agent` sees the conversations assigned to them and those waiting in their teams' queues; "
    "`supervisor` sees every conversation. Carried by the agent's next token."
)


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: AgentRole = Field(default=AgentRole.AGENT, description=ROLE_DESCRIPTION)
    name: Name
    email: Email
    skills: SkillList = Field(default_factory=list, max_length=50, description=SKILLS_DESCRIPTION)
    languages: list[Language] = Field(default_factory=list, max_length=20)
    teams: list[TeamName] = Field(default_factory=list, max_length=20)
    capacity: Capacity = Field(default=3, description="Conversations handled at once, in total.")
    channel_capacity: ChannelCapacity = Field(default_factory=ChannelCapacity)


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skills: SkillList | None = Field(default=None, max_length=50, description=SKILLS_DESCRIPTION)
    languages: list[Language] | None = Field(default=None, max_length=20)
    teams: list[TeamName] | None = Field(default=None, max_length=20)
    role: AgentRole | None = Field(default=None, description=ROLE_DESCRIPTION)
    capacity: Capacity | None = None
    channel_capacity: ChannelCapacity | None = None


def proficiency_of(skills: SkillList) -> dict[str, int]:
    """Skill → proficiency; a skill named twice keeps its highest level."""
    out: dict[str, int] = {}
    for s in skills:
        name, level = (s, DEFAULT_PROFICIENCY) if isinstance(s, str) else (s.skill, s.level)
        out[name] = max(level, out.get(name, 0))
    return out


class WorkloadFigures(BaseModel):
    chat: int
    messaging: int
    email: int
    voice: int


class AgentStatusUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: AgentStatus


class AgentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    email: str
    skills: list[str]
    proficiency: dict[str, int]
    languages: list[str]
    teams: list[str]
    role: AgentRole
    capacity: int
    channel_capacity: WorkloadFigures
    status: AgentStatus
    active_count: int
    channel_load: WorkloadFigures
    last_assigned_at: datetime | None
    status_changed_at: datetime
    created_at: datetime

    @staticmethod
    def of(agent: Agent) -> AgentPublic:
        return AgentPublic(
            id=agent.id,
            name=agent.name,
            email=agent.email,
            skills=agent.skills,
            proficiency=agent.proficiency,
            languages=agent.languages,
            teams=agent.teams,
            role=AgentRole(agent.role),
            capacity=agent.capacity,
            channel_capacity=WorkloadFigures(**dict(zip(WORKLOADS, agent.capacities, strict=True))),
            status=AgentStatus(agent.status),
            active_count=agent.active_count,
            channel_load=WorkloadFigures(**dict(zip(WORKLOADS, agent.loads, strict=True))),
            last_assigned_at=agent.last_assigned_at,
            status_changed_at=agent.status_changed_at,
            created_at=agent.created_at,
        )


class TeamUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_accept: StrictBool = Field(
        default=True,
        description="Members are assigned conversations directly; when false, they are offered them and "
        "must accept within `offer_timeout_s`.",
    )
    offer_timeout_s: Annotated[int, Field(ge=5, le=3600), BeforeValidator(json_integer)] = 30


class TeamPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    auto_accept: bool
    offer_timeout_s: int
    created_at: datetime


class EscalationStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_s: Annotated[int, Field(ge=1, le=86_400), BeforeValidator(json_integer)] = Field(
        description="Taken once the conversation has waited this many seconds."
    )
    drop_optional: StrictBool = Field(default=False, description="Stop asking for the optional skills.")
    relax_levels_by: Annotated[int, Field(ge=0, le=4), BeforeValidator(json_integer)] = Field(
        default=0, description="Lower every required skill's minimum level by this much (never below 1)."
    )


def _by_wait(steps: list[EscalationStep]) -> list[EscalationStep]:
    return sorted(steps, key=lambda step: step.after_s)


class QueueUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Policy = Field(
        default=Policy.LEAST_LOADED,
        description="How an agent is chosen among the eligible ones: `least_loaded` (the lowest share of "
        "capacity in use), `round_robin` (the agent idle longest) or `most_skilled` (the highest sum of "
        "proficiencies in the required skills, then the least loaded). A customer's previous agent comes "
        "first in all of them (sticky routing).",
    )
    escalation: Annotated[list[EscalationStep], AfterValidator(_by_wait)] = Field(
        default_factory=list,
        max_length=10,
        description="Bullseye rings, kept in order of `after_s`: while no step is taken, a conversation also "
        "needs the rule's optional skills; each step taken after its wait asks less (steps accumulate). "
        "Without steps, optional skills are never required.",
    )
    team: TeamName | None = Field(
        default=None,
        description="The team serving the queue: its agents see the conversations waiting in it, and its "
        "business hours (`/v1/teams/{name}/hours`) decide whether a waiting customer is told the wait or "
        "when it opens. None: the `default` queue's team.",
    )


class QueuePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    policy: Policy
    escalation: list[EscalationStep]
    team: str | None = None
    created_at: datetime


class OfferPublic(BaseModel):
    conversation_id: uuid.UUID
    channel: str
    required_skills: list[str]
    priority: int
    queued_at: datetime
    offered_at: datetime
    expires_at: datetime


class ForceAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: uuid.UUID


class ForcedAssignment(BaseModel):
    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    assigned_at: datetime


class OfferAccepted(BaseModel):
    conversation_id: uuid.UUID
    assigned_at: datetime


class AgentToken(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_in: int


class AgentCreated(AgentPublic):
    token: AgentToken


class QueuedConversation(BaseModel):
    conversation_id: uuid.UUID
    queue: str = Field(description="The queue it waits in (a routing rule's; `default` when none matched).")
    required_skills: list[str]
    priority: int
    channel: str
    enqueued_at: datetime
    waiting_seconds: float
    position: int = Field(
        ge=1,
        description="1-based place in its queue: the conversations waiting in the same queue, in the order "
        "they are served (priority, high first, then the oldest).",
    )
    estimated_wait_seconds: int | None = Field(
        ge=0,
        description="Expected further wait: ceil(max(position - free slots, 0) * mean handle time / slots), "
        "the slots being the capacity of the online agents able to take at least one conversation waiting "
        "in the queue; null when there is none.",
    )
    estimate_basis: EstimateBasis = Field(
        description="`measured`: the mean handle time of the queue's recently closed assignments (else of "
        "all of them); `prior`: nothing was measured yet, the configured default was used."
    )


class QueueEstimate(BaseModel):
    """What a conversation arriving now in a queue can expect (the voice greeting states it)."""

    queue: str
    waiting: int = Field(ge=0, description="Conversations waiting in the queue now.")
    position: int = Field(ge=1, description="An arrival's place: after every conversation waiting.")
    estimated_wait_seconds: int | None = Field(
        ge=0,
        description="As for a waiting conversation at that position; an empty queue is served by the online "
        "agents a conversation without requirement would reach. Null when no online agent can serve it.",
    )
    estimate_basis: EstimateBasis


class QueueSnapshot(BaseModel):
    length: int
    oldest_wait_seconds: float | None
    items: list[QueuedConversation]
