from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from switchboard_common.events import Attachment, Channel, DeliveryState
from switchboard_common.validation import NonBlankText, StorableDatetime
from switchboard_conversation import examples as ex
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

    model_config = ConfigDict(json_schema_extra=ex.examples(ex.INBOUND, ex.REPLY, ex.NOTE))

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
    automated: bool = Field(
        default=False,
        description="An outbound message sent by automation (an acknowledgement), not by an agent.",
    )

    @field_validator("attachments", mode="before")
    @classmethod
    def _no_attachments(cls, value: object) -> object:
        return [] if value is None else value


ThreadText = Annotated[NonBlankText, StringConstraints(min_length=1, max_length=4096)]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[!-~]+$")]


class ReplyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "I have refunded the double charge.", "idempotency_key": "reply-7f3a"}]
        },
    )

    text: ThreadText
    channel: Channel | None = Field(
        default=None, description="Where to send it; by default the channel the customer last wrote on."
    )
    idempotency_key: IdempotencyKey = Field(
        description="Chosen by the client, one per reply (1-200 visible ASCII characters, no spaces): the "
        "same request again returns the stored reply and sends nothing twice."
    )


class NoteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Invoice 1234 charged twice; refund issued."}]},
    )

    text: ThreadText


class ConversationSummary(_FromOrm):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.SUMMARY))

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
    snoozed_until: datetime | None = Field(default=None, description="When a snoozed conversation wakes.")
    tags: list[str] = Field(default_factory=list, description='"what:..." and "why:..." tags.')
    queue: str | None = Field(default=None, description="The router's queue it waits or waited in.")
    team: str | None = Field(default=None, description="The team serving that queue.")
    follow_up: bool = Field(default=False, description="A low satisfaction score asks for a follow-up.")
    merged_into: uuid.UUID | None = Field(
        default=None,
        description="Set when a customer merge closed this conversation: the one its messages moved to.",
    )


class ConversationPublic(ConversationSummary):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.CONVERSATION))

    customer: CustomerPublic
    messages: list[MessagePublic]


class ConversationList(BaseModel):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.CONVERSATION_LIST))

    items: list[ConversationSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; none on the last.")
    next_before: datetime | None = Field(
        description="Deprecated: the `before` of the next page (use `next_cursor`, which never skips "
        "conversations active at the same instant)."
    )


# "what:<name>" (what it is about) or "why:<name>" (why it happened).
TagName = Annotated[str, StringConstraints(pattern=r"^(what|why):[a-z0-9][a-z0-9_-]{0,62}$")]
Cursor = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}-[0-9a-f]{32}$")]


class SnoozeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"until": "2026-12-08T09:00:00Z"}]}
    )

    until: StorableDatetime = Field(
        description="When it wakes (waiting on the agent), unless the customer writes first."
    )


class TagsChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"add": ["what:billing", "why:bug"], "remove": []}]}
    )

    add: list[TagName] = Field(default_factory=list, max_length=20)
    remove: list[TagName] = Field(default_factory=list, max_length=20)


Skill = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
QueueName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class TransferIn(BaseModel):
    """To an agent (`agent_id`), or back to the queue needing other skills and/or in another queue."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"agent_id": ex.AGENT_ID, "note": "Knows this customer's account"},
                {"skills": ["billing"], "queue": "vip"},
            ]
        },
    )

    agent_id: uuid.UUID | None = Field(default=None, description="The agent to hand it to.")
    skills: list[Skill] | None = Field(
        default=None, min_length=1, max_length=20, description="Route it to an agent with these skills."
    )
    queue: QueueName | None = Field(default=None, description="Route it in this queue.")
    note: ThreadText | None = Field(
        default=None, description="An internal note for whoever takes it next (kept in the thread)."
    )

    @model_validator(mode="after")
    def _one_target(self) -> TransferIn:
        if (self.agent_id is None) == (self.skills is None and self.queue is None):
            raise ValueError("give either agent_id, or skills and/or queue")
        return self


class TagUpsert(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"description": "Questions about gift cards"}]}
    )

    description: Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")] = ""


class TagPublic(_FromOrm):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.TAG))

    name: str
    description: str


class CustomerProfile(BaseModel):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.PROFILE))

    id: uuid.UUID
    display_name: str | None
    created_at: datetime
    identities: list[IdentityPublic]
    channels: list[Channel] = Field(description="Where the customer has written, in the order first used.")


class ConversationPage(BaseModel):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.CONVERSATION_PAGE))

    items: list[ConversationSummary]
    next_cursor: str | None


class MessagePage(BaseModel):
    model_config = ConfigDict(json_schema_extra=ex.examples(ex.MESSAGE_PAGE))

    items: list[MessagePublic] = Field(description="Oldest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the page of older items.")


class AgentWorked(BaseModel):
    agent_id: uuid.UUID
    last_at: datetime


class HandoffCard(BaseModel):
    """Everything whoever picks the conversation up needs, so nobody asks the customer again."""

    model_config = ConfigDict(json_schema_extra=ex.examples(ex.HANDOFF))

    conversation: ConversationSummary
    customer: CustomerProfile
    conversations: list[ConversationSummary] = Field(
        description="The customer's conversations, open and past, newest first (this one included)."
    )
    previous_agents: list[AgentWorked] = Field(description="Who worked with the customer, latest first.")
    notes: list[MessagePublic] = Field(description="Internal notes across the customer's conversations.")
    last_messages: list[MessagePublic] = Field(
        description="The latest messages across the customer's conversations and channels, oldest first."
    )
