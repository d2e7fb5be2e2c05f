"""Metrics count each event once, whatever the redelivery, and fill conversation facts in any order."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from switchboard_common.db.database import Database
from switchboard_common.events import Channel, ConversationAssigned, ConversationOpened, EventEnvelope, utcnow
from switchboard_common.settings import Settings
from switchboard_metrics.kpis.service import record_batch


async def test_redelivered_events_count_once_and_facts_fill_in_any_order(settings: Settings) -> None:
    conversation_id, opened_at = uuid.uuid4(), utcnow()
    opened = EventEnvelope.wrap(
        ConversationOpened(
            conversation_id=conversation_id,
            customer_id=uuid.uuid4(),
            channel=Channel.API,
            required_skills=[],
            priority=0,
            opened_at=opened_at,
        ),
        producer="test",
    )
    assigned = EventEnvelope.wrap(
        ConversationAssigned(
            conversation_id=conversation_id,
            agent_id=uuid.uuid4(),
            queued_at=opened_at,
            assigned_at=opened_at + timedelta(seconds=3),
        ),
        producer="test",
    )
    db = Database.from_settings(settings)
    try:
        # The assignment arrives first (another topic), then both again, one twice in the same batch.
        for batch in ([assigned], [opened, assigned, opened]):
            async with db.unit_of_work() as session:
                await record_batch(session, batch)
        async with db.unit_of_work() as session:
            counts: dict[str, int] = dict(
                (await session.execute(sa.text("SELECT event_type, count FROM metrics.event_counts"))).all()
            )
            wait = await session.scalar(
                sa.text("SELECT extract(epoch FROM assigned_at - opened_at) FROM metrics.conversation_facts")
            )
    finally:
        await db.dispose()
    assert counts == {"conversation.opened": 1, "conversation.assigned": 1}
    assert float(wait) == 3.0
