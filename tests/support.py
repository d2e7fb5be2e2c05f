"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import Channel, ConversationOpened, EventEnvelope, utcnow
from tests.conftest import Settings

T = TypeVar("T")


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (consumers, relays included) and give a client bound to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 20.0, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def read_topic(
    settings: Settings, topic: str, count: int, timeout: float = 20.0
) -> list[ConsumerRecord]:
    """Read ``count`` records from the start of a (logical) topic."""
    # No group: assigning partitions directly skips the group join, which takes seconds.
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        name = settings.topic(topic)
        await consumer.topics()  # loads the metadata partitions_for_topic reads
        partitions = consumer.partitions_for_topic(name) or set()
        consumer.assign([TopicPartition(name, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def api_message(message_id: str, customer: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": message_id,
        "customer": {"id": customer},
        "text": f"hello from {customer}",
    }
    body.update(extra)
    return body


def opened_envelope() -> EventEnvelope:
    """A ``conversation.opened`` event of a new conversation, as the conversation service publishes it."""
    payload = ConversationOpened(
        conversation_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        channel=Channel.API,
        required_skills=[],
        priority=0,
        opened_at=utcnow(),
    )
    return EventEnvelope.wrap(payload, producer="test")


class StatementCounter:
    """How many SQL statements a session's engine ran inside ``with counting(session) as counter``."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_: object) -> None:
        self.count += 1


@contextmanager
def counting(session: AsyncSession) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    engine = session.bind.engine.sync_engine  # type: ignore[union-attr]
    event.listen(engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", counter)


async def owns_every_partition(app: FastAPI, settings: Settings) -> bool:
    """Whether the app's one consumer holds every partition of its topics (the others left the group)."""
    [runner] = app.state.runtime.consumers
    consumer = runner._consumer  # the broker's view of the group is only there
    return (
        consumer is not None and len(consumer.assignment()) == len(runner.topics) * settings.topic_partitions
    )
