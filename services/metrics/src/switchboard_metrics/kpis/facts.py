"""What each event tells, keyed by the natural key it is about, and which of it is news: pure functions,
dispatched by payload type.

Every counted event type has a natural key and a column that only it sets: ``message.received`` the
message's ``received_at``; the message's ``conversation_id`` is set by the event that announces the message
in its thread, ``conversation.message_added`` for a customer's message and ``message.outbound`` for an
agent's reply, and counts that event (a message is announced by one of the two: were it told by both, the
first to tell its conversation would count); ``conversation.opened`` / ``queued`` / ``assigned`` /
``resolved`` the conversation's ``opened_at`` /
``queued`` / ``assigned_at`` / ``resolved_at``; ``agent.status_changed`` is its own row, keyed by
``(agent_id, changed_at)``, and so is ``conversation.reopened``, keyed by ``(conversation_id,
reopened_at)`` (a conversation may reopen many times). An event counts when its column goes from unknown
to known (or its row is added), so the same event met again (a redelivery, a replayed poll, an outbox
republish at a new offset) counts nothing.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, TypeVar

from switchboard_common.events import (
    AgentStatusChanged,
    ConversationAssigned,
    ConversationEscalated,
    ConversationMessageAdded,
    ConversationOfferDeclined,
    ConversationOffered,
    ConversationOfferTimedOut,
    ConversationOpened,
    ConversationQueued,
    ConversationReopened,
    ConversationRequeued,
    ConversationResolved,
    ConversationSlaBreached,
    DeliveryStatusChanged,
    Direction,
    MessageOutbound,
    MessageReceived,
    Payload,
    registered,
)

# Delivery reports are about a provider's message id, which metrics cannot tie to a message of its own yet:
# delivery KPIs (delivered and failed shares per channel) come with the live-KPI work. Until then metrics
# does not read delivery.events at all.
# Offers, their answers and requeues feed the per-agent and per-queue KPIs of the live-KPI work, which do
# not exist yet; until then metrics does not decode them.
NOT_COUNTED: frozenset[type[Payload]] = frozenset(
    {
        DeliveryStatusChanged,
        ConversationOffered,
        ConversationOfferDeclined,
        ConversationOfferTimedOut,
        ConversationRequeued,
        ConversationSlaBreached,
        ConversationEscalated,
    }
)


def counted_types() -> list[type[Payload]]:
    """The event types metrics consumes: every registered one it has facts for."""
    return [t for t in registered() if t not in NOT_COUNTED]


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """The ``message_facts`` columns (but the key); ``None`` means "not known here"."""

    channel: str | None = None
    direction: str | None = None
    conversation_id: uuid.UUID | None = None
    sent_at: datetime | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """The ``conversation_facts`` columns (but the key); ``None`` means "not known here"."""

    channel: str | None = None
    agent_id: uuid.UUID | None = None
    opened_at: datetime | None = None
    # conversation.assigned carries queued_at too, so queued_at cannot tell whether conversation.queued
    # was seen: this column can.
    queued: bool | None = None
    queued_at: datetime | None = None
    assigned_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    agent_id: uuid.UUID
    changed_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class Reopen:
    conversation_id: uuid.UUID
    reopened_at: datetime


F = TypeVar("F", MessageFacts, ConversationFacts)
K = TypeVar("K")

MESSAGE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(MessageFacts))
CONVERSATION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ConversationFacts))

# The column whose first value counts each event type (only that type sets it).
# A message's conversation_id counts the event that told it first (``Batch.announced``).
COUNTED_MESSAGE_COLUMNS: dict[str, str] = {"received_at": MessageReceived.event_type}
COUNTED_CONVERSATION_COLUMNS: dict[str, str] = {
    "opened_at": ConversationOpened.event_type,
    "queued": ConversationQueued.event_type,
    "assigned_at": ConversationAssigned.event_type,
    "resolved_at": ConversationResolved.event_type,
}


def _known(facts: MessageFacts | ConversationFacts) -> dict[str, Any]:
    return {f.name: value for f in fields(facts) if (value := getattr(facts, f.name)) is not None}


def then(earlier: F, later: F) -> F:
    """``earlier`` followed by ``later``: a column already known keeps its value (first wins, as the stored
    row does), so applying an event twice, or in any order, gives the same row."""
    return replace(later, **_known(earlier))


# --- what each event tells -----------------------------------------------------------------------------

Told = tuple[uuid.UUID, MessageFacts] | tuple[uuid.UUID, ConversationFacts] | StatusChange | Reopen


@functools.singledispatch
def facts_of(payload: Payload) -> Told | None:
    """The natural key an event is about and what it tells of it; ``None`` for a type metrics does not
    know (a unit test keeps every registered type known)."""
    return None


@facts_of.register
def _received(payload: MessageReceived) -> Told | None:
    return payload.message_id, MessageFacts(
        channel=payload.channel.value,
        direction=Direction.INBOUND.value,
        sent_at=payload.sent_at,
        received_at=payload.received_at,
    )


@facts_of.register
def _message_added(payload: ConversationMessageAdded) -> Told | None:
    return payload.message_id, MessageFacts(
        conversation_id=payload.conversation_id,
        channel=payload.channel.value,
        direction=payload.direction.value,
        sent_at=payload.sent_at,
    )


@facts_of.register
def _outbound(payload: MessageOutbound) -> Told | None:
    return payload.message_id, MessageFacts(
        conversation_id=payload.conversation_id,
        channel=payload.channel.value,
        direction=Direction.OUTBOUND.value,
        sent_at=payload.sent_at,
    )


@facts_of.register
def _opened(payload: ConversationOpened) -> Told | None:
    return payload.conversation_id, ConversationFacts(
        opened_at=payload.opened_at, channel=payload.channel.value
    )


@facts_of.register
def _queued(payload: ConversationQueued) -> Told | None:
    return payload.conversation_id, ConversationFacts(queued=True, queued_at=payload.queued_at)


@facts_of.register
def _assigned(payload: ConversationAssigned) -> Told | None:
    # A conversation assigned at once has no conversation.queued event: its queued_at comes from here.
    return payload.conversation_id, ConversationFacts(
        queued_at=payload.queued_at, assigned_at=payload.assigned_at, agent_id=payload.agent_id
    )


@facts_of.register
def _resolved(payload: ConversationResolved) -> Told | None:
    return payload.conversation_id, ConversationFacts(resolved_at=payload.resolved_at)


@facts_of.register
def _reopened(payload: ConversationReopened) -> Told | None:
    return Reopen(payload.conversation_id, payload.reopened_at)


@facts_of.register
def _status_changed(payload: AgentStatusChanged) -> Told | None:
    return StatusChange(payload.agent_id, payload.changed_at, payload.status.value)


# --- a call's facts, merged ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """The facts of a call's events, one entry per natural key (the first value of a column wins), ready
    for statements that may touch each row only once."""

    messages: dict[uuid.UUID, MessageFacts] = field(default_factory=dict)
    conversations: dict[uuid.UUID, ConversationFacts] = field(default_factory=dict)
    statuses: dict[tuple[uuid.UUID, datetime], str] = field(default_factory=dict)
    reopens: set[Reopen] = field(default_factory=set)
    # Per message, the type of the first event that told its conversation (the value its row keeps), which
    # counts when that column becomes known. Bookkeeping of ``messages``: not compared.
    announced: dict[uuid.UUID, str] = field(default_factory=dict, compare=False)


def _put(into: dict[uuid.UUID, F], key: uuid.UUID, facts: F) -> None:
    earlier = into.get(key)
    into[key] = facts if earlier is None else then(earlier, facts)


def merge(payloads: Iterable[Payload]) -> Batch:
    batch = Batch()
    for payload in payloads:
        told = facts_of(payload)
        if told is None:
            continue
        if isinstance(told, StatusChange):
            batch.statuses.setdefault((told.agent_id, told.changed_at), told.status)
            continue
        if isinstance(told, Reopen):
            batch.reopens.add(told)
            continue
        key, facts = told
        if isinstance(facts, MessageFacts):
            _put(batch.messages, key, facts)
            if facts.conversation_id is not None:
                batch.announced.setdefault(key, payload.event_type)
        else:
            _put(batch.conversations, key, facts)
    return batch


# --- what is news ----------------------------------------------------------------------------------------


def news(before: Mapping[K, F], incoming: Mapping[K, F]) -> dict[K, F]:
    """Per key of ``incoming`` with anything new, only the columns that become known: unknown in the
    stored row ``before`` (no row: nothing known) and known in ``incoming``. A stored value is never
    replaced, so what is known already is not news even when ``incoming`` says otherwise."""
    out: dict[K, F] = {}
    for key, facts in incoming.items():
        stored = before.get(key)
        known = _known(stored) if stored is not None else {}
        new = {column: value for column, value in _known(facts).items() if column not in known}
        if new:
            out[key] = type(facts)(**new)
    return out


@dataclass(frozen=True, slots=True)
class News:
    """What a call adds to the stored facts (only the columns that become known) and what it counts."""

    messages: dict[uuid.UUID, MessageFacts]
    conversations: dict[uuid.UUID, ConversationFacts]
    counts: Counter[str]


def news_of(
    batch: Batch,
    stored_messages: Mapping[uuid.UUID, MessageFacts],
    stored_conversations: Mapping[uuid.UUID, ConversationFacts],
) -> News:
    """The news of ``batch`` against the stored rows of its keys; each event type counts the keys whose
    counting column becomes known (a message's conversation counts the event that announced it; agent
    status changes and reopens are counted by the rows their insert adds)."""
    messages = news(stored_messages, batch.messages)
    conversations = news(stored_conversations, batch.conversations)
    counts: Counter[str] = Counter()
    for key, m in messages.items():
        counts.update(t for c, t in COUNTED_MESSAGE_COLUMNS.items() if getattr(m, c) is not None)
        if m.conversation_id is not None:
            counts[batch.announced[key]] += 1
    for cf in conversations.values():
        counts.update(t for c, t in COUNTED_CONVERSATION_COLUMNS.items() if getattr(cf, c) is not None)
    return News(messages, conversations, counts)
