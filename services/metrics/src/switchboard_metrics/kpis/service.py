"""Counting events into KPIs, a whole batch in a few statements, idempotently (each event id counts once)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import (
    ConversationAssigned,
    ConversationOpened,
    ConversationQueued,
    ConversationResolved,
    EventEnvelope,
    Payload,
)
from switchboard_metrics.kpis import repository

# The events whose timestamps feed the conversation facts; every other type is only counted.
_FACT_EVENTS = {
    ConversationOpened.event_type,
    ConversationQueued.event_type,
    ConversationAssigned.event_type,
    ConversationResolved.event_type,
}


def fact_of(event: Payload) -> tuple[uuid.UUID, dict[str, Any]] | None:
    """The conversation fact columns one event sets."""
    if isinstance(event, ConversationOpened):
        return event.conversation_id, {"opened_at": event.opened_at, "channel": event.channel.value}
    if isinstance(event, ConversationQueued):
        return event.conversation_id, {"queued_at": event.queued_at}
    if isinstance(event, ConversationAssigned):
        return event.conversation_id, {"assigned_at": event.assigned_at, "agent_id": event.agent_id}
    if isinstance(event, ConversationResolved):
        return event.conversation_id, {"resolved_at": event.resolved_at}
    return None


async def record_batch(session: AsyncSession, envelopes: Sequence[EventEnvelope]) -> None:
    unique = list({e.event_id: e for e in envelopes}.values())
    fresh_ids = await repository.claim_events(session, [e.event_id for e in unique])
    fresh = [e for e in unique if e.event_id in fresh_ids]
    await repository.add_counts(session, Counter(e.type for e in fresh))
    facts: dict[uuid.UUID, dict[str, Any]] = {}
    for envelope in fresh:
        if envelope.type in _FACT_EVENTS and (fact := fact_of(envelope.parse())) is not None:
            conversation_id, values = fact
            merged = facts.setdefault(conversation_id, {})
            for column, value in values.items():
                merged.setdefault(column, value)  # first wins, like the stored values
    await repository.record_facts(session, facts)
