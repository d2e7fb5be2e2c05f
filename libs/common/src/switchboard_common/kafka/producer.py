"""The one way events leave a service: keyed, acks=all, serialized at the edge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from switchboard_common.events import EventEnvelope
from switchboard_common.settings import CommonSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str  # physical topic name
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def event_headers(envelope: EventEnvelope) -> tuple[tuple[str, bytes], ...]:
    """Headers that let tools route and trace a record without decoding its value."""
    return (
        ("event_type", envelope.type.encode()),
        ("event_id", str(envelope.event_id).encode()),
        ("correlation_id", envelope.correlation_id.encode()),
    )


def event_record(topic: str, key: str, envelope: EventEnvelope) -> OutgoingRecord:
    return OutgoingRecord(topic, key.encode(), envelope.to_bytes(), event_headers(envelope))


class EventPublisher:
    """A long-lived producer shared by a whole process (created in the app's lifespan)."""

    def __init__(self, settings: CommonSettings, client_id: str) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=settings.kafka_enable_idempotence,
            linger_ms=settings.producer_linger_ms,
            request_timeout_ms=15_000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, key: str, envelope: EventEnvelope) -> RecordMetadata:
        """Send one event and wait until the broker acknowledged it (acks=all)."""
        return await self._producer.send_and_wait(
            self._settings.topic(topic),
            envelope.to_bytes(),
            key=key.encode(),
            headers=list(event_headers(envelope)),
        )

    async def send_records(self, records: Sequence[OutgoingRecord]) -> list[RecordMetadata]:
        """Send many records concurrently (the producer batches them) and wait for every ack."""
        futures = [
            await self._producer.send(r.topic, r.value, key=r.key, headers=list(r.headers)) for r in records
        ]
        return list(await asyncio.gather(*futures))

    async def check(self) -> None:
        """Raise if the broker cannot be reached (used by /health/ready)."""
        await self._producer.client.fetch_all_metadata()
