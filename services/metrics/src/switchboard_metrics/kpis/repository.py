from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_metrics.models import ConversationFact, EventCount, ProcessedEvent


async def claim_event(session: AsyncSession, event_id: uuid.UUID) -> bool:
    """True the first time an event id is seen."""
    stmt = (
        insert(ProcessedEvent)
        .values(event_id=event_id)
        .on_conflict_do_nothing()
        .returning(ProcessedEvent.event_id)
    )
    return (await session.scalar(stmt)) is not None


async def increment(session: AsyncSession, event_type: str) -> None:
    stmt = insert(EventCount).values(event_type=event_type, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[EventCount.event_type], set_={"count": EventCount.count + 1}
    )
    await session.execute(stmt)


async def record_fact(session: AsyncSession, conversation_id: uuid.UUID, **values: Any) -> None:
    """Fill the given columns of a conversation's facts, keeping values already set."""
    stmt = insert(ConversationFact).values(conversation_id=conversation_id, **values)
    table = ConversationFact.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[ConversationFact.conversation_id],
        set_={name: func.coalesce(table.c[name], stmt.excluded[name]) for name in values},
    )
    await session.execute(stmt)


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(EventCount.event_type, EventCount.count))
    return {event_type: int(count) for event_type, count in rows}


_WAIT_STATS = text(
    """
    SELECT count(*) AS assigned,
           avg(extract(epoch FROM assigned_at - opened_at)) AS avg,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - opened_at)) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - opened_at)) AS p90,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM assigned_at - opened_at)) AS p99,
           max(extract(epoch FROM assigned_at - opened_at)) AS max
    FROM metrics.conversation_facts
    WHERE assigned_at IS NOT NULL AND opened_at IS NOT NULL
    """
)

_WAITING_NOW = text(
    """
    SELECT count(*) AS waiting, extract(epoch FROM now() - min(coalesce(queued_at, opened_at))) AS longest
    FROM metrics.conversation_facts
    WHERE assigned_at IS NULL AND resolved_at IS NULL AND (opened_at IS NOT NULL OR queued_at IS NOT NULL)
    """
)


async def wait_stats(session: AsyncSession) -> dict[str, Any]:
    row = (await session.execute(_WAIT_STATS)).mappings().one()
    return dict(row)


async def waiting_now(session: AsyncSession) -> dict[str, Any]:
    row = (await session.execute(_WAITING_NOW)).mappings().one()
    return dict(row)
