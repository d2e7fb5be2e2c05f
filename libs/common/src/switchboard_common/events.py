"""The event envelope and every event schema that crosses a topic.

Every event on every topic is one JSON ``EventEnvelope``. Its payload is validated against the model
registered for its (type, schema_version); a consumer that meets a type it does not know, or a payload that
does not validate, treats the record as poison (it goes to the DLQ). Adding a field with a default is a
compatible change; anything else gets a new schema_version registered beside the old one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchboard_common import topics


def utcnow() -> datetime:
    return datetime.now(UTC)


class Channel(StrEnum):
    API = "api"
    WHATSAPP = "whatsapp"
    SMS = "sms"
    EMAIL = "email"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    WEBCHAT = "webchat"
    VOICE = "voice"


class IdentityKind(StrEnum):
    """The address space of a customer identity. SMS and WhatsApp share ``phone`` (E.164), so one number
    is one identity whichever of the two it wrote on."""

    API = "api"  # the API caller's own customer reference
    PHONE = "phone"
    EMAIL = "email"
    MESSENGER = "messenger"  # page-scoped id
    INSTAGRAM = "instagram"  # Instagram-scoped id
    WEBCHAT = "webchat"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class DeliveryState(StrEnum):
    """Where an outbound message is on its way to the customer. Providers report these out of order (a
    ``read`` may come without ``delivered``), so a message's state is the furthest one reported:
    ``DELIVERY_PROGRESS`` orders them."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# Furthest last: a failure ends the way (a provider reports it after ``sent``, never after ``read``).
DELIVERY_PROGRESS: tuple[DeliveryState, ...] = (
    DeliveryState.QUEUED,
    DeliveryState.SENT,
    DeliveryState.DELIVERED,
    DeliveryState.READ,
    DeliveryState.FAILED,
)


