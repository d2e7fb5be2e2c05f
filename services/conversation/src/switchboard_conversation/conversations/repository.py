"""All SQL of the conversation service.

The consumer's statements are set-based and of constant shape: arrays in, ``unnest`` / ``= ANY`` inside,
so a batch of any size is a fixed number of statements, each prepared once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.auth import Principal
from switchboard_common.db.sql import INTS, TEXTS, TIMES, UUIDS, statement
from switchboard_common.errors import Unavailable
from switchboard_common.events import DELIVERY_PROGRESS, DeliveryState
from switchboard_conversation.conversations.linking import IdentityKey
from switchboard_conversation.models import (
    WAITING,
    Conversation,
    ConversationStatus,
    Customer,
    CustomerIdentity,
    Message,
    MessageDirection,
    Tag,
)
from switchboard_conversation.stream.sql import INSERT as FEED_INSERT
from switchboard_conversation.stream.sql import message_data, micros

# --- the inbound-message batch ------------------------------------------------------------------------

_KNOWN = statement(
    """
    WITH identities AS MATERIALIZED (
        SELECT i.kind, i.value, i.customer_id
        FROM conversation.customer_identities i
        JOIN unnest(:kinds, :values) AS k(kind, value) ON i.kind = k.kind AND i.value = k.value
    )
    SELECT 'message' AS what, id::text AS kind, NULL AS value, NULL::uuid AS customer_id
    FROM conversation.messages WHERE id = ANY(:ids)
    UNION ALL
    SELECT * FROM (
        SELECT 'identity', i.kind, i.value, coalesce(cu.merged_into, cu.id)
        FROM identities i JOIN conversation.customers cu ON cu.id = i.customer_id
        ORDER BY cu.id
        FOR KEY SHARE OF cu
    ) AS owners
    UNION ALL
    SELECT * FROM (
        SELECT 'thread', m.external_id, NULL, coalesce(cu.merged_into, cu.id)
        FROM conversation.messages m JOIN conversation.conversations c ON c.id = m.conversation_id
        JOIN conversation.customers cu ON cu.id = c.customer_id
        WHERE m.channel = 'email' AND m.external_id = ANY(:refs)
        ORDER BY cu.id
        FOR KEY SHARE OF cu
    ) AS threads
    UNION ALL
    SELECT 'survey', s.id::text, s.kind || ' ' || s.conversation_id::text, s.customer_id
    FROM conversation.surveys s
    WHERE s.answered_at IS NULL AND s.expires_at > now()
      AND s.customer_id IN (SELECT customer_id FROM identities)
    """,
    ids=UUIDS,
    kinds=TEXTS,
    values=TEXTS,
    refs=TEXTS,
)


@dataclass(frozen=True, slots=True)
class PendingSurvey:
    id: uuid.UUID
    kind: str  # surveys.policy.SurveyKind
    conversation_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Known:
    stored: set[uuid.UUID]  # message ids already stored
    owners: dict[IdentityKey, uuid.UUID]  # identity -> its customer
    threads: dict[str, uuid.UUID]  # an email Message-ID in the thread of -> customer
    surveys: dict[uuid.UUID, PendingSurvey] = field(default_factory=dict)  # customer -> survey to answer


async def known(
    session: AsyncSession,
    message_ids: Sequence[uuid.UUID],
    keys: Sequence[IdentityKey],
    refs: Sequence[str] = (),
) -> Known:
    """What the batch needs to know, in one round trip: the message ids already stored, the owner of every
    identity the batch carries, whose thread holds each email Message-ID the batch answers, and the
    survey each of those customers may be answering.

    The owners are locked (``FOR KEY SHARE``, in id order, as a merge locks them) until the batch commits:
    a customer merge waits for the batch, whose messages then move with the rest; a batch reaching a
    customer being merged waits for the merge and follows its tombstone (``merged_into``) to the customer
    it became, so no message lands on a merged customer."""
    rows = await session.execute(
        _KNOWN,
        {
            "ids": list(message_ids),
            "kinds": [k for k, _ in keys],
            "values": [v for _, v in keys],
            "refs": list(refs),
        },
    )
    out = Known(set(), {}, {})
    for what, kind, value, customer_id in rows:
        if what == "message":
            out.stored.add(uuid.UUID(kind))
        elif what == "thread":
            out.threads[kind] = customer_id
        elif what == "survey":
            survey_kind, _, conversation_id = value.partition(" ")
            out.surveys[customer_id] = PendingSurvey(uuid.UUID(kind), survey_kind, uuid.UUID(conversation_id))
        else:
            out.owners[(kind, value)] = customer_id
    return out


_ADD_CUSTOMERS = statement(
    """
    WITH customers AS (
        INSERT INTO conversation.customers (id, display_name) SELECT * FROM unnest(:ids, :names)
    ), named AS (
        UPDATE conversation.customers c SET display_name = u.name
        FROM unnest(:fill_ids, :fill_names) AS u(id, name)
        WHERE c.id = u.id AND c.display_name IS NULL
    )
    INSERT INTO conversation.customer_identities (kind, value, customer_id)
    SELECT * FROM unnest(:kinds, :values, :owners)
    ON CONFLICT DO NOTHING
    RETURNING kind, value
    """,
    ids=UUIDS,
    names=TEXTS,
    fill_ids=UUIDS,
    fill_names=TEXTS,
    kinds=TEXTS,
    values=TEXTS,
    owners=UUIDS,
)


async def add_customers(
    session: AsyncSession,
    customers: Mapping[uuid.UUID, str | None],
    identities: Mapping[IdentityKey, uuid.UUID],
    names: Mapping[uuid.UUID, str],
) -> set[IdentityKey]:
    """In one statement: create ``customers`` (id -> display name), attach ``identities`` (identity ->
    customer) and give existing customers without a name one. Returns the identities inserted: one
    another customer already owns is left alone."""
    if not (customers or identities or names):
        return set()
    rows = await session.execute(
        _ADD_CUSTOMERS,
        {
            "ids": list(customers),
            "names": list(customers.values()),
            "fill_ids": list(names),
            "fill_names": list(names.values()),
            "kinds": [k for k, _ in identities],
            "values": [v for _, v in identities],
            "owners": list(identities.values()),
        },
    )
    return {(kind, value) for kind, value in rows}


@dataclass(frozen=True, slots=True)
class OpenConversation:
    id: uuid.UUID
    customer_id: uuid.UUID


_LOCK_UNRESOLVED = statement(
    """
    SELECT id, customer_id FROM conversation.conversations
    WHERE customer_id = ANY(:customers) AND status <> 'resolved'
    FOR UPDATE
    """,
    customers=UUIDS,
)


async def lock_unresolved(
    session: AsyncSession, customer_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, OpenConversation]:
    """The unresolved conversation of each customer that has one, locked until the transaction ends."""
    rows = await session.execute(_LOCK_UNRESOLVED, {"customers": list(customer_ids)})
    return {r.customer_id: OpenConversation(r.id, r.customer_id) for r in rows}


@dataclass(frozen=True, slots=True)
class NewConversation:
    id: uuid.UUID
    customer_id: uuid.UUID
    channel: str
    required_skills: Sequence[str]
    priority: int
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class ReopenedConversation:
    id: uuid.UUID
    customer_id: uuid.UUID
    required_skills: Sequence[str]
    priority: int
    reopened_at: datetime
    previous_agent_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Opening:
    """What ``open_conversations`` did: the new conversations inserted (by id), and the conversations
    reopened (by customer)."""

    opened: set[uuid.UUID]
    reopened: dict[uuid.UUID, ReopenedConversation]


# Reopening comes first, in the same statement as the insert (one round trip, whatever the batch): a
# customer without an unresolved conversation whose latest resolution is within the window of their first
# message here gets that conversation back, waiting for an agent again; the insert then skips them. Its
# reopened_at is never before that resolution (a message received just before it was consumed after it),
# and strictly after it, so the router can order a reopen against the resolutions around it.
#
# Concurrency (READ COMMITTED): a conversation another transaction is reopening is waited for, then
# skipped (it is no longer resolved), and the insert's ON CONFLICT finds it. A conversation another
# transaction opened or reopened for the customer meanwhile makes the UPDATE's entry in the
# one-unresolved-per-customer index a unique violation, which the caller retries. The agent a reopened
# conversation had is told in its stream.
_OPEN_CONVERSATIONS = statement(
    f"""
    WITH latest AS (
        SELECT l.id, l.assigned_agent_id, greatest(u.at, l.resolved_at + interval '1 microsecond') AS at
        FROM unnest(:reopen_customers, :reopen_ats) AS u(customer_id, at)
        CROSS JOIN LATERAL (
            SELECT c.id, c.assigned_agent_id, c.resolved_at FROM conversation.conversations c
            WHERE c.customer_id = u.customer_id AND c.status = 'resolved' AND c.resolved_at IS NOT NULL
                AND c.merged_into IS NULL  -- closed by a customer merge: its thread lives on elsewhere
            ORDER BY c.resolved_at DESC
            LIMIT 1
        ) AS l
        WHERE l.resolved_at >= u.at - :window
          AND NOT EXISTS (
              SELECT 1 FROM conversation.conversations o
              WHERE o.customer_id = u.customer_id AND o.status <> 'resolved'
          )
    ), reopened AS (
        UPDATE conversation.conversations c
        SET status = 'reopened', resolved_at = NULL, assigned_agent_id = NULL, assigned_at = NULL,
            reopened_at = l.at, reopen_count = c.reopen_count + 1
        FROM latest l
        WHERE c.id = l.id AND c.status = 'resolved'
        RETURNING c.id, c.customer_id, c.required_skills, c.priority, c.reopened_at,
            l.assigned_agent_id AS previous_agent_id
    ), reopen_fed AS (
        {FEED_INSERT}
        SELECT previous_agent_id, 'reopened', id::text || ':' || {micros("reopened_at")}, id,
            jsonb_build_object('reopened_at', reopened_at)
        FROM reopened WHERE previous_agent_id IS NOT NULL
        ON CONFLICT DO NOTHING
    ), opened AS (
        INSERT INTO conversation.conversations (id, customer_id, status, first_channel, last_channel,
            required_skills, priority, opened_at, last_message_at)
        SELECT u.id, u.customer_id, 'new', u.channel, u.channel, string_to_array(u.skills, ','),
            u.priority, u.opened_at, u.opened_at
        FROM unnest(:ids, :customers, :channels, :skills, :priorities, :opened) AS
            u(id, customer_id, channel, skills, priority, opened_at)
        WHERE NOT EXISTS (SELECT 1 FROM reopened r WHERE r.customer_id = u.customer_id)
        ON CONFLICT (customer_id) WHERE status <> 'resolved' DO NOTHING
        RETURNING id
    )
    SELECT id, NULL::uuid AS customer_id, NULL::text[] AS required_skills, NULL::smallint AS priority,
        NULL::timestamptz AS reopened_at, NULL::uuid AS previous_agent_id, false AS reopened
    FROM opened
    UNION ALL
    SELECT id, customer_id, required_skills, priority, reopened_at, previous_agent_id, true FROM reopened
    """,  # noqa: S608 - the fragments are ours, not input
    reopen_customers=UUIDS,
    reopen_ats=TIMES,
    window=sa.Interval(),
    ids=UUIDS,
    customers=UUIDS,
    channels=TEXTS,
    skills=TEXTS,
    priorities=INTS,
    opened=TIMES,
)
_ONE_UNRESOLVED = "conversations_one_unresolved_per_customer"


async def open_conversations(
    session: AsyncSession,
    conversations: Sequence[NewConversation],
    reopenable: Mapping[uuid.UUID, datetime],
    window: timedelta,
) -> Opening:
    """Reopen, then open, in one statement. ``reopenable`` maps customers to the time of their first
    message here: one with no unresolved conversation whose latest was resolved within ``window`` of that
    time has it reopened. The others' ``conversations`` are inserted, but for customers who have an
    unresolved conversation (the one-unresolved-per-customer index; a conflicting transaction is waited
    for, so a conversation being resolved right now counts once that commits).

    Raises ``Unavailable`` when another transaction opened or reopened a conversation for a customer this
    one was reopening for: a retry finds that conversation.
    """
    if not conversations:
        return Opening(set(), {})
    try:
        rows = await session.execute(
            _OPEN_CONVERSATIONS,
            {
                "reopen_customers": list(reopenable),
                "reopen_ats": list(reopenable.values()),
                "window": window,
                "ids": [c.id for c in conversations],
                "customers": [c.customer_id for c in conversations],
                "channels": [c.channel for c in conversations],
                # Skills match ^[a-z0-9][a-z0-9_.-]*$: no commas, so a comma-joined text round-trips
                # exactly (arrays of arrays cannot be ragged).
                "skills": [",".join(c.required_skills) for c in conversations],
                "priorities": [c.priority for c in conversations],
                "opened": [c.opened_at for c in conversations],
            },
        )
    except sa_exc.IntegrityError as exc:
        if _violated_constraint(exc) == _ONE_UNRESOLVED:
            raise Unavailable("a conversation was opened concurrently for a returning customer") from exc
        raise
    out = Opening(set(), {})
    for r in rows:
        if not r.reopened:
            out.opened.add(r.id)
        else:
            out.reopened[r.customer_id] = ReopenedConversation(
                r.id, r.customer_id, list(r.required_skills), r.priority, r.reopened_at, r.previous_agent_id
            )
    return out


def _violated_constraint(exc: sa_exc.IntegrityError) -> str | None:
    # The driver's own exception (asyncpg's) carries the constraint; SQLAlchemy's adapter chains it.
    driver_error = exc.orig.__cause__ if exc.orig is not None else None
    name = getattr(driver_error, "constraint_name", None)
    return name if isinstance(name, str) else None


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: uuid.UUID
    conversation_id: uuid.UUID
    channel: str
    external_id: str
    direction: str
    body: str
    sent_at: datetime
    received_at: datetime
    attachments: str | None = None  # a JSON array of events.Attachment
    content_kind: str | None = None
    subject: str | None = None
    original_body: str | None = None
    thread_refs: str | None = None  # a JSON array of Message-IDs (arrays of arrays do not unnest)


# A new message is an item of its conversation's assigned agent's stream.
_INSERT_MESSAGES = statement(
    f"""
    WITH inserted AS (
        INSERT INTO conversation.messages (id, conversation_id, channel, external_id, direction, body,
            sent_at, received_at, attachments, content_kind, subject, original_body, thread_refs)
        SELECT id, conversation_id, channel, external_id, direction, body, sent_at, received_at,
            attachments::jsonb, content_kind, subject, original_body,
            ARRAY(SELECT jsonb_array_elements_text(thread_refs::jsonb))
        FROM unnest(:ids, :conversations, :channels, :external_ids, :directions, :bodies, :sent,
            :received, :attachments, :content_kinds, :subjects, :originals, :thread_refs)
            AS u(id, conversation_id, channel, external_id, direction, body, sent_at, received_at,
                attachments, content_kind, subject, original_body, thread_refs)
        ON CONFLICT DO NOTHING
        RETURNING id, conversation_id, channel, received_at, direction, body, sent_at, author_agent_id,
            delivery_status
    ), fed AS (
        {FEED_INSERT}
        SELECT c.assigned_agent_id, 'message', i.id::text, i.conversation_id, {message_data("i")}
        FROM inserted i JOIN conversation.conversations c ON c.id = i.conversation_id
        WHERE c.assigned_agent_id IS NOT NULL
        ON CONFLICT DO NOTHING
    ), latest AS (
        SELECT DISTINCT ON (conversation_id) conversation_id, channel, received_at
        FROM inserted ORDER BY conversation_id, received_at DESC
    ), touched AS (
        -- The customer wrote last: the agent's turn, and a snoozed conversation wakes up.
        UPDATE conversation.conversations c
        SET last_channel = l.channel, last_message_at = greatest(c.last_message_at, l.received_at),
            status = CASE WHEN c.status IN ('assigned', 'waiting_on_customer', 'snoozed')
                THEN 'waiting_on_agent' ELSE c.status END,
            snoozed_until = NULL
        FROM latest l WHERE c.id = l.conversation_id
    )
    SELECT id FROM inserted
    """,  # noqa: S608 - the fragments are ours, not input
    ids=UUIDS,
    conversations=UUIDS,
    channels=TEXTS,
    external_ids=TEXTS,
    directions=TEXTS,
    bodies=TEXTS,
    sent=TIMES,
    received=TIMES,
    attachments=TEXTS,
    content_kinds=TEXTS,
    subjects=TEXTS,
    originals=TEXTS,
    thread_refs=TEXTS,
)


async def insert_messages(session: AsyncSession, messages: Sequence[NewMessage]) -> set[uuid.UUID]:
    """Store messages and record each conversation's latest activity (channel and time of its newest
    message), in one statement; returns the ids inserted (a message id or a channel's message id already
    stored is skipped)."""
    if not messages:
        return set()
    rows = await session.scalars(
        _INSERT_MESSAGES,
        {
            "ids": [m.id for m in messages],
            "conversations": [m.conversation_id for m in messages],
            "channels": [m.channel for m in messages],
            "external_ids": [m.external_id for m in messages],
            "directions": [m.direction for m in messages],
            "bodies": [m.body for m in messages],
            "sent": [m.sent_at for m in messages],
            "received": [m.received_at for m in messages],
            "attachments": [m.attachments for m in messages],
            "content_kinds": [m.content_kind for m in messages],
            "subjects": [m.subject for m in messages],
            "originals": [m.original_body for m in messages],
            "thread_refs": [m.thread_refs for m in messages],
        },
    )
    return set(rows.all())


# --- routing outcomes ---------------------------------------------------------------------------------

# An assignment of the conversation before it was reopened (a replay: it was queued before the reopen)
# does not override the one routing it now; reopened_at is the task's queue time, so this compares values
# the router copied, not two clocks. The agent is told in their stream (a redelivery finds its item).
_MARK_ASSIGNED = statement(
    f"""
    WITH assigned AS (
        UPDATE conversation.conversations c
        SET status = 'assigned', assigned_agent_id = u.agent_id, assigned_at = u.at, snoozed_until = NULL,
            queue = coalesce(u.queue, c.queue)
        FROM unnest(:ids, :agents, :ats, :queued, :queues) AS u(id, agent_id, at, queued_at, queue)
        WHERE c.id = u.id AND c.status <> 'resolved'
            AND (c.reopened_at IS NULL OR u.queued_at >= c.reopened_at)
        RETURNING c.id, u.agent_id, u.at, u.queued_at
    )
    {FEED_INSERT}
    SELECT agent_id, 'assigned', id::text || ':' || {micros("at")}, id,
        jsonb_build_object('assigned_at', at, 'queued_at', queued_at)
    FROM assigned
    ON CONFLICT DO NOTHING
    """,  # noqa: S608 - the fragments are ours, not input
    ids=UUIDS,
    agents=UUIDS,
    ats=TIMES,
    queued=TIMES,
    queues=TEXTS,
)


@dataclass(frozen=True, slots=True)
class Assignment:
    agent_id: uuid.UUID
    assigned_at: datetime
    queued_at: datetime
    queue: str | None = None


async def mark_assigned(session: AsyncSession, assignments: Mapping[uuid.UUID, Assignment]) -> None:
    """Record assignments by conversation id. Resolved ones stay resolved; a reopened one takes only an
    assignment queued since it reopened."""
    if assignments:
        await session.execute(
            _MARK_ASSIGNED,
            {
                "ids": list(assignments),
                "agents": [a.agent_id for a in assignments.values()],
                "ats": [a.assigned_at for a in assignments.values()],
                "queued": [a.queued_at for a in assignments.values()],
                "queues": [a.queue for a in assignments.values()],
            },
        )


# A requeue takes the conversation from the agent it names; a stale requeue (the conversation has since
# been assigned to someone else, or resolved) changes nothing. The agent is told in their stream.
_UNASSIGN = statement(
    f"""
    WITH taken AS (
        UPDATE conversation.conversations c
        SET status = 'queued', assigned_agent_id = NULL, assigned_at = NULL, snoozed_until = NULL
        FROM unnest(:ids, :agents, :reasons, :ats) AS u(id, agent_id, reason, at)
        WHERE c.id = u.id AND c.status IN ('assigned', 'waiting_on_customer', 'waiting_on_agent', 'snoozed')
            AND c.assigned_agent_id = u.agent_id
        RETURNING c.id, u.agent_id, u.reason, u.at
    )
    {FEED_INSERT}
    SELECT agent_id, 'requeued', id::text || ':' || {micros("at")}, id,
        jsonb_build_object('reason', reason, 'requeued_at', at)
    FROM taken
    ON CONFLICT DO NOTHING
    """,  # noqa: S608 - the fragments are ours, not input
    ids=UUIDS,
    agents=UUIDS,
    reasons=TEXTS,
    ats=TIMES,
)


@dataclass(frozen=True, slots=True)
class Requeue:
    agent_id: uuid.UUID  # the agent it is taken from
    reason: str
    at: datetime


async def unassign(session: AsyncSession, taken: Mapping[uuid.UUID, Requeue]) -> None:
    """Take conversations (id → the requeue naming their agent) from their agents: they wait again."""
    if taken:
        await session.execute(
            _UNASSIGN,
            {
                "ids": list(taken),
                "agents": [r.agent_id for r in taken.values()],
                "reasons": [r.reason for r in taken.values()],
                "ats": [r.at for r in taken.values()],
            },
        )


# --- the agent API --------------------------------------------------------------------------------------


def readable(principal: Principal) -> sa.Select[Conversation]:
    """Conversations ``principal`` may see: supervisors and the admin credential all of them; an agent
    those assigned to them and those waiting in the queues of their teams."""
    stmt = sa.select(Conversation)
    if not principal.sees_all:
        mine = Conversation.assigned_agent_id == principal.agent_id
        if principal.teams:
            team_queue = sa.and_(
                Conversation.status.in_([s.value for s in WAITING]),
                Conversation.team == sa.any_(sa.bindparam("teams", list(principal.teams), type_=TEXTS)),
            )
            stmt = stmt.where(sa.or_(mine, team_queue))
        else:
            stmt = stmt.where(mine)
    return stmt


async def get_readable(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID, *, for_update: bool = False
) -> Conversation | None:
    stmt = readable(principal).where(Conversation.id == conversation_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


class View(StrEnum):
    """Which conversations a list shows, within what the caller may see."""

    ALL = "all"  # everything readable
    MINE = "mine"  # assigned to the caller
    QUEUE = "queue"  # waiting for an agent


@dataclass(frozen=True, slots=True)
class ListFilter:
    view: View = View.ALL
    statuses: Sequence[ConversationStatus] = ()
    channel: str | None = None  # the conversation has a message on it
    tag: str | None = None
    priority: int | None = None  # at least this priority
    follow_up: bool | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends, in the list's order (latest activity first, then id)."""

    last_message_at: datetime
    id: uuid.UUID


