"""All SQL of automation: the acknowledgement batch (constant-shape, set-based) and canned responses."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import TEXTS, TIMES, UUIDS, statement
from switchboard_conversation.automation.models import CannedResponse

# --- acknowledgements -----------------------------------------------------------------------------------

# The conversations still waiting, each with what an acknowledgement needs: the customer's name, their
# address on the channel they last wrote on (the first identity of its kind, as a reply's), and on email
# the latest message they sent (what it answers, so it threads).
_ACK_TARGETS = statement(
    """
    SELECT c.id, c.customer_id, c.last_channel, cu.display_name,
        (SELECT i.value FROM conversation.customer_identities i
         JOIN unnest(:channels, :kinds) AS k(channel, kind) ON k.kind = i.kind
         WHERE i.customer_id = c.customer_id AND k.channel = c.last_channel
         ORDER BY i.kind, i.value LIMIT 1) AS recipient,
        e.external_id AS email_id, e.subject AS email_subject, e.thread_refs AS email_refs
    FROM conversation.conversations c
    JOIN conversation.customers cu ON cu.id = c.customer_id
    LEFT JOIN LATERAL (
        SELECT m.external_id, m.subject, m.thread_refs FROM conversation.messages m
        WHERE m.conversation_id = c.id AND m.channel = 'email' AND m.direction = 'inbound'
          AND c.last_channel = 'email'
        ORDER BY m.sent_at DESC, m.created_at DESC LIMIT 1
    ) e ON true
    WHERE c.id = ANY(:ids) AND c.status IN ('new', 'queued', 'reopened')
    """,
    ids=UUIDS,
    channels=TEXTS,
    kinds=TEXTS,
)


@dataclass(frozen=True, slots=True)
class AckTarget:
    conversation_id: uuid.UUID
    customer_id: uuid.UUID
    channel: str
    display_name: str | None
    recipient: str | None
    email_id: str | None
    email_subject: str | None
    email_refs: list[str] | None


async def ack_targets(
    session: AsyncSession, conversation_ids: Sequence[uuid.UUID], recipient_kinds: Mapping[str, str]
) -> dict[uuid.UUID, AckTarget]:
    rows = await session.execute(
        _ACK_TARGETS,
        {
            "ids": list(conversation_ids),
            "channels": list(recipient_kinds),
            "kinds": list(recipient_kinds.values()),
        },
    )
    return {r.id: AckTarget(*r) for r in rows}


# Automated outbound messages, queued for delivery; one already stored (its id, or its idempotency key in
# the conversation) is skipped. No first_replied_at: an acknowledgement is no response.
_ADD_AUTOMATED = statement(
    """
    INSERT INTO conversation.messages (id, conversation_id, channel, direction, body, sent_at, received_at,
        delivery_status, idempotency_key, automated)
    SELECT id, conversation_id, channel, 'outbound', body, at, at, 'queued', key, true
    FROM unnest(:ids, :conversations, :channels, :bodies, :ats, :keys)
        AS u(id, conversation_id, channel, body, at, key)
    ON CONFLICT DO NOTHING
    RETURNING id
    """,
    ids=UUIDS,
    conversations=UUIDS,
    channels=TEXTS,
    bodies=TEXTS,
    ats=TIMES,
    keys=TEXTS,
)


@dataclass(frozen=True, slots=True)
class NewAutomated:
    id: uuid.UUID
    conversation_id: uuid.UUID
    channel: str
    body: str
    at: datetime
    idempotency_key: str


async def add_automated(session: AsyncSession, messages: Sequence[NewAutomated]) -> set[uuid.UUID]:
    """Store automated messages in one statement; returns the ids inserted (the others were already)."""
    if not messages:
        return set()
    rows = await session.scalars(
        _ADD_AUTOMATED,
        {
            "ids": [m.id for m in messages],
            "conversations": [m.conversation_id for m in messages],
            "channels": [m.channel for m in messages],
            "bodies": [m.body for m in messages],
            "ats": [m.at for m in messages],
            "keys": [m.idempotency_key for m in messages],
        },
    )
    return set(rows.all())


# --- canned responses -----------------------------------------------------------------------------------


async def list_canned(session: AsyncSession) -> Sequence[CannedResponse]:
    stmt = sa.select(CannedResponse).order_by(CannedResponse.shortcut)
    return (await session.execute(stmt)).scalars().all()


async def get_canned(session: AsyncSession, canned_id: uuid.UUID) -> CannedResponse | None:
    return await session.get(CannedResponse, canned_id)


async def insert_canned(session: AsyncSession, values: Mapping[str, Any]) -> CannedResponse | None:
    """A new canned response, or None when its shortcut is taken."""
    stmt = (
        insert(CannedResponse)
        .values(id=uuid.uuid4(), **values)
        .on_conflict_do_nothing(index_elements=[CannedResponse.shortcut])
        .returning(CannedResponse)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def update_canned(
    session: AsyncSession, canned_id: uuid.UUID, values: Mapping[str, Any]
) -> CannedResponse | None:
    """The changed canned response, None when there is none. A shortcut another one has raises the unique
    violation (IntegrityError)."""
    stmt = (
        sa.update(CannedResponse)
        .where(CannedResponse.id == canned_id)
        .values(**values, updated_at=sa.func.now())
        .returning(CannedResponse)
    )
    return (await session.execute(stmt, execution_options={"populate_existing": True})).scalar_one_or_none()


async def delete_canned(session: AsyncSession, canned_id: uuid.UUID) -> bool:
    stmt = sa.delete(CannedResponse).where(CannedResponse.id == canned_id).returning(CannedResponse.id)
    return (await session.execute(stmt)).scalar_one_or_none() is not None