class AttachmentKind(StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    FILE = "file"  # anything else a provider sends as a file


class AgentStatus(StrEnum):
    """Presence. Only online agents are offered work; away and on break keep what they have; going offline
    (or falling silent) hands offers back at once and active conversations after a grace period."""

    ONLINE = "online"
    AWAY = "away"
    ON_BREAK = "on_break"
    OFFLINE = "offline"


class RequeueReason(StrEnum):
    AGENT_OFFLINE = "agent_offline"  # offline, or stopped heartbeating, past the grace period
    AGENT_DELETED = "agent_deleted"  # its agent was deleted (DELETE /v1/agents/{id}): at once, no grace
    NO_ANSWER = "no_answer"  # the agent sent no reply within the configured time of the assignment
    SUPERVISOR = "supervisor"  # moved by a supervisor's force-assign
    TRANSFERRED = "transferred"  # its agent transferred it to another agent, skill or queue


class Payload(BaseModel):
    """Base of every event payload; subclasses name their type and version."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    # The logical topic the event travels on: consumers subscribe to the topics of the types they handle.
    topic: ClassVar[str]


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    schema_version: int
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str
    correlation_id: str
    causation_id: str | None = None
    tenant_id: str | None = None
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        payload: Payload,
        *,
        producer: str,
        correlation_id: str | None = None,
        causation: EventEnvelope | None = None,
        tenant_id: str | None = None,
        event_id: uuid.UUID | None = None,
    ) -> EventEnvelope:
        """Build an envelope for ``payload``; ``causation`` links it to the event that caused it. Give
        ``event_id`` when the event has a natural identity (a retry must be the same event); else a
        random one."""
        event_id = event_id or uuid.uuid4()
        if correlation_id is None:
            correlation_id = causation.correlation_id if causation else str(event_id)
        return cls(
            event_id=event_id,
            type=payload.event_type,
            schema_version=payload.schema_version,
            producer=producer,
            correlation_id=correlation_id,
            causation_id=str(causation.event_id) if causation else None,
            tenant_id=tenant_id if tenant_id is not None else (causation.tenant_id if causation else None),
            payload=payload.model_dump(mode="json"),
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> EventEnvelope:
        if raw is None:
            raise PoisonEvent("record has no value")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise PoisonEvent(f"not an event envelope: {exc.error_count()} error(s)") from exc

    def parse(self) -> Payload:
        """The payload as its registered model."""
        model = _REGISTRY.get((self.type, self.schema_version))
        if model is None:
            raise PoisonEvent(f"unknown event type {self.type!r} v{self.schema_version}")
        try:
            return model.model_validate(self.payload)
        except ValidationError as exc:
            raise PoisonEvent(f"invalid {self.type} payload: {exc.error_count()} error(s)") from exc


class PoisonEvent(Exception):
    """A record that can never be processed as it is: retrying will not help, it goes to the DLQ."""


_REGISTRY: dict[tuple[str, int], type[Payload]] = {}
P = TypeVar("P", bound=type[Payload])


def registered() -> list[type[Payload]]:
    """Every payload model, in registration order."""
    return list(_REGISTRY.values())


def register(model: P) -> P:
    key = (model.event_type, model.schema_version)
    if key in _REGISTRY:
        raise RuntimeError(f"event {key} registered twice")
    _REGISTRY[key] = model
    return model


# --- messages.inbound (key: channel identity of the sender) -------------------------------------------


class CustomerIdentity(BaseModel):
    """One way to reach a customer. ``kind`` is the address space (phone numbers are shared by SMS and
    WhatsApp, so both use ``phone``); ``value`` is normalized by ingest."""

    model_config = ConfigDict(frozen=True)
    kind: IdentityKind
    value: str


class Attachment(BaseModel):
    """Media a customer sent, kept as a reference: the provider's media id or URL, never the bytes."""

    model_config = ConfigDict(frozen=True)
    kind: AttachmentKind
    url: str | None = None  # where the provider serves it (Twilio MediaUrlN, Meta attachment payload.url)
    media_id: str | None = None  # the provider's id for fetching it (WhatsApp media id)
    content_type: str | None = None
    filename: str | None = None
    caption: str | None = None


@register
class MessageReceived(Payload):
    event_type: ClassVar[str] = "message.received"
    topic: ClassVar[str] = topics.MESSAGES_INBOUND

    message_id: uuid.UUID
    channel: Channel
    external_id: str
    sender: CustomerIdentity
    # Further identities the channel vouches for (e.g. the email and phone the API caller gave); they link
    # the customer's channels into one thread.
    identities: list[CustomerIdentity] = []
    customer_ref: str | None = None
    display_name: str | None = None
    text: str
    sent_at: datetime
    received_at: datetime
    required_skills: list[str] = []
    priority: int = 0
    # Facts about the customer the sender passed along (the API channel's ``customer.attributes``: plan,
    # tier, ...), for routing rules.
    customer_attributes: dict[str, str] = {}
    attachments: list[Attachment] = []
    # What the message is when it is not plain text: "location", "contacts", "button_reply", "postback",
    # "voicemail", ... (its ``text`` is then a readable rendering of it); none for plain text.
    content_kind: str | None = None
    # Email: its subject; the whole text as written when ``text`` shows less (quoted history and the
    # signature stripped); the Message-IDs it answers, newest first (a reply to our email names ours).
    subject: str | None = None
    original_text: str | None = None
    thread_refs: list[str] = []


# --- conversation.events (key: conversation id) -------------------------------------------------------


OPENING_TEXT_MAX = 1000


@register
class ConversationOpened(Payload):
    event_type: ClassVar[str] = "conversation.opened"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    channel: Channel
    required_skills: list[str]
    priority: int
    opened_at: datetime
    # What routing rules read: the first message's text (at most OPENING_TEXT_MAX characters), the
    # customer's attributes as the channel gave them (plan, tier, ...), and the conversation's tags.
    text: str = ""
    customer_attributes: dict[str, str] = {}
    tags: list[str] = []


@register
class ConversationMessageAdded(Payload):
    event_type: ClassVar[str] = "conversation.message_added"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    conversation_id: uuid.UUID
    message_id: uuid.UUID
    channel: Channel
    direction: Direction
    sent_at: datetime


@register
class ConversationResolved(Payload):
    event_type: ClassVar[str] = "conversation.resolved"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    conversation_id: uuid.UUID
    agent_id: uuid.UUID | None
    resolved_at: datetime


@register
class ConversationReopened(Payload):
    """A resolved conversation the customer wrote to again within the reopen window: it waits for an agent
    again. ``channel`` is the reopening message's; skills and priority are the conversation's own;
    ``previous_agent_id`` is who had it when it was resolved. ``reopened_at`` is later than the resolution
    it follows, so the router can tell a stale reopen (replayed after a later resolution) from the current
    one."""

    event_type: ClassVar[str] = "conversation.reopened"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    channel: Channel
    required_skills: list[str]
    priority: int
    reopened_at: datetime
    previous_agent_id: uuid.UUID | None


@register
class ConversationStatusChanged(Payload):
    """An agent snoozed a conversation (until ``snoozed_until``), or it woke up (its time came, or the agent
    woke it). The states the message flow implies (waiting on the customer or the agent) are told by the
    messages themselves."""

    event_type: ClassVar[str] = "conversation.status_changed"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    conversation_id: uuid.UUID
    status: str  # conversation.models.ConversationStatus
    previous_status: str
    agent_id: uuid.UUID | None  # who changed it; none when the snooze ran out
    snoozed_until: datetime | None = None
    changed_at: datetime


@register
class ConversationTransferRequested(Payload):
    """The agent holding a conversation hands it on: to another agent, or back to the queue with other
    skills or another queue. The router carries it out (``conversation.requeued`` with reason
    ``transferred``, then ``conversation.assigned`` or ``conversation.queued``) if the conversation is still
    with ``from_agent_id``; otherwise the request is stale and changes nothing."""

    event_type: ClassVar[str] = "conversation.transfer_requested"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    conversation_id: uuid.UUID
    from_agent_id: uuid.UUID
    to_agent_id: uuid.UUID | None = None
    required_skills: list[str] | None = None  # replaces the conversation's requirement (any proficiency)
    queue: str | None = None
    requested_by: uuid.UUID | None = None  # the agent or supervisor who asked
    requested_at: datetime


@register
class SurveyAnswered(Payload):
    """A customer answered the satisfaction survey asked after their conversation was resolved. ``kind`` is
    csat (1-5), nps (0-10) or ces (1-7); ``follow_up`` when the score is low (the conversation is flagged)."""

    event_type: ClassVar[str] = "survey.answered"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    survey_id: uuid.UUID
    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    kind: str
    score: int
    follow_up: bool
    channel: Channel
    agent_id: uuid.UUID | None  # who had the conversation when it was resolved
    asked_at: datetime
    answered_at: datetime


@register
class ConversationTagsChanged(Payload):
    """The conversation's tags ("what:..." and "why:..." names), as they are now."""

    event_type: ClassVar[str] = "conversation.tags_changed"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    conversation_id: uuid.UUID
    tags: list[str]
    added: list[str]
    removed: list[str]
    agent_id: uuid.UUID | None
    changed_at: datetime


@register
class CustomerMerged(Payload):
    """An agent found two customers to be one person: every identity and conversation of the source now
    belongs to the target, and the source stays as a tombstone. When both had an unresolved conversation,
    the source's (``closed_conversation_id``) was closed into the target's (``kept_conversation_id``),
    which took its messages. Keyed by the target customer id (not a conversation id, unlike its neighbours
    on this topic)."""

    event_type: ClassVar[str] = "customer.merged"
    topic: ClassVar[str] = topics.CONVERSATION_EVENTS

    merge_id: uuid.UUID
    source_customer_id: uuid.UUID
    target_customer_id: uuid.UUID
    conversation_ids: list[uuid.UUID]  # the source's conversations, now the target's
    closed_conversation_id: uuid.UUID | None = None
    kept_conversation_id: uuid.UUID | None = None
    merged_at: datetime


def merged_targets(merges: Iterable[CustomerMerged]) -> dict[uuid.UUID, uuid.UUID]:
    """Each source customer's final target: A into B then B into C in one batch sends A's rows to C (one
    UPDATE moves a row once, so consumers resolve the chain first). The conversation service refuses
    cycles; a replayed one is cut rather than followed forever."""
    target = {m.source_customer_id: m.target_customer_id for m in merges}
    out = {}
    for source in target:
        seen = {source}
        final = target[source]
        while final in target and final not in seen:
            seen.add(final)
            final = target[final]
        out[source] = final
    return out


# --- routing.events (key: conversation id) ------------------------------------------------------------


@register
class ConversationQueued(Payload):
    event_type: ClassVar[str] = "conversation.queued"
    topic: ClassVar[str] = topics.ROUTING_EVENTS

    conversation_id: uuid.UUID
    required_skills: list[str]
    priority: int
    queued_at: datetime
    # The routing queue the conversation waits in (a routing rule's, else "default"); None from producers
    # that predate it.
    queue: str | None = None
    # The team serving that queue (its agents see the conversation while it waits); None: no team.
    team: str | None = None
    # What the customer can be told (the conversation service's acknowledgement): the position in the
    # queue and the estimated wait in seconds (None: unknown, no online agent can serve it), as the
    # router's queue view computes them; and, when the team serving the queue is out of its business
    # hours, when it opens next (``opens_at``, UTC) with the team's time zone (IANA) to show it in.
    position: int | None = None
    estimated_wait_s: int | None = None
    opens_at: datetime | None = None
    timezone: str | None = None


@register
class ConversationAssigned(Payload):
    event_type: ClassVar[str] = "conversation.assigned"
    topic: ClassVar[str] = topics.ROUTING_EVENTS

    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    queued_at: datetime
    assigned_at: datetime
    # Set when the agent accepted an offer (this event is the acceptance); None for a direct assignment
    # (auto-accept, or a supervisor's force-assign).
    offered_at: datetime | None = None
    queue: str | None = None  # as in conversation.queued


@register
class ConversationOffered(Payload):
    """An agent is offered the conversation, their capacity held for it, and has until ``expires_at`` to
    accept (``conversation.assigned`` follows) or decline."""

    event_type: ClassVar[str] = "conversation.offered"
    topic: ClassVar[str] = topics.ROUTING_EVENTS

    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    queued_at: datetime
    offered_at: datetime
    expires_at: datetime


class _OfferEnded(Payload):
    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    queued_at: datetime
    offered_at: datetime
    ended_at: datetime


@register
class ConversationOfferDeclined(_OfferEnded):
    """The agent declined; the conversation waits again with its original age, and skips that agent."""

    event_type: ClassVar[str] = "conversation.offer_declined"
    topic: ClassVar[str] = topics.ROUTING_EVENTS


@register
class ConversationOfferTimedOut(_OfferEnded):
    """Nobody answered the offer in time (or its agent went offline); as declined."""

    event_type: ClassVar[str] = "conversation.offer_timed_out"
    topic: ClassVar[str] = topics.ROUTING_EVENTS


@register
class ConversationRequeued(Payload):
    """An assigned conversation was taken from its agent and waits again (with its original age)."""

    event_type: ClassVar[str] = "conversation.requeued"
    topic: ClassVar[str] = topics.ROUTING_EVENTS

    conversation_id: uuid.UUID
    agent_id: uuid.UUID  # the agent it was taken from
    reason: RequeueReason
    queued_at: datetime
    requeued_at: datetime


@register
class ConversationEscalated(Payload):
    """A waiting conversation reached a step of its queue's escalation: it now asks less of an agent."""

    event_type: ClassVar[str] = "conversation.escalated"
    topic: ClassVar[str] = topics.ROUTING_EVENTS

    conversation_id: uuid.UUID
    queue: str
    step: int  # steps taken so far, 1-based
    required_skills: dict[str, int]  # skill -> minimum level, from now on
    queued_at: datetime
    escalated_at: datetime


@register
class ConversationSlaBreached(Payload):
    """A conversation waited past its SLA target (set by the routing rule that matched): its priority was
    raised by one (at most 10), once."""

    event_type: ClassVar[str] = "conversation.sla_breached"
    topic: ClassVar[str] = topics.ROUTING_EVENTS

    conversation_id: uuid.UUID
    queue: str
    sla_target_s: int
    queued_at: datetime
    breached_at: datetime
    priority: int  # after the raise


# --- agent.events (key: agent id) ---------------------------------------------------------------------


@register
class AgentStatusChanged(Payload):
    event_type: ClassVar[str] = "agent.status_changed"
    topic: ClassVar[str] = topics.AGENT_EVENTS

    agent_id: uuid.UUID
    status: AgentStatus
    previous_status: AgentStatus
    changed_at: datetime
    # The agent's capacity (conversations at once, across workloads) when the status changed, so consumers
    # can weigh their load against it. Optional: producers before it was carried, and changes the router
    # makes without reading the agent's row (going silent), leave it out.
    capacity: int | None = Field(default=None, ge=0)


@register
class AgentCapacityChanged(Payload):
    """An agent's capacity was changed without a change of status (``agent.status_changed`` carries the
    capacity with every change of status). ``status`` is the agent's status then, so a consumer keeping a
    timeline of statuses and capacities can place it."""

    event_type: ClassVar[str] = "agent.capacity_changed"
    topic: ClassVar[str] = topics.AGENT_EVENTS

    agent_id: uuid.UUID
    capacity: int = Field(ge=0)
    previous_capacity: int = Field(ge=0)
    status: AgentStatus
    changed_at: datetime


@register
class AgentDeleted(Payload):
    """An agent was deleted: their tokens, still validly signed until they expire, must be refused by every
    service (the router refuses them by its own agents table; the others learn it from this event)."""

    event_type: ClassVar[str] = "agent.deleted"
    topic: ClassVar[str] = topics.AGENT_EVENTS

    agent_id: uuid.UUID
    deleted_at: datetime


# --- messages.outbound (key: conversation id) ---------------------------------------------------------


@register
class MessageOutbound(Payload):
    """An agent's reply, stored in the thread with delivery status ``queued``, for the dispatcher to send
    to the customer through ``channel``. Keyed by conversation id, so one conversation's replies leave in
    order. The event id is derived from ``message_id``: the reply is one event however often it is
    published."""

    event_type: ClassVar[str] = "message.outbound"
    topic: ClassVar[str] = topics.MESSAGES_OUTBOUND

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    channel: Channel
    agent_id: uuid.UUID | None  # none for an automated message (an acknowledgement before any agent)
    text: str
    sent_at: datetime
    # The customer's address on ``channel`` (E.164 phone, email address, page-scoped id, API reference).
    recipient: str | None = None
    # Email: the subject, and the customer's Message-IDs this answers, so it threads in their mail client.
    subject: str | None = None
    in_reply_to: str | None = None
    references: list[str] = []
    # Sent by automation (an acknowledgement, an out-of-hours reply, a survey), not typed by the agent:
    # metrics never counts it as a human response.
    automated: bool = False


def outbound_event_id(message_id: uuid.UUID) -> uuid.UUID:
    """The id of the ``message.outbound`` event of a reply."""
    return uuid.uuid5(message_id, MessageOutbound.event_type)


# --- delivery.events (key: "<channel>:<provider message id>", else the message id) ---------------------


@register
class DeliveryStatusChanged(Payload):
    """An outbound message moved on: the dispatcher sent it (``message_id`` and the provider's
    ``external_id`` together, which ties later callbacks to the message), a send failed for good
    (``message_id`` alone), or a provider's status callback reported it (``external_id`` alone)."""

    event_type: ClassVar[str] = "delivery.status_changed"
    topic: ClassVar[str] = topics.DELIVERY_EVENTS

    channel: Channel
    message_id: uuid.UUID | None = None
    external_id: str | None = None
    status: DeliveryState
    at: datetime
    error_code: str | None = None
    error_reason: str | None = None

    @property
    def partition_key(self) -> str:
        """The provider's id when known, so a send and the callbacks about it stay in order."""
        if self.external_id is not None:
            return f"{self.channel.value}:{self.external_id}"
        return str(self.message_id)


DELIVERY_NAMESPACE = uuid.UUID("0f7d8c52-3a1e-4b6f-9d2c-6e5a4b3c2d1e")


def delivery_event_id(event: DeliveryStatusChanged) -> uuid.UUID:
    """One event per (message, status): a provider's repeated callback, or a republished send report, is
    the same event."""
    subject = event.external_id if event.external_id is not None else str(event.message_id)
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{event.channel.value}:{subject}:{event.status.value}")