async def list_readable(
    session: AsyncSession,
    principal: Principal,
    filters: ListFilter,
    *,
    limit: int,
    after: Cursor | None = None,
    before: datetime | None = None,
) -> Sequence[Conversation]:
    """A page of what ``principal`` may see under ``filters``, latest activity first; ``after`` continues
    past a cursor (keyset pagination: stable while conversations come and go)."""
    stmt = readable(principal).order_by(Conversation.last_message_at.desc(), Conversation.id).limit(limit)
    if filters.view is View.MINE:
        stmt = stmt.where(Conversation.assigned_agent_id == principal.agent_id)
    elif filters.view is View.QUEUE:
        stmt = stmt.where(Conversation.status.in_([s.value for s in WAITING]))
    if filters.statuses:
        stmt = stmt.where(Conversation.status.in_([s.value for s in filters.statuses]))
    if filters.channel is not None:
        stmt = stmt.where(
            sa.exists().where(Message.conversation_id == Conversation.id, Message.channel == filters.channel)
        )
    if filters.tag is not None:
        stmt = stmt.where(Conversation.tags.contains([filters.tag]))
    if filters.priority is not None:
        stmt = stmt.where(Conversation.priority >= filters.priority)
    if filters.follow_up is not None:
        stmt = stmt.where(Conversation.follow_up.is_(filters.follow_up))
    if after is not None:
        stmt = stmt.where(
            sa.or_(
                Conversation.last_message_at < after.last_message_at,
                sa.and_(Conversation.last_message_at == after.last_message_at, Conversation.id > after.id),
            )
        )
    if before is not None:
        stmt = stmt.where(Conversation.last_message_at < before)
    return (await session.execute(stmt)).scalars().all()


