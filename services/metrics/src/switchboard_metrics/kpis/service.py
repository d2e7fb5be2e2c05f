"""Counting events into KPIs, and reading them.

Metrics counts natural keys, not log records: each counted event type has a key and a column only it sets
(see ``facts``), and counts when that column becomes known. The same event met again changes nothing,
however it comes back: redelivered after a crash or a rebalance, replayed in a poll, republished by an
outbox relay at a new offset (a crash between the broker's ack and the outbox DELETE), or read again from a
recreated topic. So no offsets are kept, and no row per event.

A call's before-image is exact under concurrency: it is taken by an upsert that locks every row of the call
(creating the missing ones) and reads its latest committed version (see ``repository``), so two
transactions on the same message or conversation, e.g. two replicas consuming ``conversation.events`` and
``routing.events``, or the same record handled by an old and a new owner during a rebalance, take turns,
and each counts only what the other had not. Agent status changes and conversation reopens are counted
by the rows an insert-if-absent adds, which is exact the same way. What is exact is the count of distinct
keys: an event that comes back with another key (a new message id) is a new event here.

A call costs at most five statements whatever the number of deliveries: the before-image, the message facts,
the conversation facts, the status changes and reopens, the counts; a statement with nothing to do is
skipped (a replayed poll writes no fact and no count: it costs the before-image, and the status and reopen
insert if it has status changes or reopens).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import (
    AgentStatusChanged,
    ConversationAssigned,
    ConversationOpened,
    ConversationReopened,
    ConversationResolved,
    MessageReceived,
    Payload,
)
from switchboard_common.kafka.consumer import Delivery
from switchboard_metrics.kpis import repository
from switchboard_metrics.kpis.facts import ConversationFacts, MessageFacts, merge, news_of
from switchboard_metrics.kpis.schemas import KpiSnapshot, WaitStats


async def record_batch(session: AsyncSession, deliveries: Sequence[Delivery[Payload]]) -> None:
    """Fill the facts of ``deliveries`` and count what is new in them.

    Called with a whole poll, a part of one, or one record (the runner's failure isolation), possibly
    several times in one transaction: each call reads the rows its predecessors wrote.
    """
    batch = merge(d.payload for d in deliveries)
    stored_messages: dict[uuid.UUID, MessageFacts] = {}
    stored_conversations: dict[uuid.UUID, ConversationFacts] = {}
    if batch.messages or batch.conversations:
        stored_messages, stored_conversations = await repository.claim_facts(
            session, batch.messages.keys(), batch.conversations.keys()
        )
    news = news_of(batch, stored_messages, stored_conversations)
    await repository.fill_messages(session, news.messages)
    await repository.fill_conversations(session, news.conversations)
    counts = news.counts
    statuses, reopens = await repository.insert_changes(session, batch.statuses, batch.reopens)
    counts[AgentStatusChanged.event_type] += statuses
    counts[ConversationReopened.event_type] += reopens
    await repository.add_counts(session, counts)


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
        conversations_reopened=counts.get(ConversationReopened.event_type, 0),
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
