"""All SQL of the conversation service.

The consumer's statements are set-based and of constant shape: arrays in, ``unnest`` / ``= ANY`` inside,
so a batch of any size is a fixed number of statements, each prepared once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.auth import Principal
from switchboard_common.db.sql import INTS, TEXTS, TIMES, UUIDS, statement
from switchboard_conversation.conversations.linking import IdentityKey
from switchboard_conversation.models import (
    Conversation,
    ConversationStatus,
    Customer,
    CustomerIdentity,
    Message,
)

# --- the inbound-message batch ------------------------------------------------------------------------

_STORED_MESSAGES = statement("SELECT id FROM conversation.messages WHERE id = ANY(:ids)", ids=UUIDS)


async def stored_message_ids(session: AsyncSession, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    return set((await session.scalars(_STORED_MESSAGES, {"ids": list(ids)})).all())


_OWNERS = statement(
    """
    SELECT i.kind, i.value, i.customer_id
    FROM conversation.customer_identities i
    JOIN unnest(:kinds, :values) AS k(kind, value) ON i.kind = k.kind AND i.value = k.value
    """,
    kinds=TEXTS,
    values=TEXTS,
)


async def identity_owners(session: AsyncSession, keys: Sequence[IdentityKey]) -> dict[IdentityKey, uuid.UUID]:
    rows = await session.execute(_OWNERS, {"kinds": [k for k, _ in keys], "values": [v for _, v in keys]})
    return {(kind, value): customer_id for kind, value, customer_id in rows}


_INSERT_CUSTOMERS = statement(
    "INSERT INTO conversation.customers (id, display_name) SELECT * FROM unnest(:ids, :names)",
    ids=UUIDS,
    names=TEXTS,
)


async def insert_customers(session: AsyncSession, customers: Mapping[uuid.UUID, str | None]) -> None:
    if customers:
        await session.execute(_INSERT_CUSTOMERS, {"ids": list(customers), "names": list(customers.values())})


_INSERT_IDENTITIES = statement(
    """
    INSERT INTO conversation.customer_identities (kind, value, customer_id)
    SELECT * FROM unnest(:kinds, :values, :customers)
    ON CONFLICT DO NOTHING
    RETURNING kind, value
    """,
    kinds=TEXTS,
    values=TEXTS,
    customers=UUIDS,
)


async def insert_identities(
    session: AsyncSession, identities: Mapping[IdentityKey, uuid.UUID]
) -> set[IdentityKey]:
    """Attach identities; returns those inserted (one another customer already owns is left alone)."""
    if not identities:
        return set()
    rows = await session.execute(
        _INSERT_IDENTITIES,
        {
            "kinds": [k for k, _ in identities],
            "values": [v for _, v in identities],
            "customers": list(identities.values()),
        },
    )
    return {(kind, value) for kind, value in rows}


_FILL_NAMES = statement(
    """
    UPDATE conversation.customers c SET display_name = u.name
    FROM unnest(:ids, :names) AS u(id, name)
    WHERE c.id = u.id AND c.display_name IS NULL
    """,
    ids=UUIDS,
    names=TEXTS,
)


async def fill_display_names(session: AsyncSession, names: Mapping[uuid.UUID, str]) -> None:
    if names:
        await session.execute(_FILL_NAMES, {"ids": list(names), "names": list(names.values())})


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


_INSERT_CONVERSATIONS = statement(
    """
    INSERT INTO conversation.conversations (id, customer_id, status, first_channel, last_channel,
        required_skills, priority, opened_at, last_message_at)
    SELECT u.id, u.customer_id, 'open', u.channel, u.channel, string_to_array(u.skills, ','), u.priority,
        u.opened_at, u.opened_at
    FROM unnest(:ids, :customers, :channels, :skills, :priorities, :opened) AS
        u(id, customer_id, channel, skills, priority, opened_at)
    ON CONFLICT (customer_id) WHERE status <> 'resolved' DO NOTHING
    RETURNING id
    """,
    ids=UUIDS,
    customers=UUIDS,
    channels=TEXTS,
    skills=TEXTS,
    priorities=INTS,
    opened=TIMES,
)


async def insert_conversations(
    session: AsyncSession, conversations: Sequence[NewConversation]
) -> set[uuid.UUID]:
    """Open conversations; returns the ids inserted. One whose customer meanwhile got an unresolved
    conversation from another transaction is not inserted (the one-unresolved-per-customer index)."""
    if not conversations:
        return set()
    rows = await session.scalars(
        _INSERT_CONVERSATIONS,
        {
            "ids": [c.id for c in conversations],
            "customers": [c.customer_id for c in conversations],
            "channels": [c.channel for c in conversations],
            # Skills match ^[a-z0-9][a-z0-9_.-]*$: no commas, so a comma-joined text round-trips exactly
            # (arrays of arrays cannot be ragged).
            "skills": [",".join(c.required_skills) for c in conversations],
            "priorities": [c.priority for c in conversations],
            "opened": [c.opened_at for c in conversations],
        },
    )
    return set(rows.all())


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


_INSERT_MESSAGES = statement(
    """
    INSERT INTO conversation.messages (id, conversation_id, channel, external_id, direction, body,
        sent_at, received_at)
    SELECT * FROM unnest(:ids, :conversations, :channels, :external_ids, :directions, :bodies, :sent,
        :received)
    ON CONFLICT DO NOTHING
    RETURNING id
    """,
    ids=UUIDS,
    conversations=UUIDS,
    channels=TEXTS,
    external_ids=TEXTS,
    directions=TEXTS,
    bodies=TEXTS,
    sent=TIMES,
    received=TIMES,
)


async def insert_messages(session: AsyncSession, messages: Sequence[NewMessage]) -> set[uuid.UUID]:
    """Store messages; returns the ids inserted (a message id or a channel's message id already stored is
    skipped)."""
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
        },
    )
    return set(rows.all())


_TOUCH = statement(
    """
    UPDATE conversation.conversations c
    SET last_channel = u.channel, last_message_at = greatest(c.last_message_at, u.at)
    FROM unnest(:ids, :channels, :ats) AS u(id, channel, at)
    WHERE c.id = u.id
    """,
    ids=UUIDS,
    channels=TEXTS,
    ats=TIMES,
)


async def touch_conversations(
    session: AsyncSession, latest: Mapping[uuid.UUID, tuple[str, datetime]]
) -> None:
    """Record each conversation's latest message: (channel, received_at)."""
    if latest:
        await session.execute(
            _TOUCH,
            {
                "ids": list(latest),
                "channels": [channel for channel, _ in latest.values()],
                "ats": [at for _, at in latest.values()],
            },
        )