async def get_customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    return await session.get(Customer, customer_id)


async def identities_of(session: AsyncSession, customer_id: uuid.UUID) -> Sequence[CustomerIdentity]:
    stmt = (
        sa.select(CustomerIdentity)
        .where(CustomerIdentity.customer_id == customer_id)
        .order_by(CustomerIdentity.kind, CustomerIdentity.value)
    )
    return (await session.execute(stmt)).scalars().all()


async def messages_of(session: AsyncSession, conversation_id: uuid.UUID, limit: int) -> Sequence[Message]:
    """The latest ``limit`` messages, oldest first."""
    latest = (
        sa.select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.sent_at.desc(), Message.created_at.desc())
        .limit(limit)
    )
    return list(reversed((await session.execute(latest)).scalars().all()))


async def latest_inbound(session: AsyncSession, conversation_id: uuid.UUID, channel: str) -> Message | None:
    """The customer's latest message in the conversation on ``channel`` (what an email reply answers)."""
    stmt = (
        sa.select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.channel == channel,
            Message.direction == MessageDirection.INBOUND.value,
        )
        .order_by(Message.sent_at.desc(), Message.created_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


# --- agents' replies and notes --------------------------------------------------------------------------

# The reply, unless the conversation has one with this idempotency key already (the unique partial index:
# a concurrent request with the same key waits for the other's transaction and then inserts nothing), and
# the conversation's first reply time if it has none.
_ADD_REPLY = statement(
    """
    WITH inserted AS (
        INSERT INTO conversation.messages (id, conversation_id, channel, direction, body, sent_at,
            received_at, author_agent_id, delivery_status, idempotency_key)
        VALUES (:id, :conversation_id, :channel, :direction, :body, :at, :at, :agent_id, :status, :key)
        ON CONFLICT (conversation_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id
    ), replied AS (
        -- The agent answered last: the customer's turn (a snoozed conversation stays snoozed).
        UPDATE conversation.conversations
        SET first_replied_at = coalesce(first_replied_at, :at),
            status = CASE WHEN status IN ('assigned', 'waiting_on_agent') THEN 'waiting_on_customer'
                ELSE status END
        WHERE id = :conversation_id AND EXISTS (SELECT FROM inserted)
    )
    SELECT id FROM inserted
    """,
    id=sa.Uuid(),
    conversation_id=sa.Uuid(),
    channel=sa.Text(),
    direction=sa.Text(),
    body=sa.Text(),
    at=sa.DateTime(timezone=True),
    agent_id=sa.Uuid(),
    status=sa.Text(),
    key=sa.Text(),
)


@dataclass(frozen=True, slots=True)
class NewReply:
    id: uuid.UUID
    conversation_id: uuid.UUID
    channel: str
    body: str
    agent_id: uuid.UUID
    idempotency_key: str
    at: datetime


async def add_reply(session: AsyncSession, reply: NewReply) -> Message:
    """Store an agent's reply (queued for delivery) and record the conversation's first reply; a reply
    with the same idempotency key stored before is returned instead. Tell them apart by id."""
    params = {
        "id": reply.id,
        "conversation_id": reply.conversation_id,
        "channel": reply.channel,
        "direction": MessageDirection.OUTBOUND.value,
        "body": reply.body,
        "at": reply.at,
        "agent_id": reply.agent_id,
        "status": DeliveryState.QUEUED.value,
        "key": reply.idempotency_key,
    }
    await session.execute(_ADD_REPLY, params)
    stmt = sa.select(Message).where(
        Message.conversation_id == reply.conversation_id, Message.idempotency_key == reply.idempotency_key
    )
    # populate_existing: the row may have been written by this session's raw statement just now.
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()


async def add_note(
    session: AsyncSession, conversation_id: uuid.UUID, agent_id: uuid.UUID, body: str, at: datetime
) -> Message:
    note = Message(
        id=uuid.uuid4(),
        conversation_id=conversation_id,
        direction=MessageDirection.NOTE.value,
        body=body,
        sent_at=at,
        received_at=at,
        author_agent_id=agent_id,
    )
    session.add(note)
    await session.flush()
    return note


# --- delivery reports -----------------------------------------------------------------------------------


_REPORT_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "channels": TEXTS,
    "message_ids": UUIDS,
    "external_ids": TEXTS,
    "statuses": TEXTS,
    "ats": TIMES,
    "codes": TEXTS,
    "reasons": TEXTS,
}


