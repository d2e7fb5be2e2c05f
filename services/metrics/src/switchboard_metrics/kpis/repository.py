"""The metrics statements. Every write is one statement of constant shape whatever the batch (``unnest``
over typed arrays), so PostgreSQL and asyncpg prepare each once; every input is deduplicated by the
caller (an upsert may touch a row only once) and sorted (concurrent transactions lock rows in one order,
so they wait for each other instead of deadlocking)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import BIGINTS, INTS, TEXTS, TIMES, UUIDS, statement
from switchboard_metrics.kpis.facts import COLUMNS, Facts
from switchboard_metrics.models import EventCount

Partition = tuple[str, int]  # (physical topic, partition)


# Returns the stored next offset of each partition, creating missing rows at 0. The no-op update locks the
# rows until commit, so a second transaction on the same partitions (a consumer that lost them in a
# rebalance and still finishes its poll) waits and then reads the offsets this one stores: nothing is
# counted twice, even for a partition seen for the first time.
_CLAIM_OFFSETS = statement(
    """
    INSERT INTO metrics.partition_offsets AS o (topic, partition, next_offset)
    SELECT t, p, 0 FROM unnest(:topics, :partitions) AS u(t, p)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = o.next_offset
    RETURNING o.topic, o.partition, o.next_offset
    """,
    topics=TEXTS,
    partitions=INTS,
)

_ADVANCE_OFFSETS = statement(
    """
    UPDATE metrics.partition_offsets AS o SET next_offset = greatest(o.next_offset, u.n)
    FROM unnest(:topics, :partitions, :next_offsets) AS u(t, p, n)
    WHERE o.topic = u.t AND o.partition = u.p
    """,
    topics=TEXTS,
    partitions=INTS,
    next_offsets=BIGINTS,
)

_ADD_COUNTS = statement(
    """
    INSERT INTO metrics.event_counts AS c (event_type, count)
    SELECT t, n FROM unnest(:types, :counts) AS u(t, n)
    ON CONFLICT (event_type) DO UPDATE SET count = c.count + excluded.count
    """,
    types=TEXTS,
    counts=BIGINTS,
)

_FACT_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "channel": TEXTS,
    "agent_id": UUIDS,
    "opened_at": TIMES,
    "queued_at": TIMES,
    "assigned_at": TIMES,
    "resolved_at": TIMES,
}
assert set(_FACT_TYPES) == set(COLUMNS)

# A column once set keeps its value: the first event to tell it wins, in whatever order events arrive.
_RECORD_FACTS = statement(
    f"""
    INSERT INTO metrics.conversation_facts AS f (conversation_id, {", ".join(COLUMNS)})
    SELECT * FROM unnest(:conversation_ids, {", ".join(f":{c}" for c in COLUMNS)})
    ON CONFLICT (conversation_id) DO UPDATE
    SET {", ".join(f"{c} = coalesce(f.{c}, excluded.{c})" for c in COLUMNS)}
    """,  # noqa: S608 - the column names are ours, not input
    conversation_ids=UUIDS,
    **_FACT_TYPES,
)


async def claim_offsets(session: AsyncSession, partitions: Sequence[Partition]) -> dict[Partition, int]:
    """The next offset to count on each of ``partitions``; locks their rows until the transaction ends."""
    ordered = sorted(set(partitions))
    rows = await session.execute(
        _CLAIM_OFFSETS, {"topics": [t for t, _ in ordered], "partitions": [p for _, p in ordered]}
    )
    return {(topic, partition): int(next_offset) for topic, partition, next_offset in rows}


async def advance_offsets(session: AsyncSession, next_offsets: Mapping[Partition, int]) -> None:
    """Store the next offset to count on each partition (never moving one back); the rows exist (claimed)."""
    if not next_offsets:
        return
    ordered = sorted(next_offsets.items())
    await session.execute(
        _ADVANCE_OFFSETS,
        {
            "topics": [t for (t, _), _ in ordered],
            "partitions": [p for (_, p), _ in ordered],
            "next_offsets": [n for _, n in ordered],
        },
    )


_STORED_OFFSETS = statement(
    "SELECT topic, partition, next_offset FROM metrics.partition_offsets WHERE topic = ANY(:topics)",
    topics=TEXTS,
)

_FORGET_OFFSETS_BEYOND = statement(
    """
    DELETE FROM metrics.partition_offsets AS o
    USING unnest(:topics, :partitions, :end_offsets) AS u(t, p, e)
    WHERE o.topic = u.t AND o.partition = u.p AND o.next_offset > u.e
    RETURNING o.topic, o.partition, o.next_offset
    """,
    topics=TEXTS,
    partitions=INTS,
    end_offsets=BIGINTS,
)


async def stored_offsets(session: AsyncSession, topics: Sequence[str]) -> dict[Partition, int]:
    rows = await session.execute(_STORED_OFFSETS, {"topics": list(topics)})
    return {(topic, partition): int(next_offset) for topic, partition, next_offset in rows}


async def forget_offsets_beyond(
    session: AsyncSession, end_offsets: Mapping[Partition, int]
) -> dict[Partition, int]:
    """Delete the offsets stored beyond their partition's end; returns the rows deleted."""
    if not end_offsets:
        return {}
    ordered = sorted(end_offsets.items())
    rows = await session.execute(
        _FORGET_OFFSETS_BEYOND,
        {
            "topics": [t for (t, _), _ in ordered],
            "partitions": [p for (_, p), _ in ordered],
            "end_offsets": [e for _, e in ordered],
        },
    )
    return {(topic, partition): int(next_offset) for topic, partition, next_offset in rows}


async def add_counts(session: AsyncSession, counts: Mapping[str, int]) -> None:
    if not counts:
        return
    ordered = sorted(counts.items())
    await session.execute(_ADD_COUNTS, {"types": [t for t, _ in ordered], "counts": [n for _, n in ordered]})


async def record_facts(session: AsyncSession, facts: Mapping[uuid.UUID, Facts]) -> None:
    """Fill conversation facts, one row per conversation; a column already set keeps its value."""
    if not facts:
        return
    ordered = sorted(facts.items())
    params: dict[str, list[Any]] = {"conversation_ids": [cid for cid, _ in ordered]}
    for column in COLUMNS:
        params[column] = [getattr(f, column) for _, f in ordered]
    await session.execute(_RECORD_FACTS, params)


# --- reading ---------------------------------------------------------------------------------------------


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(sa.select(EventCount.event_type, EventCount.count))
    return {event_type: int(count) for event_type, count in rows}


_WAIT_STATS = sa.text(
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

_WAITING_NOW = sa.text(
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
