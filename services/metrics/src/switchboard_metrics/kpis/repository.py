from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_metrics.models import ConversationFact, EventCount, ProcessedEvent


async def claim_events(session: AsyncSession, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The ids among ``event_ids`` seen for the first time (one statement for the whole batch)."""
    if not event_ids:
        return set()
    stmt = (
        insert(ProcessedEvent)
        .values([{"event_id": event_id} for event_id in event_ids])
        .on_conflict_do_nothing()
        .returning(ProcessedEvent.event_id)
    )
    return set((await session.scalars(stmt)).all())


async def add_counts(session: AsyncSession, counts: Mapping[str, int]) -> None:
    if not counts:
        return
    stmt = insert(EventCount).values([{"event_type": t, "count": n} for t, n in counts.items()])
    stmt = stmt.on_conflict_do_update(
        index_elements=[EventCount.event_type], set_={"count": EventCount.count + stmt.excluded.count}
    )
    await session.execute(stmt)


FACT_COLUMNS = ("channel", "agent_id", "opened_at", "queued_at", "assigned_at", "resolved_at")


async def record_facts(session: AsyncSession, facts: Mapping[uuid.UUID, Mapping[str, Any]]) -> None:
    """Fill conversation facts; a column already set keeps its value (events arrive in any order)."""
    if not facts:
        return
    rows = [
        {"conversation_id": cid, **{c: values.get(c) for c in FACT_COLUMNS}} for cid, values in facts.items()
    ]
    stmt = insert(ConversationFact).values(rows)
    table = ConversationFact.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[ConversationFact.conversation_id],
        set_={c: func.coalesce(table.c[c], stmt.excluded[c]) for c in FACT_COLUMNS},
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