@dataclass(frozen=True, slots=True)
class DeliveryReportRow:
    channel: str
    message_id: uuid.UUID | None
    external_id: str | None
    status: str
    at: datetime
    error_code: str | None
    error_reason: str | None


# Tie provider ids to replies (the dispatcher's reports carry both) and keep every report that names a
# provider id: a callback can come before the report that ties its id, and is folded in once it does.
_KEEP_DELIVERY = statement(
    """
    WITH reported AS (
        SELECT * FROM unnest(:channels, :message_ids, :external_ids, :statuses, :ats, :codes, :reasons)
            AS r(channel, message_id, external_id, status, at, error_code, error_reason)
    ), tied AS (
        UPDATE conversation.messages m SET external_id = r.external_id
        FROM reported r
        WHERE m.id = r.message_id AND r.external_id IS NOT NULL AND m.external_id IS NULL
            AND m.direction = 'outbound'
    )
    INSERT INTO conversation.delivery_reports (channel, external_id, status, at, error_code, error_reason)
    SELECT DISTINCT ON (channel, external_id, status)
        channel, external_id, status, at, error_code, error_reason
    FROM reported WHERE external_id IS NOT NULL
    ORDER BY channel, external_id, status, at
    ON CONFLICT DO NOTHING
    """,
    **_REPORT_TYPES,
)

