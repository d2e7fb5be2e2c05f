from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from switchboard_common.events import Attachment, Channel, DeliveryState
from switchboard_common.validation import NonBlankText
from switchboard_conversation.models import ConversationStatus, MessageDirection


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
    """An item of the thread: a customer's message (inbound), an agent's reply (outbound) or an internal
    note (note, never sent to the customer)."""

    id: uuid.UUID
    channel: Channel | None = Field(description="The channel it came or goes through; none for a note.")
    direction: MessageDirection
    body: str
    sent_at: datetime
    received_at: datetime
    author_agent_id: uuid.UUID | None = Field(description="The agent who wrote a reply or a note.")
    delivery_status: DeliveryState | None = Field(
        description="A reply's way to the customer: the furthest state reported, whatever order the "
        "provider's reports arrived in."
    )
    delivery_error: str | None = Field(default=None, description="Why a reply failed, as the provider said.")
    attachments: list[Attachment] = Field(
        default_factory=list, description="Media the customer sent, as the provider's references."
    )
    content_kind: str | None = Field(
        default=None,
        description="What a customer's message is when not plain text (`location`, `contacts`, "
        "`button_reply`, `postback`, ...); `text` then renders it.",
    )

    subject: str | None = Field(default=None, description="An email's subject.")
    original_text: str | None = Field(
        default=None,
        validation_alias="original_body",
        description="An email as written, when `body` shows less (quoted history and signature stripped).",
    )

    @field_validator("attachments", mode="before")
    @classmethod
    def _no_attachments(cls, value: object) -> object:
        return [] if value is None else value


ThreadText = Annotated[NonBlankText, StringConstraints(min_length=1, max_length=4096)]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[!-~]+$")]


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: ThreadText
    channel: Channel | None = Field(
        default=None, description="Where to send it; by default the channel the customer last wrote on."
    )
    idempotency_key: IdempotencyKey = Field(
        description="Chosen by the client, one per reply (1-200 visible ASCII characters, no spaces): the "
        "same request again returns the stored reply and sends nothing twice."
    )


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: ThreadText


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
    first_replied_at: datetime | None = Field(description="When an agent first replied.")
    merged_into: uuid.UUID | None = Field(
        default=None,
        description="Set when a customer merge closed this conversation: the one its messages moved to.",
    )


class ConversationPublic(ConversationSummary):
    customer: CustomerPublic
    messages: list[MessagePublic]


class ConversationList(BaseModel):
    items: list[ConversationSummary]
    next_before: datetime | None
