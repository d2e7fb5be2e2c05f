"""/metrics on the real broker and database: the outbox backlog (rows waiting and the oldest one's age, read
from the table at each scrape, kept when that read fails) and the count of records written to a DLQ."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from switchboard_common import topics
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox, outbox_columns, relay_lock_key
from switchboard_common.events import ConversationOpened
from switchboard_common.http.app import create_service_app
from switchboard_common.kafka.consumer import Delivery
from switchboard_common.runtime import ServiceRuntime
from tests.conftest import Settings
from tests.support import eventually, opened_envelope, read_topic, serve


async def _sample(client: httpx.AsyncClient, name: str, labels: dict[str, str]) -> float | None:
    """The value of one series in /metrics (which must answer 200), or None if it is absent."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


async def test_outbox_backlog_counts_waiting_rows_keeps_its_value_when_unreadable_then_drains(
    settings: Settings,
) -> None:
    name = f"obs_outbox_{uuid.uuid4().hex[:8]}"
    table = sa.Table(name, sa.MetaData(schema="public"), *outbox_columns())
    label = {"table": f"public.{name}"}
    engine = create_async_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)

    async def setup(runtime: ServiceRuntime, app: FastAPI) -> None:
        runtime.use_outbox(Outbox(table, settings))

    events = [opened_envelope() for _ in range(3)]
    try:
        async with engine.connect() as relay_lock, engine.connect() as table_lock:
            # Holding the relay's lock keeps this app's relay on standby: the rows wait until it is let go.
            await relay_lock.execute(sa.select(sa.func.pg_advisory_lock(relay_lock_key(table))))
            db = Database.from_settings(settings)
            try:
                async with db.unit_of_work() as session:
                    await Outbox(table, settings).add_many(
                        session, [(topics.CONVERSATION_EVENTS, str(e.event_id), e) for e in events]
                    )
                    await session.execute(
                        sa.update(table).values(created_at=sa.func.now() - sa.text("'90 s'::interval"))
                    )
            finally:
                await db.dispose()

            async with serve(create_service_app("outbox-metrics-test", settings, [], setup=setup)) as client:
                assert await _sample(client, "switchboard_outbox_backlog", label) == 3
                oldest = await _sample(client, "switchboard_outbox_oldest_seconds", label)
                assert oldest is not None and oldest >= 90

                # The table cannot be read (locked: the count waits past the scrape's timeout): the scrape
                # still answers, with the last values.
                await table_lock.execute(sa.text("BEGIN"))
                await table_lock.execute(sa.text(f"LOCK TABLE public.{name} IN ACCESS EXCLUSIVE MODE"))
                assert await _sample(client, "switchboard_outbox_backlog", label) == 3
                assert await _sample(client, "switchboard_outbox_oldest_seconds", label) == oldest
                await table_lock.execute(sa.text("ROLLBACK"))

                await relay_lock.execute(sa.select(sa.func.pg_advisory_unlock(relay_lock_key(table))))

                async def drained() -> bool:
                    backlog = await _sample(client, "switchboard_outbox_backlog", label)
                    age = await _sample(client, "switchboard_outbox_oldest_seconds", label)
                    return backlog == 0 and age == 0

                await eventually(drained, what="the outbox published and emptied")
        published = await read_topic(settings, topics.CONVERSATION_EVENTS, len(events))
        assert sorted(r.value for r in published) == sorted(e.to_bytes() for e in events)
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.drop_all)
        await engine.dispose()


async def test_a_poison_record_counts_in_the_dlq_records_once_the_dlq_holds_it(settings: Settings) -> None:
    group = f"test-{uuid.uuid4().hex[:6]}"
    topic = settings.topic(topics.CONVERSATION_EVENTS)
    handled: list[uuid.UUID] = []

    async def on_opened(session: AsyncSession, deliveries: Sequence[Delivery[ConversationOpened]]) -> None:
        handled.extend(d.envelope.event_id for d in deliveries)

    async def setup(runtime: ServiceRuntime, app: FastAPI) -> None:
        runtime.add_consumer(group, {ConversationOpened: on_opened})

    good = opened_envelope()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{not an envelope", partition=0)
        await producer.send_and_wait(topic, good.to_bytes(), partition=0)
    finally:
        await producer.stop()

    labels = {"group": group, "topic": topic}
    async with serve(create_service_app("dlq-metrics-test", settings, [], setup=setup)) as client:
        assert await _sample(client, "switchboard_dlq_records_total", labels) is None

        async def counted() -> float | None:
            return await _sample(client, "switchboard_dlq_records_total", labels)

        assert await eventually(counted, what="the DLQ counter") == 1
        # The good record of the same partition, after the poison one, was handled and not counted.
        await eventually(lambda: _true(handled == [good.event_id]), what="the good record handled")
        assert await _sample(client, "switchboard_dlq_records_total", labels) == 1

    dead = await read_topic(settings, topics.dlq(topics.CONVERSATION_EVENTS), 1)
    assert [r.value for r in dead] == [b"{not an envelope"]


async def _true(value: bool) -> bool:
    return value