# Set each reply the batch touched to the furthest state reported for it. ``rank`` is DELIVERY_PROGRESS, so
# a ``read`` that came before its ``delivered``, or a report replayed, never moves a reply backwards. A
# report naming only our id (a send that failed for good) applies directly. A reply that moved on is an
# item of its conversation's assigned agent's stream.
_FOLD_DELIVERY = statement(
    f"""
    WITH reported AS (
        SELECT * FROM unnest(:channels, :message_ids, :external_ids, :statuses, :ats, :codes, :reasons)
            AS r(channel, message_id, external_id, status, at, error_code, error_reason)
    ), touched AS (
        SELECT m.id, m.channel, m.external_id FROM conversation.messages m
        WHERE m.direction = 'outbound' AND (
            m.id = ANY(:message_ids)
            OR (m.channel, m.external_id) IN (SELECT channel, external_id FROM reported))
    ), candidates AS (
        SELECT t.id, d.status, d.at, d.error_code, d.error_reason
        FROM touched t JOIN conversation.delivery_reports d
            ON d.channel = t.channel AND d.external_id = t.external_id
        UNION ALL
        SELECT t.id, r.status, r.at, r.error_code, r.error_reason
        FROM touched t JOIN reported r ON r.message_id = t.id AND r.external_id IS NULL
    ), furthest AS (
        SELECT DISTINCT ON (id) id, status, at, error_code, error_reason
        FROM candidates
        ORDER BY id, array_position(:rank, status) DESC, at DESC
    ), moved AS (
        UPDATE conversation.messages m
        SET delivery_status = f.status,
            delivery_error = CASE WHEN f.status = 'failed'
                THEN coalesce(f.error_reason, f.error_code, 'failed') END,
            delivery_updated_at = f.at
        FROM furthest f
        WHERE m.id = f.id AND array_position(:rank, f.status) > array_position(:rank, m.delivery_status)
        RETURNING m.id, m.conversation_id, m.delivery_status, m.delivery_error, m.delivery_updated_at
    )
    {FEED_INSERT}
    SELECT c.assigned_agent_id, 'delivery', mv.id::text || ':' || mv.delivery_status, mv.conversation_id,
        jsonb_build_object('message_id', mv.id, 'status', mv.delivery_status, 'error', mv.delivery_error,
            'reported_at', mv.delivery_updated_at)
    FROM moved mv JOIN conversation.conversations c ON c.id = mv.conversation_id
    WHERE c.assigned_agent_id IS NOT NULL
    ON CONFLICT DO NOTHING
    """,  # noqa: S608 - the fragments are ours, not input
    **_REPORT_TYPES,
    rank=TEXTS,
)


