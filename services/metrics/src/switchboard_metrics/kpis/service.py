"""Counting events into KPIs, idempotently (each event id counts once)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import (
    ConversationAssigned,
    ConversationOpened,
    ConversationQueued,
    ConversationResolved,
    EventEnvelope,
)
from switchboard_metrics.kpis import repository

# The events whose timestamps feed the conversation facts; every other type is only counted.
_FACT_EVENTS = {
    ConversationOpened.event_type,
    ConversationQueued.event_type,
    ConversationAssigned.event_type,
    ConversationResolved.event_type,
}


async def record(session: AsyncSession, envelope: EventEnvelope) -> None:
    if not await repository.claim_event(session, envelope.event_id):
        return
    await repository.increment(session, envelope.type)
    if envelope.type not in _FACT_EVENTS:
        return
    event = envelope.parse()
    if isinstance(event, ConversationOpened):
        await repository.record_fact(
            session, event.conversation_id, opened_at=event.opened_at, channel=event.channel.value
        )
    elif isinstance(event, ConversationQueued):
        await repository.record_fact(session, event.conversation_id, queued_at=event.queued_at)
    elif isinstance(event, ConversationAssigned):
        await repository.record_fact(
            session, event.conversation_id, assigned_at=event.assigned_at, agent_id=event.agent_id
        )
    elif isinstance(event, ConversationResolved):
        await repository.record_fact(session, event.conversation_id, resolved_at=event.resolved_at)
