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

Most columns keep their first value. A few follow another rule (``MERGE``), still independent of the
order events arrive in: the first human reply is the earliest one told, the last resolution and reopening
the latest, the channels the customer used are the union of all told, and the tags are those told with the
latest time (the opening's, or a ``conversation.tags_changed``'s): the tags it carries now.
Assignments and requeues are rows of their own (``Handoff``), keyed by conversation, time and kind, from
which "who holds it now" is read by time, not by arrival.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import Enum, StrEnum
from operator import attrgetter
from typing import Any, TypeVar

from switchboard_common.events import (
    AgentCapacityChanged,
    AgentDeleted,
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
    ConversationStatusChanged,
    ConversationTagsChanged,
    ConversationTransferRequested,
    CustomerMerged,
    DeliveryState,
    DeliveryStatusChanged,
    Direction,
    MessageOutbound,
    MessageReceived,
    Payload,
    SurveyAnswered,
    registered,
)

# Registered event types metrics keeps no facts of (some are read apart, see below).
NOT_COUNTED: frozenset[type[Payload]] = frozenset(
    {
        # Snoozes and wake-ups: no KPI reads them yet.
        ConversationStatusChanged,
        # A transfer's effect is told by the router's requeue and assignment, which metrics counts.
        ConversationTransferRequested,
        # Satisfaction answers: kept apart (metrics.survey_answers, kpis/satisfaction), not timeline facts.
        SurveyAnswered,
        # Handled apart (switchboard_metrics.customers): a merge moves facts, it is no fact of its own.
        CustomerMerged,
        # The agent's last status change (offline, sent with the deletion) is what the agent KPIs read.
        AgentDeleted,
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
    agent_id: uuid.UUID | None = None  # an agent's reply: who sent it
    automated: bool | None = None  # an outbound message sent by automation, not typed by an agent


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
    customer_id: uuid.UUID | None = None
    queue: str | None = None
    tags: tuple[str, ...] | None = None  # the tags it carries now: those told with the latest tags_at
    tags_at: datetime | None = None  # when they were told: the opening, or the latest tag change (MERGE)
    channels: tuple[str, ...] | None = None  # every channel the customer wrote on (MERGE: union)
    first_reply_at: datetime | None = None  # the first human reply (MERGE: earliest)
    resolved_by: uuid.UUID | None = None
    first_reopened_at: datetime | None = None  # MERGE: earliest
    last_resolved_at: datetime | None = None  # MERGE: latest
    last_reopened_at: datetime | None = None  # MERGE: latest


# A delivery's key: its channel and the provider's message id, or our message id when the send failed for
# good before the provider gave one. The dispatcher's send report carries both ids, and every callback after
# it only the provider's, so the send and its callbacks meet on the provider's id; a send that failed for
# good has no provider id and no callback, so our id is its whole story.
DeliveryKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class DeliveryFacts:
    """The ``delivery_facts`` columns (but the key): when each state was first reported. Providers report
    states out of order (a ``read`` without ``delivered``, a ``delivered`` after ``read``), so each state
    has its own column, kept at its earliest report (MERGE): a late report adds what it tells and undoes
    nothing."""

    message_id: uuid.UUID | None = None
    accepted_at: datetime | None = None  # ``sent``: the provider accepted the message
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failed_at: datetime | None = None


# Per reported state, the column that keeps it (``queued`` is the conversation service's own state, never
# reported to metrics as news).
DELIVERY_STATE_COLUMNS: dict[DeliveryState, str] = {
    DeliveryState.SENT: "accepted_at",
    DeliveryState.DELIVERED: "delivered_at",
    DeliveryState.READ: "read_at",
    DeliveryState.FAILED: "failed_at",
}


def _utc(at: datetime) -> datetime:
    """An event's time as stored in facts: a time without a zone is UTC (a customer's message may carry one,
    ``sent_at`` from a client, and times of both kinds must compare and subtract: reply times, the earliest
    first reply).

    Every time is kept in ``datetime.UTC``: pydantic gives parsed times its own tzinfo class, whose
    ``utcoffset`` is a call out of C on every comparison and hash (rollup cells hash their minute). Times
    read from the database are in ``UTC`` already, so events are the only way in that needs this."""
    if at.tzinfo is UTC:
        return at
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def stored(cls: type[F], values: Iterable[Any]) -> F:
    """Facts from a stored row's values, in the columns' order. asyncpg reads a timestamptz at the ends of
    its range (``infinity``, or a time an event carried at the edge of Python's range) as a naive
    ``datetime.min``/``max``: such a time is made UTC as an event's is."""
    row: list[Any] = [_utc(v) if isinstance(v, datetime) else v for v in values]
    return cls(*row)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function giving these attributes' values as one tuple (in C: facts are made and read per event)."""
    get = attrgetter(*names)
    return get if len(names) > 1 else lambda obj: (get(obj),)


class Merge(Enum):
    FIRST = "first"  # the first value told stays
    EARLIEST = "earliest"
    LATEST = "latest"
    UNION = "union"  # of tuples, kept sorted


# The columns that do not keep their first value. Each rule is commutative, associative and idempotent,
# so the stored row does not depend on the order or the number of times events are applied.
MERGE: dict[str, Merge] = {
    "channels": Merge.UNION,
    "first_reply_at": Merge.EARLIEST,
    "first_reopened_at": Merge.EARLIEST,
    "last_resolved_at": Merge.LATEST,
    "last_reopened_at": Merge.LATEST,
    "tags_at": Merge.LATEST,
    # Delivery states: the earliest report of each (a provider repeating a state adds nothing).
    **dict.fromkeys(("accepted_at", "delivered_at", "read_at", "failed_at"), Merge.EARLIEST),
}


# Columns whose value is the one told with the latest value of another column (its clock): a
# conversation's tags are those of its latest change by event time, or those it opened with, whichever
# events arrive first. A tie (two changes at one instant) goes to the greater value, so the order of
# arrival never decides; values compare as their texts joined by U+001F, the order PostgreSQL's "C"
# collation gives the same texts (see ``repository``).
FOLLOWS: dict[str, str] = {"tags": "tags_at"}
TAG_SEPARATOR = "\x1f"
_NEVER = datetime.min.replace(tzinfo=UTC)


def _rank(at: datetime | None, tags: tuple[str, ...]) -> tuple[datetime, str]:
    return (at or _NEVER, TAG_SEPARATOR.join(tags))


def merged(stored: Mapping[str, Any], told: Mapping[str, Any]) -> dict[str, Any]:
    """The known columns of a row after ``told`` meets ``stored`` (both: the known columns only), each by
    its rule (``MERGE``, ``FOLLOWS``)."""
    out = dict(stored)
    for column, value in told.items():
        known = out.get(column)
        out[column] = value if known is None else combine(column, known, value)
    for column, clock in FOLLOWS.items():
        if column in told and column in stored:
            newer = _rank(told.get(clock), told[column]) > _rank(stored.get(clock), stored[column])
            out[column] = told[column] if newer else stored[column]
    return out


def combine(column: str, stored: Any, told: Any) -> Any:
    """A column's value after ``told`` meets ``stored`` (either may be None: unknown)."""
    if stored is None:
        return told
    if told is None:
        return stored
    rule = MERGE.get(column, Merge.FIRST)
    if rule is Merge.FIRST:
        return stored
    if rule is Merge.EARLIEST:
        return min(stored, told)
    if rule is Merge.LATEST:
        return max(stored, told)
    return tuple(sorted({*stored, *told}))


class HandoffKind(StrEnum):
    ASSIGNED = "assigned"
    REQUEUED = "requeued"  # taken back from the agent, waiting again


@dataclass(frozen=True, slots=True, order=True)
class Handoff:
    """A conversation given to an agent, or taken back from one, at a time: who holds a conversation now
    is the latest handoff's agent (unless it was taken back, or reopened since)."""

    conversation_id: uuid.UUID
    at: datetime
    kind: HandoffKind
    agent_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A row of an agent's timeline: a change of status, or of capacity (``event_type`` says which event
    told it, and counts it), with the status and the capacity from then on."""

    agent_id: uuid.UUID
    changed_at: datetime
    status: str
    capacity: int | None = None  # the agent's capacity then, when the router said
    event_type: str = AgentStatusChanged.event_type


class OccurrenceKind(StrEnum):
    OFFERED = "offered"
    OFFER_ACCEPTED = "offer_accepted"
    OFFER_DECLINED = "offer_declined"
    OFFER_TIMED_OUT = "offer_timed_out"
    ESCALATED = "escalated"
    SLA_BREACHED = "sla_breached"


# Offers belong to their agent; escalations and breaches to the conversation's queue.
OFFER_KINDS = frozenset(
    {
        OccurrenceKind.OFFERED,
        OccurrenceKind.OFFER_ACCEPTED,
        OccurrenceKind.OFFER_DECLINED,
        OccurrenceKind.OFFER_TIMED_OUT,
    }
)
# The event type each kind counts: an accepted offer is a ``conversation.assigned``, counted as that.
OCCURRENCE_EVENTS: dict[OccurrenceKind, str] = {
    OccurrenceKind.OFFERED: ConversationOffered.event_type,
    OccurrenceKind.OFFER_DECLINED: ConversationOfferDeclined.event_type,
    OccurrenceKind.OFFER_TIMED_OUT: ConversationOfferTimedOut.event_type,
    OccurrenceKind.ESCALATED: ConversationEscalated.event_type,
    OccurrenceKind.SLA_BREACHED: ConversationSlaBreached.event_type,
}


@dataclass(frozen=True, slots=True, order=True)
class Occurrence:
    """Something the router did to a waiting conversation, a row of its own keyed by kind, conversation and
    time (the router offers a conversation to one agent at a time, and takes an escalation step or breaches
    an SLA once at a time)."""

    kind: OccurrenceKind
    conversation_id: uuid.UUID
    at: datetime
    agent_id: uuid.UUID | None = None
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class Reopen:
    conversation_id: uuid.UUID
    reopened_at: datetime


@dataclass(frozen=True, slots=True, order=True)
class Retag:
    """A change of a conversation's tags, a row of its own so that each counts once whatever the order
    its events come in (the facts keep only the latest)."""

    conversation_id: uuid.UUID
    changed_at: datetime


F = TypeVar("F", MessageFacts, ConversationFacts, DeliveryFacts)
K = TypeVar("K")

MESSAGE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(MessageFacts))
CONVERSATION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ConversationFacts))
DELIVERY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(DeliveryFacts))

# The column whose first value counts each event type (only that type sets it).
# A message's conversation_id counts the event that told it first (``Batch.announced``).
COUNTED_MESSAGE_COLUMNS: dict[str, str] = {"received_at": MessageReceived.event_type}
COUNTED_CONVERSATION_COLUMNS: dict[str, str] = {
    "opened_at": ConversationOpened.event_type,
    "queued": ConversationQueued.event_type,
    "assigned_at": ConversationAssigned.event_type,
    "resolved_at": ConversationResolved.event_type,
}


# Per kind of facts, its columns and their getter: looked up per event, where ``dataclasses.fields`` is slow.
_COLUMNS: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {
    cls: (columns, _getter(columns))
    for cls, columns in (
        (MessageFacts, MESSAGE_COLUMNS),
        (ConversationFacts, CONVERSATION_COLUMNS),
        (DeliveryFacts, DELIVERY_COLUMNS),
    )
}


def _known(facts: MessageFacts | ConversationFacts | DeliveryFacts) -> dict[str, Any]:
    names, values = _COLUMNS[type(facts)]
    return {name: value for name, value in zip(names, values(facts), strict=True) if value is not None}


def then(earlier: F, later: F) -> F:
    """``earlier`` followed by ``later``: each column by its rule (``MERGE``, ``FOLLOWS``; a column already
    known keeps its value unless its rule says otherwise), as the stored row does, so applying an event
    twice, or in any order, gives the same row. (Every column defaults to None: unknown.)"""
    return type(later)(**merged(_known(earlier), _known(later)))


# --- what each event tells -----------------------------------------------------------------------------

Told = (
    tuple[uuid.UUID, MessageFacts]
    | tuple[uuid.UUID, ConversationFacts]
    | tuple[DeliveryKey, DeliveryFacts]
    | StatusChange
    | Occurrence
    | Reopen
    | Retag
    | Handoff
)


@functools.singledispatch
def facts_of(payload: Payload) -> list[Told] | None:
    """The natural keys an event is about and what it tells of each; ``None`` for a type metrics does not
    know (a unit test keeps every registered type known)."""
    return None


@facts_of.register
def _received(payload: MessageReceived) -> list[Told] | None:
    return [
        (
            payload.message_id,
            MessageFacts(
                channel=payload.channel.value,
                direction=Direction.INBOUND.value,
                sent_at=_utc(payload.sent_at),
                received_at=_utc(payload.received_at),
            ),
        )
    ]


@facts_of.register
def _message_added(payload: ConversationMessageAdded) -> list[Told] | None:
    told: list[Told] = [
        (
            payload.message_id,
            MessageFacts(
                conversation_id=payload.conversation_id,
                channel=payload.channel.value,
                direction=payload.direction.value,
                sent_at=_utc(payload.sent_at),
            ),
        )
    ]
    if payload.direction is Direction.INBOUND:
        told.append((payload.conversation_id, ConversationFacts(channels=(payload.channel.value,))))
    return told


@facts_of.register
def _outbound(payload: MessageOutbound) -> list[Told] | None:
    told: list[Told] = [
        (
            payload.message_id,
            MessageFacts(
                conversation_id=payload.conversation_id,
                channel=payload.channel.value,
                direction=Direction.OUTBOUND.value,
                sent_at=_utc(payload.sent_at),
                agent_id=payload.agent_id,
                automated=payload.automated,
            ),
        )
    ]
    if not payload.automated:
        told.append((payload.conversation_id, ConversationFacts(first_reply_at=_utc(payload.sent_at))))
    return told


@facts_of.register
def _opened(payload: ConversationOpened) -> list[Told] | None:
    return [
        (
            payload.conversation_id,
            ConversationFacts(
                opened_at=_utc(payload.opened_at),
                channel=payload.channel.value,
                customer_id=payload.customer_id,
                tags=tuple(sorted(set(payload.tags))),
                tags_at=_utc(payload.opened_at),
                channels=(payload.channel.value,),
            ),
        )
    ]


@facts_of.register
def _queued(payload: ConversationQueued) -> list[Told] | None:
    return [
        (
            payload.conversation_id,
            ConversationFacts(queued=True, queued_at=_utc(payload.queued_at), queue=payload.queue),
        )
    ]


@facts_of.register
def _assigned(payload: ConversationAssigned) -> list[Told] | None:
    # A conversation assigned at once has no conversation.queued event: its queued_at comes from here.
    return [
        (
            payload.conversation_id,
            ConversationFacts(
                queued_at=_utc(payload.queued_at),
                assigned_at=_utc(payload.assigned_at),
                agent_id=payload.agent_id,
                queue=payload.queue,
            ),
        ),
        Handoff(payload.conversation_id, _utc(payload.assigned_at), HandoffKind.ASSIGNED, payload.agent_id),
        *(
            [
                Occurrence(
                    OccurrenceKind.OFFER_ACCEPTED,
                    payload.conversation_id,
                    _utc(payload.assigned_at),
                    payload.agent_id,
                )
            ]
            if payload.offered_at is not None
            else []
        ),
    ]


@facts_of.register
def _offered(payload: ConversationOffered) -> list[Told] | None:
    return [
        Occurrence(
            OccurrenceKind.OFFERED, payload.conversation_id, _utc(payload.offered_at), payload.agent_id
        )
    ]


@facts_of.register
def _declined(payload: ConversationOfferDeclined) -> list[Told] | None:
    at = _utc(payload.ended_at)
    return [Occurrence(OccurrenceKind.OFFER_DECLINED, payload.conversation_id, at, payload.agent_id)]


@facts_of.register
def _offer_timed_out(payload: ConversationOfferTimedOut) -> list[Told] | None:
    at = _utc(payload.ended_at)
    return [Occurrence(OccurrenceKind.OFFER_TIMED_OUT, payload.conversation_id, at, payload.agent_id)]


@facts_of.register
def _escalated(payload: ConversationEscalated) -> list[Told] | None:
    at = _utc(payload.escalated_at)
    return [Occurrence(OccurrenceKind.ESCALATED, payload.conversation_id, at, queue=payload.queue)]


@facts_of.register
def _sla_breached(payload: ConversationSlaBreached) -> list[Told] | None:
    at = _utc(payload.breached_at)
    return [Occurrence(OccurrenceKind.SLA_BREACHED, payload.conversation_id, at, queue=payload.queue)]


@facts_of.register
def _requeued(payload: ConversationRequeued) -> list[Told] | None:
    return [
        Handoff(payload.conversation_id, _utc(payload.requeued_at), HandoffKind.REQUEUED, payload.agent_id)
    ]


@facts_of.register
def _resolved(payload: ConversationResolved) -> list[Told] | None:
    return [
        (
            payload.conversation_id,
            ConversationFacts(
                resolved_at=_utc(payload.resolved_at),
                last_resolved_at=_utc(payload.resolved_at),
                resolved_by=payload.agent_id,
            ),
        )
    ]


@facts_of.register
def _reopened(payload: ConversationReopened) -> list[Told] | None:
    return [
        Reopen(payload.conversation_id, _utc(payload.reopened_at)),
        (
            payload.conversation_id,
            ConversationFacts(
                first_reopened_at=_utc(payload.reopened_at), last_reopened_at=_utc(payload.reopened_at)
            ),
        ),
    ]


@facts_of.register
def _tags_changed(payload: ConversationTagsChanged) -> list[Told] | None:
    return [
        Retag(payload.conversation_id, _utc(payload.changed_at)),
        (
            payload.conversation_id,
            ConversationFacts(tags=tuple(sorted(set(payload.tags))), tags_at=_utc(payload.changed_at)),
        ),
    ]


@facts_of.register
def _status_changed(payload: AgentStatusChanged) -> list[Told] | None:
    return [StatusChange(payload.agent_id, _utc(payload.changed_at), payload.status.value, payload.capacity)]


@facts_of.register
def _capacity_changed(payload: AgentCapacityChanged) -> list[Told] | None:
    # Stored as a row of the agent's timeline with the status unchanged: the time in each status sums the
    # same, and the latest capacity is read from the same rows.
    return [
        StatusChange(
            payload.agent_id,
            _utc(payload.changed_at),
            payload.status.value,
            payload.capacity,
            payload.event_type,
        )
    ]


@facts_of.register
def _delivery(payload: DeliveryStatusChanged) -> list[Told] | None:
    column = DELIVERY_STATE_COLUMNS.get(payload.status)
    subject = payload.external_id if payload.external_id is not None else payload.message_id
    if column is None or subject is None:
        return []  # nothing metrics counts (``queued``), or a report about no message at all
    times: dict[str, Any] = {column: _utc(payload.at)}
    facts = DeliveryFacts(message_id=payload.message_id, **times)
    return [((payload.channel.value, str(subject)), facts)]


# --- a call's facts, merged ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """The facts of a call's events, one entry per natural key (the first value of a column wins), ready
    for statements that may touch each row only once."""

    messages: dict[uuid.UUID, MessageFacts] = field(default_factory=dict)
    conversations: dict[uuid.UUID, ConversationFacts] = field(default_factory=dict)
    # (agent, changed_at) -> (status, capacity, the event type that told it)
    statuses: dict[tuple[uuid.UUID, datetime], tuple[str, int | None, str]] = field(default_factory=dict)
    reopens: set[Reopen] = field(default_factory=set)
    retags: set[Retag] = field(default_factory=set)
    occurrences: set[Occurrence] = field(default_factory=set)
    handoffs: set[Handoff] = field(default_factory=set)
    deliveries: dict[DeliveryKey, DeliveryFacts] = field(default_factory=dict)
    # Per message, the type of the first event that told its conversation (the value its row keeps), which
    # counts when that column becomes known. Bookkeeping of ``messages``: not compared.
    announced: dict[uuid.UUID, str] = field(default_factory=dict, compare=False)


def _put(into: dict[K, F], key: K, facts: F) -> None:
    earlier = into.get(key)
    into[key] = facts if earlier is None else then(earlier, facts)


def _status_row(batch: Batch, told: StatusChange, event_type: str) -> None:
    batch.statuses.setdefault((told.agent_id, told.changed_at), (told.status, told.capacity, told.event_type))


def _message_row(batch: Batch, told: tuple[uuid.UUID, MessageFacts], event_type: str) -> None:
    key, facts = told
    _put(batch.messages, key, facts)
    if facts.conversation_id is not None:
        batch.announced.setdefault(key, event_type)


# Where each kind of told row goes in a batch, by its type (a keyed row, a (key, facts) pair, by its facts'
# type): one lookup per row, where a chain of isinstance checks cost a tenth of the consumer's time.
_INTO: dict[type, Callable[[Batch, Any, str], None]] = {
    StatusChange: _status_row,
    Occurrence: lambda batch, told, _: batch.occurrences.add(told),
    Reopen: lambda batch, told, _: batch.reopens.add(told),
    Retag: lambda batch, told, _: batch.retags.add(told),
    Handoff: lambda batch, told, _: batch.handoffs.add(told),
    MessageFacts: _message_row,
    ConversationFacts: lambda batch, told, _: _put(batch.conversations, told[0], told[1]),
    DeliveryFacts: lambda batch, told, _: _put(batch.deliveries, told[0], told[1]),
}


def merge(payloads: Iterable[Payload]) -> Batch:
    batch = Batch()
    for payload in payloads:
        event_type = payload.event_type
        for told in facts_of(payload) or ():
            row: Any = told
            _INTO[type(row[1]) if type(row) is tuple else type(row)](batch, row, event_type)
    return batch


# --- what is news ----------------------------------------------------------------------------------------


def news(before: Mapping[K, F], incoming: Mapping[K, F], after: dict[K, F] | None = None) -> dict[K, F]:
    """Per key of ``incoming`` with anything new, only the columns whose value changes: for most, those
    unknown in the stored row ``before`` (no row: nothing known) and known in ``incoming``; for the
    columns of ``MERGE``, those its rule changes. A first-wins value is never replaced, so what is known
    already is not news even when ``incoming`` says otherwise. ``after``, if given, gets each such key's
    row after the news (``then(before, news)``, which is computed here anyway)."""
    out: dict[K, F] = {}
    for key, facts in incoming.items():
        stored = before.get(key)
        known = _known(stored) if stored is not None else {}
        row = merged(known, _known(facts))
        new = {column: value for column, value in row.items() if value != known.get(column)}
        # A value that follows a clock is written with it: the statement judges the pair, as ``merged`` does.
        for column, clock in FOLLOWS.items():
            if column in new and clock in row:
                new[clock] = row[clock]
        if new:
            out[key] = type(facts)(**new)
            if after is not None:
                after[key] = type(facts)(**row)
    return out


@dataclass(frozen=True, slots=True)
class News:
    """What a call adds to the stored facts (only the columns that become known) and what it counts."""

    messages: dict[uuid.UUID, MessageFacts]
    conversations: dict[uuid.UUID, ConversationFacts]
    counts: Counter[str]
    deliveries: dict[DeliveryKey, DeliveryFacts] = field(default_factory=dict)
    # Per key with news, its whole row after them: what the rollups are computed from.
    messages_after: dict[uuid.UUID, MessageFacts] = field(default_factory=dict)
    conversations_after: dict[uuid.UUID, ConversationFacts] = field(default_factory=dict)
    deliveries_after: dict[DeliveryKey, DeliveryFacts] = field(default_factory=dict)


def news_of(
    batch: Batch,
    stored_messages: Mapping[uuid.UUID, MessageFacts],
    stored_conversations: Mapping[uuid.UUID, ConversationFacts],
    stored_deliveries: Mapping[DeliveryKey, DeliveryFacts] | None = None,
) -> News:
    """The news of ``batch`` against the stored rows of its keys; each event type counts the keys whose
    counting column becomes known (a message's conversation counts the event that announced it; a delivery
    report, each state that becomes known for its delivery, so a repeated report counts nothing; agent
    status changes and reopens are counted by the rows their insert adds)."""
    messages_after: dict[uuid.UUID, MessageFacts] = {}
    conversations_after: dict[uuid.UUID, ConversationFacts] = {}
    deliveries_after: dict[DeliveryKey, DeliveryFacts] = {}
    messages = news(stored_messages, batch.messages, messages_after)
    conversations = news(stored_conversations, batch.conversations, conversations_after)
    deliveries = news(stored_deliveries or {}, batch.deliveries, deliveries_after)
    counts: Counter[str] = Counter()
    for d in deliveries.values():
        states = sum(getattr(d, c) is not None for c in DELIVERY_STATE_COLUMNS.values())
        if states:
            counts[DeliveryStatusChanged.event_type] += states
    for key, m in messages.items():
        counts.update(t for c, t in COUNTED_MESSAGE_COLUMNS.items() if getattr(m, c) is not None)
        if m.conversation_id is not None:
            counts[batch.announced[key]] += 1
    for cf in conversations.values():
        counts.update(t for c, t in COUNTED_CONVERSATION_COLUMNS.items() if getattr(cf, c) is not None)
    return News(
        messages, conversations, counts, deliveries, messages_after, conversations_after, deliveries_after
    )
