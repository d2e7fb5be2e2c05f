"""The consumer runner on the real broker and database: poison records go to the DLQ with their origin in
headers, and the partition keeps flowing past them."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.database import Database
from switchboard_common.events import Channel, ConversationOpened, EventEnvelope, utcnow
from switchboard_common.kafka.consumer import ConsumerRunner, per_event
from switchboard_common.kafka.producer import EventPublisher
from switchboard_common.settings import Settings
from tests.support import eventually, read_topic


def _opened() -> EventEnvelope:
    payload = ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=[],
        priority=0,
        opened_at=utcnow(),
    )
    return EventEnvelope.wrap(payload, producer="test")


async def test_poison_goes_to_dlq_and_the_partition_keeps_flowing(settings: Settings) -> None:
    handled: list[uuid.UUID] = []
    failing = _opened()

    async def handler(session: AsyncSession, envelope: EventEnvelope) -> None:
        envelope.parse()
        if envelope.event_id == failing.event_id:
            raise ValueError("this record always fails")
        handled.append(envelope.event_id)

    good_before, good_after = _opened(), _opened()
    records = [good_before.to_bytes(), b"{not an envelope", failing.to_bytes(), good_after.to_bytes()]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value in records:  # one key: one partition, in this order
            await producer.send_and_wait(settings.topic(topics.CONVERSATION_EVENTS), value, key=b"same-key")
    finally:
        await producer.stop()

    db = Database.from_settings(settings)
    publisher = EventPublisher(settings, client_id="test")
    await publisher.start()
    runner = ConsumerRunner(
        settings=settings,
        db=db,
        publisher=publisher,
        group_id=f"test-{uuid.uuid4().hex[:6]}",
        topics=[topics.CONVERSATION_EVENTS],
        handler=per_event(handler),
    )
    await runner.start()
    try:
        await eventually(
            lambda: _seen(handled, good_after.event_id), what="the record after the poison handled"
        )
        dead = await read_topic(settings, topics.dlq(topics.CONVERSATION_EVENTS), 2)
    finally:
        await runner.stop()
        await publisher.stop()
        await db.dispose()

    # The failed batch was rolled back and replayed record by record, so good_before ran twice; with a
    # transactional handler that is invisible, here the list shows it.
    assert list(dict.fromkeys(handled)) == [good_before.event_id, good_after.event_id]
    assert [r.value for r in dead] == [records[1], records[2]]
    headers = [dict(r.headers) for r in dead]
    assert headers[0]["dlq.original_topic"] == settings.topic(topics.CONVERSATION_EVENTS).encode()
    assert [h["dlq.original_offset"] for h in headers] == [b"1", b"2"]
    assert all("dlq.original_partition" in h and "dlq.consumer_group" in h for h in headers)
    assert b"not an event envelope" in headers[0]["dlq.error"]
    assert b"this record always fails" in headers[1]["dlq.error"]


async def _seen(handled: list[uuid.UUID], event_id: uuid.UUID) -> bool:
    return event_id in handled
