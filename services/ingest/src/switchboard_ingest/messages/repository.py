from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_ingest.models import Receipt


async def insert_receipt(
    session: AsyncSession, channel: str, external_id: str, message_id: uuid.UUID, digest: str
) -> Receipt | None:
    """Insert the receipt; returns it, or None when (channel, external_id) was already received."""
    stmt = (
        insert(Receipt)
        .values(channel=channel, external_id=external_id, message_id=message_id, content_digest=digest)
        .on_conflict_do_nothing(index_elements=[Receipt.channel, Receipt.external_id])
        .returning(Receipt)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_receipt(session: AsyncSession, channel: str, external_id: str) -> Receipt | None:
    stmt = select(Receipt).where(Receipt.channel == channel, Receipt.external_id == external_id)
    return (await session.execute(stmt)).scalar_one_or_none()