# --- routing outcomes ---------------------------------------------------------------------------------

_MARK_ASSIGNED = statement(
    """
    UPDATE conversation.conversations c
    SET status = 'assigned', assigned_agent_id = u.agent_id, assigned_at = u.at
    FROM unnest(:ids, :agents, :ats) AS u(id, agent_id, at)
    WHERE c.id = u.id AND c.status <> 'resolved'
    """,
    ids=UUIDS,
    agents=UUIDS,
    ats=TIMES,
)


async def mark_assigned(
    session: AsyncSession, assignments: Mapping[uuid.UUID, tuple[uuid.UUID, datetime]]
) -> None:
    """Record assignments: conversation id -> (agent id, assigned at). Resolved ones stay resolved."""
    if assignments:
        await session.execute(
            _MARK_ASSIGNED,
            {
                "ids": list(assignments),
                "agents": [agent for agent, _ in assignments.values()],
                "ats": [at for _, at in assignments.values()],
            },
        )


# --- the agent API --------------------------------------------------------------------------------------


def readable(principal: Principal) -> sa.Select[Conversation]:
    """Conversations ``principal`` may see: an agent their own assigned ones, an admin all of them."""
    stmt = sa.select(Conversation)
    if not principal.is_admin:
        stmt = stmt.where(Conversation.assigned_agent_id == principal.agent_id)
    return stmt


async def get_readable(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID, *, for_update: bool = False
) -> Conversation | None:
    stmt = readable(principal).where(Conversation.id == conversation_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_readable(
    session: AsyncSession,
    principal: Principal,
    *,
    status: ConversationStatus | None,
    limit: int,
    before: datetime | None,
) -> Sequence[Conversation]:
    stmt = readable(principal).order_by(Conversation.last_message_at.desc(), Conversation.id).limit(limit)
    if status is not None:
        stmt = stmt.where(Conversation.status == status.value)
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
