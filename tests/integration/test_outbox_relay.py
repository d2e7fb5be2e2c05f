"""The outbox relay: one leader per outbox table, woken by commits of any replica, taking over when the
leader goes away, deleting exactly what the broker acknowledged."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from switchboard_common import topics
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox, OutboxRelay
from switchboard_common.events import ConversationResolved, EventEnvelope, utcnow
from switchboard_common.kafka.producer import EventPublisher
from switchboard_conversation.models import outbox_table
from tests.conftest import Settings
from tests.support import eventually, read_topic


def _resolved() -> EventEnvelope:
    payload = ConversationResolved(conversation_id=uuid.uuid4(), agent_id=None, resolved_at=utcnow())
    return EventEnvelope.wrap(payload, producer="test")


class Replica:
    def __init__(self, settings: Settings) -> None:
        self.db = Database.from_settings(settings)
        self.publisher = EventPublisher(settings, client_id="test")
        self.outbox = Outbox(outbox_table, settings)
        self.relay = OutboxRelay(self.db, self.outbox, self.publisher, settings)

    async def start(self) -> None:
        await self.publisher.start()
        self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()
        await self.publisher.stop()
        await self.db.dispose()

    async def commit(self, events: list[EventEnvelope]) -> None:
        async with self.db.unit_of_work() as session:
            await self.outbox.add_many(
                session, [(topics.CONVERSATION_EVENTS, str(e.payload["conversation_id"]), e) for e in events]
            )


async def _outbox_empty(db: Database) -> bool:
    async with db.unit_of_work() as session:
        return not await session.scalar(sa.text("SELECT count(*) FROM conversation.outbox"))


async def test_one_leader_relays_what_any_replica_commits_and_a_standby_takes_over(
    settings: Settings,
) -> None:
    # A poll interval far beyond the test's patience: only commit notifications can wake the relay.
    settings = settings.model_copy(update={"outbox_poll_interval_ms": 600_000})
    first, second = Replica(settings), Replica(settings)
    await first.start()
    await eventually(lambda: _is(first.relay.leader), what="the first relay to lead")
    await second.start()
    try:
        batch = [_resolved() for _ in range(5)]
        await second.commit(batch)  # committed where the relay is on standby
        records = await read_topic(settings, topics.CONVERSATION_EVENTS, 5)
        assert sorted(EventEnvelope.from_bytes(r.value).event_id for r in records) == sorted(
            e.event_id for e in batch
        )
        await eventually(lambda: _outbox_empty(first.db), what="the acknowledged rows deleted")
        assert first.relay.leader and not second.relay.leader

        await first.stop()  # the leader leaves; its lock goes with its connection
        later = [_resolved() for _ in range(3)]
        await second.commit(later)
        records = await read_topic(settings, topics.CONVERSATION_EVENTS, 8)
        assert {e.event_id for e in later} <= {EventEnvelope.from_bytes(r.value).event_id for r in records}
        assert second.relay.leader
        assert len(records) == 8  # nothing published twice
    finally:
        if first.relay.running:
            await first.stop()
        await second.stop()


async def _is(value: bool) -> bool:
    return value