async def record_delivery(session: AsyncSession, reports: Sequence[DeliveryReportRow]) -> None:
    """Keep delivery reports and fold them into the replies they are about, in two statements."""
    if not reports:
        return
    params = {
        "channels": [r.channel for r in reports],
        "message_ids": [r.message_id for r in reports],
        "external_ids": [r.external_id for r in reports],
        "statuses": [r.status for r in reports],
        "ats": [r.at for r in reports],
        "codes": [r.error_code for r in reports],
        "reasons": [r.error_reason for r in reports],
    }
    await session.execute(_KEEP_DELIVERY, params)
    await session.execute(_FOLD_DELIVERY, {**params, "rank": [state.value for state in DELIVERY_PROGRESS]})


# --- lifecycle: queue, snooze, tags ---------------------------------------------------------------------

# The router left these conversations waiting in a queue: a new one is now queued, and every waiting one
# shows in the queue of the team serving it. A stale event (resolved since) changes nothing.
_MARK_QUEUED = statement(
    """
    UPDATE conversation.conversations c
    SET status = CASE WHEN c.status = 'new' THEN 'queued' ELSE c.status END,
        queue = coalesce(u.queue, c.queue), team = u.team
    FROM unnest(:ids, :queues, :teams) AS u(id, queue, team)
    WHERE c.id = u.id AND c.status <> 'resolved'
    """,
    ids=UUIDS,
    queues=TEXTS,
    teams=TEXTS,
)


