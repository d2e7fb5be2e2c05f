from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from switchboard_conversation.models import ConversationStatus


class _FromOrm(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class IdentityPublic(_FromOrm):
    kind: str
    value: str


class CustomerPublic(BaseModel):
    id: uuid.UUID
    display_name: str | None
    identities: list[IdentityPublic]


class MessagePublic(_FromOrm):
    id: uuid.UUID
    channel: str
    direction: str
    body: str
    sent_at: datetime
    received_at: datetime


class ConversationSummary(_FromOrm):
    id: uuid.UUID
    customer_id: uuid.UUID
    status: ConversationStatus
    first_channel: str
    last_channel: str
    required_skills: list[str]
    priority: int
    assigned_agent_id: uuid.UUID | None
    opened_at: datetime
    assigned_at: datetime | None
    resolved_at: datetime | None
    last_message_at: datetime


class ConversationPublic(ConversationSummary):
    customer: CustomerPublic
    messages: list[MessagePublic]


class ConversationList(BaseModel):
    items: list[ConversationSummary]
    next_before: datetime | None
