"""The dispatcher's SQL: set-based and of constant shape."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import INTS, TEXTS, TIMES, UUIDS, statement

_ENQUEUE = statement(
    """
    INSERT INTO ingest.outbound_deliveries (message_id, conversation_id, channel, recipient, text, envelope,
        next_attempt_at)
    SELECT * FROM unnest(:ids, :conversations, :channels, :recipients, :texts, :envelopes, :ats)
    ON CONFLICT (message_id) DO NOTHING
    """,
    ids=UUIDS,
    conversations=UUIDS,
    channels=TEXTS,
    recipients=TEXTS,
    texts=TEXTS,
    envelopes=TEXTS,
    ats=TIMES,
)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    channel: str
    recipient: str | None
    text: str
    envelope: str
    at: datetime


async def enqueue(session: AsyncSession, deliveries: Sequence[NewDelivery]) -> None:
    """Schedule replies for sending now; a reply scheduled before (a redelivered event) is left as it is."""
    if not deliveries:
        return
    await session.execute(
        _ENQUEUE,
        {
            "ids": [d.message_id for d in deliveries],
            "conversations": [d.conversation_id for d in deliveries],
            "channels": [d.channel for d in deliveries],
            "recipients": [d.recipient for d in deliveries],
            "texts": [d.text for d in deliveries],
            "envelopes": [d.envelope for d in deliveries],
            "ats": [d.at for d in deliveries],
        },
    )


# Due replies, oldest first, skipping those another dispatcher holds, and any reply of a conversation with
# an earlier reply still pending (sending, or waiting for a retry): one conversation's replies reach the
# customer in the order the agent wrote them. Claiming pushes the reply a lease ahead: if this dispatcher
# dies mid-call, the reply is due again when the lease ends (at-least-once).
_CLAIM = statement(
    """
    UPDATE ingest.outbound_deliveries d
    SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease_s),
        updated_at = now()
    FROM (
        SELECT o.message_id FROM ingest.outbound_deliveries o
        WHERE o.state = 'pending' AND o.next_attempt_at <= now() AND NOT (o.channel = ANY(:busy))
            AND NOT EXISTS (
                SELECT FROM ingest.outbound_deliveries e
                WHERE e.conversation_id = o.conversation_id AND e.state = 'pending' AND e.seq < o.seq)
        ORDER BY o.next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) due
    WHERE d.message_id = due.message_id
    RETURNING d.message_id, d.conversation_id, d.channel, d.recipient, d.text, d.envelope, d.attempts
    """,
    lease_s=sa.Float(),
    busy=TEXTS,
    limit=sa.Integer(),
)


@dataclass(frozen=True, slots=True)
class Claimed:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    channel: str
    recipient: str | None
    text: str
    envelope: str
    attempts: int  # including this one


async def claim(
    session: AsyncSession, limit: int, busy_channels: Sequence[str], lease_s: float
) -> list[Claimed]:
    rows = await session.execute(_CLAIM, {"lease_s": lease_s, "busy": list(busy_channels), "limit": limit})
    return [Claimed(*row) for row in rows.all()]


_NEXT_DUE = sa.text("SELECT min(next_attempt_at) FROM ingest.outbound_deliveries WHERE state = 'pending'")


async def next_due(session: AsyncSession) -> datetime | None:
    due: datetime | None = await session.scalar(_NEXT_DUE)
    return due


_RECORD = statement(
    """
    UPDATE ingest.outbound_deliveries d
    SET state = u.state, external_id = coalesce(u.external_id, d.external_id),
        next_attempt_at = coalesce(now() + make_interval(secs => u.delay_s), d.next_attempt_at),
        last_error = u.error, updated_at = now()
    FROM unnest(:ids, :states, :external_ids, :delays, :errors, :attempts)
        AS u(message_id, state, external_id, delay_s, error, attempts)
    WHERE d.message_id = u.message_id AND d.state = 'pending' AND d.attempts = u.attempts
    RETURNING d.message_id
    """,
    ids=UUIDS,
    states=TEXTS,
    external_ids=TEXTS,
    delays=sa.dialects.postgresql.ARRAY(sa.Float),
    errors=TEXTS,
    attempts=INTS,
)


@dataclass(frozen=True, slots=True)
class Attempted:
    message_id: uuid.UUID
    # The attempt this outcome is of: a stale one (its lease ran out and it was claimed again) is ignored.
    attempts: int
    state: str  # DispatchState
    external_id: str | None
    delay_s: float | None  # pending: when to try again
    error: str | None


async def record(session: AsyncSession, attempted: Sequence[Attempted]) -> set[uuid.UUID]:
    """Record outcomes; returns the replies recorded (not those whose outcome is stale)."""
    if not attempted:
        return set()
    rows = await session.scalars(
        _RECORD,
        {
            "ids": [a.message_id for a in attempted],
            "states": [a.state for a in attempted],
            "external_ids": [a.external_id for a in attempted],
            "delays": [a.delay_s for a in attempted],
            "errors": [a.error for a in attempted],
            "attempts": [a.attempts for a in attempted],
        },
    )
    return set(rows.all())
