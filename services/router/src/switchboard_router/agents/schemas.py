from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from switchboard_common.validation import EMAIL, NonBlankText, json_integer
from switchboard_router.models import AgentStatus
from switchboard_router.routing.estimate import EstimateBasis

Skill = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
# Patterns only (see switchboard_common.validation), and nothing stripped before the checks: the document
# has to describe exactly the values that are accepted.
Name = Annotated[NonBlankText, StringConstraints(min_length=1, max_length=200)]
Email = Annotated[str, StringConstraints(to_lower=True, max_length=320, pattern=EMAIL)]


# The bounds come first, so they are the integer's own and appear in the document.
Capacity = Annotated[
    int, Field(ge=0, le=100, description="Conversations handled at once."), BeforeValidator(json_integer)
]


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    email: Email
    skills: list[Skill] = Field(default_factory=list, max_length=50)
    capacity: Capacity = 3


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skills: list[Skill] | None = Field(default=None, max_length=50)
    capacity: Capacity | None = None


class AgentStatusUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: AgentStatus


class AgentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    email: str
    skills: list[str]
    capacity: int
    status: AgentStatus
    active_count: int
    last_assigned_at: datetime | None
    status_changed_at: datetime
    created_at: datetime


class AgentToken(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_in: int


class AgentCreated(AgentPublic):
    token: AgentToken


class QueuedConversation(BaseModel):
    conversation_id: uuid.UUID
    required_skills: list[str]
    priority: int
    channel: str
    enqueued_at: datetime
    waiting_seconds: float
    position: int = Field(
        ge=1,
        description="1-based place in its queue: the conversations waiting with the same required skills, "
        "in the order they are served (priority, high first, then the oldest).",
    )
    estimated_wait_seconds: int | None = Field(
        ge=0,
        description="Expected further wait: ceil(max(position - free slots, 0) * mean handle time / slots), "
        "the slots being the capacity of the online agents with every required skill; null when no online "
        "agent has them.",
    )
    estimate_basis: EstimateBasis = Field(
        description="`measured`: the mean handle time of recently closed assignments; `prior`: nothing "
        "was measured yet, the configured default was used."
    )


class QueueSnapshot(BaseModel):
    length: int
    oldest_wait_seconds: float | None
    items: list[QueuedConversation]
