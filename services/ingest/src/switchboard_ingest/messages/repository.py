"""All SQL of the ingest service.

Statements are set-based and of constant shape (arrays in, ``unnest`` inside), so a group commit of any
size is the same few statements, each prepared once per connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import TEXTS, TIMES, UUIDS, statement

ReceiptKey = tuple[str, str]  # (channel, external_id)


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    message_id: uuid.UUID
    content_digest: str
    received_at: datetime


# Rows go in key order: two transactions inserting overlapping keys then wait on each other in the same
# order and can never deadlock. A key another transaction is inserting waits for it to commit (then it is a
# conflict here) or roll back (then it is inserted here).
_INSERT_RECEIPTS = statement(
    """
    INSERT INTO ingest.receipts (channel, external_id, message_id, content_digest, received_at)
    SELECT u.channel, u.external_id, u.message_id, u.content_digest, u.received_at
    FROM unnest(:channels, :external_ids, :message_ids, :digests, :received_ats)
        AS u(channel, external_id, message_id, content_digest, received_at)
    ORDER BY u.channel, u.external_id
    ON CONFLICT (channel, external_id) DO NOTHING
    RETURNING channel, external_id, received_at
    """,
    channels=TEXTS,
    external_ids=TEXTS,
    message_ids=UUIDS,
    digests=TEXTS,
    received_ats=TIMES,
)


@dataclass(frozen=True, slots=True)
class NewReceipt:
    channel: str
    external_id: str
    message_id: uuid.UUID
    content_digest: str
    received_at: datetime


async def insert_receipts(
    session: AsyncSession, receipts: Sequence[NewReceipt]
) -> dict[ReceiptKey, datetime]:
    """Insert the receipts whose key is new (keys must be distinct); returns those inserted, with their
    ``received_at``. The others were already received."""
    rows = await session.execute(
        _INSERT_RECEIPTS,
        {
            "channels": [r.channel for r in receipts],
            "external_ids": [r.external_id for r in receipts],
            "message_ids": [r.message_id for r in receipts],
            "digests": [r.content_digest for r in receipts],
            "received_ats": [r.received_at for r in receipts],
        },
    )
    return {(r.channel, r.external_id): r.received_at for r in rows}


_RECEIPTS = statement(
    """
    SELECT r.channel, r.external_id, r.message_id, r.content_digest, r.received_at
    FROM ingest.receipts AS r
    JOIN unnest(:channels, :external_ids) AS k(channel, external_id)
        ON r.channel = k.channel AND r.external_id = k.external_id
    """,
    channels=TEXTS,
    external_ids=TEXTS,
)


async def receipts(session: AsyncSession, keys: Sequence[ReceiptKey]) -> dict[ReceiptKey, StoredReceipt]:
    """The stored receipts of ``keys`` (committed ones: each statement sees what committed before it)."""
    rows = await session.execute(
        _RECEIPTS, {"channels": [c for c, _ in keys], "external_ids": [e for _, e in keys]}
    )
    return {
        (r.channel, r.external_id): StoredReceipt(r.message_id, r.content_digest, r.received_at) for r in rows
    }