@dataclass(frozen=True, slots=True)
class Queued:
    queue: str | None
    team: str | None


async def mark_queued(session: AsyncSession, queued: Mapping[uuid.UUID, Queued]) -> None:
    if queued:
        await session.execute(
            _MARK_QUEUED,
            {
                "ids": list(queued),
                "queues": [q.queue for q in queued.values()],
                "teams": [q.team for q in queued.values()],
            },
        )


# Due snoozes wake, one statement per tick whatever their number; SKIP LOCKED leaves a conversation an
# agent is changing right now to the next tick.
_WAKE_DUE = statement(
    """
    UPDATE conversation.conversations c
    SET status = 'waiting_on_agent', snoozed_until = NULL
    WHERE c.id IN (
        SELECT id FROM conversation.conversations
        WHERE status = 'snoozed' AND snoozed_until <= :now
        ORDER BY snoozed_until LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING c.id, c.assigned_agent_id
    """,
    now=sa.DateTime(timezone=True),
    limit=sa.Integer(),
)


async def wake_due(
    session: AsyncSession, now: datetime, limit: int
) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
    """Wake snoozed conversations whose time has come; returns (conversation, agent) of each."""
    rows = await session.execute(_WAKE_DUE, {"now": now, "limit": limit})
    return [(r.id, r.assigned_agent_id) for r in rows]


