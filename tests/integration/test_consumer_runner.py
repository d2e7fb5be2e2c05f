"""The consumer runner on the real broker and database: one transaction and one offset commit per poll,
poison records go to the DLQ with their origin in headers, and the good records of the same poll, from
every partition, commit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.database import Database
from switchboard_common.events import (
    Channel,
    ConversationOpened,
    ConversationResolved,
    EventEnvelope,
    utcnow,
)
from switchboard_common.kafka.consumer import ConsumerRunner, Delivery
from switchboard_common.kafka.producer import EventPublisher
from tests.conftest import Settings
from tests.support import eventually, opened_envelope, read_topic

HANDLED = "public.consumer_runner_handled"


async def _count_handled(db: Database) -> int:
    async with db.unit_of_work() as session:
        return int(await session.scalar(sa.text(f"SELECT count(*) FROM {HANDLED}")) or 0)  # noqa: S608


async def test_poison_in_a_multi_partition_poll_is_dead_lettered_and_the_rest_commits(
    settings: Settings,
) -> None:
    failing = opened_envelope()
    good = [opened_envelope() for _ in range(30)]
    poll_sizes: list[int] = []

    async def handler(session: AsyncSession, deliveries: Sequence[Delivery[ConversationOpened]]) -> None:
        poll_sizes.append(len(deliveries))
        # A real write: what the runner commits or rolls back is visible in the table afterwards.
        await session.execute(
            sa.text(f"INSERT INTO {HANDLED} SELECT unnest(CAST(:ids AS uuid[]))"),
            {"ids": [d.envelope.event_id for d in deliveries]},
        )
        if any(d.envelope.event_id == failing.event_id for d in deliveries):
            raise ValueError("this record always fails")

    topic = settings.topic(topics.CONVERSATION_EVENTS)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        # Distinct keys spread the records over every partition; poison and failing ones among them.
        values = [g.to_bytes() for g in good[:15]] + [b"{not an envelope", failing.to_bytes()]
        values += [g.to_bytes() for g in good[15:]]
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=f"key-{i}".encode())
    finally:
        await producer.stop()

    db = Database.from_settings(settings)
    async with db.unit_of_work() as session:
        await session.execute(sa.text(f"DROP TABLE IF EXISTS {HANDLED}"))
        await session.execute(sa.text(f"CREATE TABLE {HANDLED} (event_id uuid PRIMARY KEY)"))
    publisher = EventPublisher(settings, client_id="test")
    await publisher.start()
    group = f"test-{uuid.uuid4().hex[:6]}"
    runner = ConsumerRunner(
        settings=settings, db=db, publisher=publisher, group_id=group, handlers={ConversationOpened: handler}
    )
    assert runner.topics == [topic]  # only the topic of the handled type
    await runner.start()
    try:
        await eventually(lambda: _all_handled(db, len(good)), what="every good record handled")
        dead = await read_topic(settings, topics.dlq(topics.CONVERSATION_EVENTS), 2)
        await eventually(lambda: _fully_committed(settings, group), what="offsets committed to the end")
    finally:
        await runner.stop()
        await publisher.stop()

    async with db.unit_of_work() as session:
        handled = set((await session.scalars(sa.text(f"SELECT event_id FROM {HANDLED}"))).all())  # noqa: S608
        await session.execute(sa.text(f"DROP TABLE {HANDLED}"))
    await db.dispose()
    assert handled == {g.event_id for g in good}  # the failing record's insert was rolled back
    assert max(poll_sizes) > 1  # records of several partitions went through one handler call
    assert sorted(r.value for r in dead) == sorted([b"{not an envelope", failing.to_bytes()])
    headers = {r.value: dict(r.headers) for r in dead}
    assert b"not an event envelope" in headers[b"{not an envelope"]["dlq.error"]
    assert b"this record always fails" in headers[failing.to_bytes()]["dlq.error"]
    for h in headers.values():
        assert h["dlq.original_topic"] == topic.encode()
        assert {"dlq.original_partition", "dlq.original_offset", "dlq.consumer_group"} <= set(h)


async def test_handlers_run_in_causal_order_per_key(settings: Settings) -> None:
    """Opened and resolved of one conversation in one poll reach their handlers opened first."""
    seen: list[tuple[str, uuid.UUID]] = []

    async def on_opened(session: AsyncSession, deliveries: Sequence[Delivery[ConversationOpened]]) -> None:
        seen.extend(("opened", d.payload.conversation_id) for d in deliveries)

    async def on_resolved(
        session: AsyncSession, deliveries: Sequence[Delivery[ConversationResolved]]
    ) -> None:
        seen.extend(("resolved", d.payload.conversation_id) for d in deliveries)

    publisher = EventPublisher(settings, client_id="test")
    await publisher.start()
    conversations = [uuid.uuid4() for _ in range(5)]
    for cid in conversations:
        opened = ConversationOpened(
            conversation_id=cid,
            customer_id=uuid.uuid4(),
            channel=Channel.API,
            required_skills=[],
            priority=0,
            opened_at=utcnow(),
        )
        resolved = ConversationResolved(conversation_id=cid, agent_id=None, resolved_at=utcnow())
        for payload in (opened, resolved):
            await publisher.publish(
                topics.CONVERSATION_EVENTS, str(cid), EventEnvelope.wrap(payload, producer="test")
            )
    db = Database.from_settings(settings)
    runner = ConsumerRunner(
        settings=settings,
        db=db,
        publisher=publisher,
        group_id=f"test-{uuid.uuid4().hex[:6]}",
        handlers={ConversationOpened: on_opened, ConversationResolved: on_resolved},
    )
    await runner.start()
    try:
        await eventually(lambda: _len_at_least(seen, 10), what="all events handled")
    finally:
        await runner.stop()
        await publisher.stop()
        await db.dispose()
    for cid in conversations:
        assert [kind for kind, c in seen if c == cid] == ["opened", "resolved"]


async def _len_at_least(items: list[tuple[str, uuid.UUID]], n: int) -> bool:
    return len(items) >= n


async def _all_handled(db: Database, n: int) -> bool:
    return await _count_handled(db) >= n


async def _fully_committed(settings: Settings, group: str) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.group(group))
    await consumer.start()
    try:
        topic = settings.topic(topics.CONVERSATION_EVENTS)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if (await consumer.committed(tp) or 0) != ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def test_a_stop_during_a_record_by_record_replay_leaves_the_rest_uncommitted(
    settings: Settings,
) -> None:
    """A failing poll is replayed one record at a time, which can take minutes; a stop ends it at the next
    record instead, and commits nothing: the next owner replays the rest, nothing is dead-lettered."""
    records = [opened_envelope() for _ in range(40)]
    calls = 0
    stopping = asyncio.Event()

    async def handler(session: AsyncSession, deliveries: Sequence[Delivery[ConversationOpened]]) -> None:
        nonlocal calls
        calls += 1
        if len(deliveries) == 1:
            stopping.set()  # the replay has begun
        raise ValueError("every record fails (a bug)")

    topic = settings.topic(topics.CONVERSATION_EVENTS)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send(topic, r.to_bytes(), key=b"one-key", partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    db = Database.from_settings(settings)
    publisher = EventPublisher(settings, client_id="test")
    await publisher.start()
    group = f"test-{uuid.uuid4().hex[:6]}"
    runner = ConsumerRunner(
        settings=settings.model_copy(update={"consumer_retry_backoff_ms": 200, "consumer_max_batch": 500}),
        db=db,
        publisher=publisher,
        group_id=group,
        handlers={ConversationOpened: handler},
    )
    await runner.start()
    try:
        await asyncio.wait_for(stopping.wait(), 60)
    finally:
        await runner.stop()
        await publisher.stop()
        await db.dispose()
    # Each record alone is tried consumer_max_retries + 1 times: far fewer calls than a full replay.
    assert calls < 1 + len(records) * (settings.consumer_max_retries + 1)
    assert not await _fully_committed(settings, group)
    assert await read_topic(settings, topics.dlq(topics.CONVERSATION_EVENTS), 1, timeout=2) == []
