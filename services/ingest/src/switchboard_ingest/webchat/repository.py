"""All web chat SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import INTS, TEXTS, statement

# LISTEN/NOTIFY channel of new replies; the payload is the identity, so a replica wakes only its streams.
NOTIFY_CHANNEL = "switchboard_webchat"
# The class half of the two-key advisory lock that serializes one identity's replies (two-key locks never
# collide with the one-key locks the outbox relays hold).
_REPLY_LOCK_CLASS = 0x77636874  # "wcht"

_lock_identity = statement(
    "SELECT pg_advisory_xact_lock(:lock_class, hashtext(:identity))",
    lock_class=sa.Integer(),
    identity=sa.Text(),
)
_insert_reply = statement(
    """
    INSERT INTO ingest.webchat_outbox (identity, message_id, text) VALUES (:identity, :message_id, :text)
    ON CONFLICT (message_id) DO NOTHING
    RETURNING seq
    """,
    identity=sa.Text(),
    message_id=sa.Uuid(),
    text=sa.Text(),
)
_existing_reply = statement(
    "SELECT seq FROM ingest.webchat_outbox WHERE message_id = :message_id", message_id=sa.Uuid()
)
_notify = statement("SELECT pg_notify(:channel, :identity)", channel=sa.Text(), identity=sa.Text())
_events_after = statement(
    """
    SELECT seq, message_id, text, created_at FROM ingest.webchat_outbox
    WHERE identity = :identity AND seq > :after ORDER BY seq LIMIT :limit
    """,
    identity=sa.Text(),
    after=sa.BigInteger(),
    limit=sa.Integer(),
)
_owns_event = statement(
    "SELECT 1 FROM ingest.webchat_outbox WHERE seq = :seq AND identity = :identity",
    seq=sa.BigInteger(),
    identity=sa.Text(),
)
_insert_session = statement(
    """
    INSERT INTO ingest.webchat_sessions (session_id, identity, display_name, expires_at)
    VALUES (:session_id, :identity, :display_name, :expires_at)
    ON CONFLICT (session_id) DO UPDATE SET expires_at = excluded.expires_at
    """,
    session_id=sa.Uuid(),
    identity=sa.Text(),
    display_name=sa.Text(),
    expires_at=sa.DateTime(timezone=True),
)
# One fixed window per key, opened by its first hit: a hit inside the window counts, the first hit after it
# opens the next one at 1. Keys are distinct within a call (ON CONFLICT cannot touch a row twice).
_count_hits = statement(
    """
    INSERT INTO ingest.webchat_rate_counters AS c (key, window_end, hits)
    SELECT k, now() + make_interval(secs => w), 1 FROM unnest(:keys, :windows) AS t(k, w)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN c.window_end > now() THEN c.hits + 1 ELSE 1 END,
        window_end = CASE WHEN c.window_end > now() THEN c.window_end ELSE excluded.window_end END
    RETURNING c.key, c.hits, ceil(extract(epoch FROM c.window_end - now()))::int AS retry_after_s
    """,
    keys=TEXTS,
    windows=INTS,
)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    seq: int
    message_id: uuid.UUID
    text: str
    created_at: datetime


async def save_session(
    session: AsyncSession,
    session_id: uuid.UUID,
    identity: str,
    display_name: str | None,
    expires_at: datetime,
) -> None:
    """Record a session as issued, or its new expiry when it is refreshed."""
    await session.execute(
        _insert_session,
        {
            "session_id": session_id,
            "identity": identity,
            "display_name": display_name,
            "expires_at": expires_at,
        },
    )


async def record_reply(
    session: AsyncSession, identity: str, message_id: uuid.UUID, text: str
) -> tuple[int, bool]:
    """Store a reply for ``identity``'s streams; returns its seq and whether it is new (a reply sent again
    keeps its row). New rows notify every replica's streams when the transaction commits."""
    # One identity's replies one transaction at a time: a later seq never commits before an earlier one,
    # which a stream resuming after its last seq relies on.
    await session.execute(_lock_identity, {"lock_class": _REPLY_LOCK_CLASS, "identity": identity})
    seq = await session.scalar(_insert_reply, {"identity": identity, "message_id": message_id, "text": text})
    if seq is None:
        existing = await session.scalar(_existing_reply, {"message_id": message_id})
        if existing is None:
            raise RuntimeError(f"reply {message_id} conflicted on insert but is not stored")
        return int(existing), False
    await session.execute(_notify, {"channel": NOTIFY_CHANNEL, "identity": identity})
    return int(seq), True


async def events_after(session: AsyncSession, identity: str, after: int, limit: int) -> list[StreamEvent]:
    rows = await session.execute(_events_after, {"identity": identity, "after": after, "limit": limit})
    return [StreamEvent(r.seq, r.message_id, r.text, r.created_at) for r in rows]


async def owns_event(session: AsyncSession, identity: str, seq: int) -> bool:
    return await session.scalar(_owns_event, {"seq": seq, "identity": identity}) is not None


@dataclass(frozen=True, slots=True)
class WindowCount:
    key: str
    hits: int  # this one included
    retry_after_s: int  # until the window ends


async def count_hits(session: AsyncSession, keys: list[str], windows_s: list[int]) -> list[WindowCount]:
    """Count one hit on each key, in its window of ``windows_s`` seconds: one statement however many keys,
    on PostgreSQL's clock, so every replica counts against the same windows."""
    rows = await session.execute(_count_hits, {"keys": keys, "windows": windows_s})
    return [WindowCount(r.key, r.hits, r.retry_after_s) for r in rows]
