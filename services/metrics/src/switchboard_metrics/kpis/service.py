"""Counting events into KPIs, and reading them.

Idempotency without a row per event:

* conversation facts are keyed by the conversation id and a column once set keeps its value, so applying
  an event again changes nothing;
* counts are exactly-once per record of the log: the next offset to count on each partition is stored in
  the same transaction as the counts (``metrics.partition_offsets``), and a delivery below it (a poll
  replayed after a crash between the database commit and the offset commit, or by a partition's new owner
  after a rebalance) is dropped.

A call costs at most four statements whatever the number of deliveries: claim the partitions' offsets,
add the counts, fill the facts, advance the offsets.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import (
    ConversationAssigned,
    ConversationOpened,
    ConversationResolved,
    MessageReceived,
    Payload,
)
from switchboard_common.kafka.consumer import Delivery
from switchboard_metrics.kpis import repository
from switchboard_metrics.kpis.facts import merge_facts
from switchboard_metrics.kpis.repository import Partition
from switchboard_metrics.kpis.schemas import KpiSnapshot, WaitStats


def fresh_deliveries(
    deliveries: Sequence[Delivery[Payload]], next_offsets: Mapping[Partition, int]
) -> list[Delivery[Payload]]:
    """The deliveries not counted yet: at or above their partition's stored next offset, each record and
    each event id once (in order)."""
    seen_records: set[tuple[str, int, int]] = set()
    seen_events: set[uuid.UUID] = set()
    fresh = []
    for d in deliveries:
        record = (d.topic, d.partition, d.offset)
        if d.offset < next_offsets.get((d.topic, d.partition), 0) or record in seen_records:
            continue
        seen_records.add(record)
        # The same event at two offsets (a producer's retry) in one call: counted once. Across calls such
        # duplicates are counted as the records they are.
        if d.envelope.event_id in seen_events:
            continue
        seen_events.add(d.envelope.event_id)
        fresh.append(d)
    return fresh


def next_offsets_after(deliveries: Sequence[Delivery[Payload]]) -> dict[Partition, int]:
    """Per partition, the offset after the last of ``deliveries`` (the statement keeps the greater of it
    and the stored one)."""
    out: dict[Partition, int] = {}
    for d in deliveries:
        key = (d.topic, d.partition)
        out[key] = max(out.get(key, 0), d.offset + 1)
    return out


async def record_batch(session: AsyncSession, deliveries: Sequence[Delivery[Payload]]) -> None:
    """Count ``deliveries`` and fill their conversations' facts, exactly once per record.

    Called with a whole poll, a part of one, or one record (the runner's failure isolation), possibly
    several times in one transaction: each call reads the offsets its predecessors stored.
    """
    if not deliveries:
        return
    stored = await repository.claim_offsets(session, [(d.topic, d.partition) for d in deliveries])
    fresh = fresh_deliveries(deliveries, stored)
    if not fresh:
        return  # every delivery is below its partition's stored offset: nothing to count or store
    await repository.add_counts(session, Counter(d.payload.event_type for d in fresh))
    await repository.record_facts(session, merge_facts(d.payload for d in fresh))
    # Past every delivery, counted or not (an event id met twice in the call is counted once, and its
    # second record must stay behind the offset when the poll is replayed).
    await repository.advance_offsets(session, next_offsets_after(deliveries))


# --- reading ---------------------------------------------------------------------------------------------


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def kpi_snapshot(
    counts: Mapping[str, int], waits: Mapping[str, Any], waiting: Mapping[str, Any]
) -> KpiSnapshot:
    """The KPIs from the stored counts and the two fact aggregates (pure)."""
    return KpiSnapshot(
        messages_received=counts.get(MessageReceived.event_type, 0),
        conversations_opened=counts.get(ConversationOpened.event_type, 0),
        conversations_assigned=counts.get(ConversationAssigned.event_type, 0),
        conversations_resolved=counts.get(ConversationResolved.event_type, 0),
        waiting_now=int(waiting["waiting"]),
        longest_wait_seconds=_seconds(waiting["longest"]),
        time_to_assign_seconds=WaitStats(
            count=int(waits["assigned"]),
            **{k: _seconds(waits[k]) for k in ("avg", "p50", "p90", "p99", "max")},
        ),
        events_by_type=dict(counts),
    )


async def snapshot(session: AsyncSession) -> KpiSnapshot:
    return kpi_snapshot(
        await repository.counts(session),
        await repository.wait_stats(session),
        await repository.waiting_now(session),
    )
