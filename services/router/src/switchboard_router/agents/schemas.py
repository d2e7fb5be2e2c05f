from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from switchboard_common.validation import StorableText
from switchboard_router.models import AgentStatus

Skill = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[StorableText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    email: Annotated[
        StorableText, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[^@\s]+@[^@\s]+$")
    ]
    skills: list[Skill] = Field(default_factory=list, max_length=50)
    capacity: int = Field(default=3, ge=0, le=100, description="Conversations handled at once.")


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skills: list[Skill] | None = Field(default=None, max_length=50)
    capacity: int | None = Field(default=None, ge=0, le=100)


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


class QueueSnapshot(BaseModel):
    length: int
    oldest_wait_seconds: float | None
    items: list[QueuedConversation]