async def tags(session: AsyncSession) -> Sequence[Tag]:
    return (await session.execute(sa.select(Tag).order_by(Tag.name))).scalars().all()


async def unknown_tags(session: AsyncSession, names: Sequence[str]) -> list[str]:
    """Those of ``names`` not in the catalogue."""
    known = set((await session.execute(sa.select(Tag.name).where(Tag.name.in_(names)))).scalars())
    return [n for n in names if n not in known]


async def upsert_tag(session: AsyncSession, name: str, description: str) -> Tag:
    stmt = (
        insert(Tag)
        .values(name=name, description=description)
        .on_conflict_do_update(index_elements=[Tag.name], set_={"description": description})
        .returning(Tag)
    )
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()


async def delete_tag(session: AsyncSession, name: str) -> bool:
    """Remove a tag from the catalogue; conversations keep it (history does not change)."""
    result = await session.execute(sa.delete(Tag).where(Tag.name == name).returning(Tag.name))
    return result.scalar_one_or_none() is not None


# --- customers, history and the handoff card ------------------------------------------------------------


async def get_readable_customer(
    session: AsyncSession, principal: Principal, customer_id: uuid.UUID
) -> Customer | None:
    """A customer ``principal`` may see: one with a conversation they may see (everyone for those who see
    all conversations)."""
    stmt = sa.select(Customer).where(Customer.id == customer_id)
    if not principal.sees_all:
        stmt = stmt.where(readable(principal).where(Conversation.customer_id == Customer.id).exists())
    return (await session.execute(stmt)).scalar_one_or_none()


async def conversations_of(
    session: AsyncSession, customer_id: uuid.UUID, *, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> Sequence[Conversation]:
    """The customer's conversations, newest first, continuing after (opened_at, id)."""
    stmt = (
        sa.select(Conversation)
        .where(Conversation.customer_id == customer_id)
        .order_by(Conversation.opened_at.desc(), Conversation.id)
        .limit(limit)
    )
    if after is not None:
        at, last = after
        stmt = stmt.where(
            sa.or_(Conversation.opened_at < at, sa.and_(Conversation.opened_at == at, Conversation.id > last))
        )
    return (await session.execute(stmt)).scalars().all()


async def messages_page(
    session: AsyncSession,
    conversation_ids: Sequence[uuid.UUID],
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
    directions: Sequence[MessageDirection] = (),
) -> list[Message]:
    """The latest ``limit`` thread items of the conversations (before (sent_at, id) when given), oldest
    first."""
    stmt = (
        sa.select(Message)
        .where(Message.conversation_id.in_(conversation_ids))
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(limit)
    )
    if directions:
        stmt = stmt.where(Message.direction.in_([d.value for d in directions]))
    if before is not None:
        at, last = before
        stmt = stmt.where(sa.or_(Message.sent_at < at, sa.and_(Message.sent_at == at, Message.id < last)))
    return list(reversed((await session.execute(stmt)).scalars().all()))


async def agents_of(session: AsyncSession, customer_id: uuid.UUID) -> list[tuple[uuid.UUID, datetime]]:
    """Every agent who worked with the customer (assigned, or wrote a reply or note), with the last time,
    most recent first."""
    stmt = sa.text(
        """
        SELECT agent_id, max(at) AS last_at FROM (
            SELECT c.assigned_agent_id AS agent_id, coalesce(c.resolved_at, c.assigned_at) AS at
            FROM conversation.conversations c
            WHERE c.customer_id = :customer AND c.assigned_agent_id IS NOT NULL
            UNION ALL
            SELECT m.author_agent_id, m.sent_at
            FROM conversation.messages m JOIN conversation.conversations c ON c.id = m.conversation_id
            WHERE c.customer_id = :customer AND m.author_agent_id IS NOT NULL
        ) worked
        WHERE at IS NOT NULL
        GROUP BY agent_id ORDER BY last_at DESC, agent_id
        """
    )
    rows = await session.execute(stmt, {"customer": customer_id})
    return [(r.agent_id, r.last_at) for r in rows]


async def channels_of(session: AsyncSession, customer_id: uuid.UUID) -> list[str]:
    """The channels the customer has written on, in the order first used."""
    stmt = sa.text(
        """
        SELECT m.channel FROM conversation.messages m
        JOIN conversation.conversations c ON c.id = m.conversation_id
        WHERE c.customer_id = :customer AND m.direction = 'inbound'
        GROUP BY m.channel ORDER BY min(m.sent_at)
        """
    )
    return list((await session.execute(stmt, {"customer": customer_id})).scalars())
