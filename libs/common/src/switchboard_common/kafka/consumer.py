"""The consumer runner: at-least-once, one database transaction and one offset commit per poll.

Each poll (up to ``consumer_max_batch`` records, across every partition it returned) is decoded once at the
edge into typed payloads and dispatched by payload type to batch handlers, all inside one database
transaction; the transaction commits, and only then are the offsets of every partition committed in one
request. Failures follow an explicit policy:

* a record that cannot be decoded or validated (``PoisonEvent``) goes to ``<topic>.dlq`` at once;
* any other handler error rolls the poll back; its records are then replayed one transaction each, a
  failing one retried ``consumer_max_retries`` times with backoff, then dead-lettered, and the good records
  commit;
* an infrastructure error (database or broker unreachable, ``Unavailable``) dead-letters nothing: every
  partition of the poll is rewound and retried with backoff until the infrastructure is back.

Handlers must be idempotent: a crash between the database commit and the offset commit replays the poll.

Order: records of one key keep their order. Handlers run in the order of the mapping they were given (list
them in causal order, e.g. opened before resolved); when a key meets a type whose handler ran earlier in
that order (opened, resolved, opened again in one poll), the poll is cut there into consecutive segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.database import Database, database_unavailable
from switchboard_common.errors import Unavailable
from switchboard_common.events import EventEnvelope, Payload, PoisonEvent
from switchboard_common.kafka.producer import EventPublisher, OutgoingRecord
from switchboard_common.logging import correlation_id
from switchboard_common.observability import BATCH_RECORDS, BATCH_SECONDS, CONSUMER_LAG, EVENTS_CONSUMED
from switchboard_common.settings import CommonSettings

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Payload)


@dataclass(frozen=True, slots=True)
class Delivery(Generic[P]):
    """One consumed event: its envelope (ids, correlation), its typed payload, and where it was read."""

    envelope: EventEnvelope
    payload: P
    topic: str
    partition: int
    offset: int


BatchHandler = Callable[[AsyncSession, Sequence[Delivery[Any]]], Awaitable[None]]
Handlers = Mapping[type[Payload], BatchHandler]


def topics_of(handlers: Handlers) -> list[str]:
    """The logical topics carrying the handled types: a consumer subscribes to nothing else."""
    return sorted({payload_type.topic for payload_type in handlers})


def segments(
    deliveries: Sequence[tuple[ConsumerRecord, Delivery[Any]]], phase_of: Mapping[type[Payload], int]
) -> list[list[tuple[ConsumerRecord, Delivery[Any]]]]:
    """Cut a poll where running handlers in phase order would reorder one key's events."""
    out: list[list[tuple[ConsumerRecord, Delivery[Any]]]] = [[]]
    latest: dict[bytes | None, int] = {}
    for record, delivery in deliveries:
        phase = phase_of[type(delivery.payload)]
        if latest.get(record.key, -1) > phase:
            out.append([])
            latest = {}
        latest[record.key] = max(phase, latest.get(record.key, -1))
        out[-1].append((record, delivery))
    return [segment for segment in out if segment]


class TransientError(Exception):
    """Raise from a handler when the failure is about the environment, not the record."""


def is_transient(exc: BaseException) -> bool:
    """A failure of the environment, not of the record: rewind and retry, never dead-letter."""
    return isinstance(exc, TransientError | Unavailable | TimeoutError | KafkaError) or database_unavailable(
        exc
    )


Decoded = tuple[ConsumerRecord, Delivery[Any]]


class ConsumerRunner:
    def __init__(
        self,
        *,
        settings: CommonSettings,
        db: Database,
        publisher: EventPublisher,
        group_id: str,
        handlers: Handlers,
    ) -> None:
        if not handlers:
            raise ValueError("a consumer needs at least one handler")
        self.settings = settings
        self.group_id = group_id
        self._db = db
        self._publisher = publisher
        self._handlers = dict(handlers)
        self._topics = [settings.topic(t) for t in topics_of(handlers)]
        # A handler's phase is the position of its first type in the mapping; types sharing a handler
        # share its phase, so the handler sees all of them in one call.
        first: dict[BatchHandler, int] = {}
        self._phase_of = {t: first.setdefault(h, len(first)) for t, h in self._handlers.items()}
        self._phase_handlers = list(first)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._next_offsets: dict[TopicPartition, int] = {}
        self._started = False

    @property
    def topics(self) -> list[str]:
        """The physical topics this consumer subscribes to."""
        return list(self._topics)

    async def start(self) -> None:
        """Start consuming in the background. Joining the group takes seconds on some brokers; the
        service's HTTP side does not wait for it (``running`` turns true, and /health/ready green, once
        joined)."""
        self._task = asyncio.create_task(self._main(), name=f"consumer-{self.group_id}")

    @property
    def running(self) -> bool:
        return self._started and self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish the poll in flight, commit it, and leave the group (partitions move at once)."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _main(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                *self._topics,
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=self.group_id,
                client_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_bytes=self.settings.consumer_fetch_max_bytes,
                fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
                max_poll_interval_ms=self.settings.consumer_max_poll_interval_ms,
                # Bounds what is buffered per partition under backlog, together with max_records.
                max_partition_fetch_bytes=min(1024 * 1024, self.settings.consumer_fetch_max_bytes),
            )
            try:
                await consumer.start()
            except KafkaError as exc:
                log.warning("consumer cannot start", extra={"error": repr(exc), "retry_in_s": backoff})
                await consumer.stop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self._consumer = consumer
            self._started = True
            try:
                await self._run()
            finally:
                await consumer.stop()
            return

    def total_lag(self) -> int:
        if self._consumer is None:
            return 0
        lag = 0
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and tp in self._next_offsets:
                lag += max(0, highwater - self._next_offsets[tp])
        return lag

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        backoff = self._base_backoff()
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=self.settings.consumer_max_batch)
            polled = {tp: records for tp, records in batches.items() if records}
            if polled:
                started = time.perf_counter()
                try:
                    await self.process([r for records in polled.values() for r in records])
                except Exception as exc:
                    # Nothing of this poll is acknowledged: rewind every partition and try again later.
                    log.warning(
                        "poll failed, retrying",
                        exc_info=not is_transient(exc),
                        extra={
                            "partitions": {
                                f"{tp.topic}/{tp.partition}": r[0].offset for tp, r in polled.items()
                            },
                            "error": repr(exc),
                            "retry_in_s": backoff,
                        },
                    )
                    for tp, records in polled.items():
                        consumer.seek(tp, records[0].offset)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = self._base_backoff()
                await self._commit({tp: records[-1].offset + 1 for tp, records in polled.items()})
                BATCH_SECONDS.labels(self.group_id).observe(time.perf_counter() - started)
                BATCH_RECORDS.labels(self.group_id).observe(sum(len(r) for r in polled.values()))
            self._record_lag()

    def _decode(
        self, records: Sequence[ConsumerRecord]
    ) -> tuple[list[Decoded], list[tuple[ConsumerRecord, str]]]:
        decoded: list[Decoded] = []
        dead: list[tuple[ConsumerRecord, str]] = []
        for record in records:
            try:
                envelope = EventEnvelope.from_bytes(record.value)
                payload = envelope.parse()
            except PoisonEvent as exc:
                dead.append((record, str(exc)))
                continue
            if type(payload) in self._handlers:
                delivery = Delivery(envelope, payload, record.topic, record.partition, record.offset)
                decoded.append((record, delivery))
            # else: a known event this consumer has no use for (it shares a topic with ones it handles).
        return decoded, dead

    async def _dispatch(self, session: AsyncSession, decoded: Sequence[Decoded]) -> None:
        for segment in segments(decoded, self._phase_of):
            by_phase: list[list[Delivery[Any]]] = [[] for _ in self._phase_handlers]
            for _, delivery in segment:
                by_phase[self._phase_of[type(delivery.payload)]].append(delivery)
            for handler, deliveries in zip(self._phase_handlers, by_phase, strict=True):
                if deliveries:
                    await handler(session, deliveries)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        """Handle one poll: one transaction for all of it, or, if a record fails, one per record.

        Raises only transient errors (nothing of the poll may be committed then); returns once every record
        is either handled or dead-lettered.
        """
        decoded, dead = self._decode(records)
        if decoded:
            try:
                async with self._db.unit_of_work() as session:
                    await self._dispatch(session, decoded)
            except Exception as exc:
                if is_transient(exc):
                    raise
                # Isolate the record that fails: one transaction per record from here on.
                for item in decoded:
                    error = await self._process_alone(item)
                    if error is not None:
                        dead.append((item[0], error))
        if dead:
            await self._dead_letter(dead)
        per_topic = Counter(r.topic for r in records)
        dead_per_topic = Counter(r.topic for r, _ in dead)
        for topic, n in per_topic.items():
            EVENTS_CONSUMED.labels(self.group_id, topic, "ok").inc(n - dead_per_topic[topic])
        for topic, n in dead_per_topic.items():
            EVENTS_CONSUMED.labels(self.group_id, topic, "dead_lettered").inc(n)

    async def _process_alone(self, item: Decoded) -> str | None:
        """Handle one record in its own transaction; returns the error when it must be dead-lettered."""
        record, delivery = item
        attempts = self.settings.consumer_max_retries + 1
        token = correlation_id.set(delivery.envelope.correlation_id)
        try:
            for attempt in range(attempts):
                try:
                    async with self._db.unit_of_work() as session:
                        await self._dispatch(session, [item])
                    return None
                except PoisonEvent as exc:
                    return str(exc)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    log.warning(
                        "handler failed",
                        exc_info=True,
                        extra={
                            "topic": record.topic,
                            "partition": record.partition,
                            "offset": record.offset,
                            "event_id": str(delivery.envelope.event_id),
                            "attempt": attempt + 1,
                            "of": attempts,
                        },
                    )
                    if attempt + 1 == attempts:
                        return f"{type(exc).__name__}: {exc}"
                    await asyncio.sleep(self._base_backoff() * 2**attempt)
        finally:
            correlation_id.reset(token)
        return None  # unreachable: the loop returns on its last attempt

    async def _dead_letter(self, dead: list[tuple[ConsumerRecord, str]]) -> None:
        failed_at = datetime.now(UTC).isoformat()
        out = []
        for record, error in dead:
            log.error(
                "dead-lettering record",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "error": error,
                },
            )
            headers = (
                *(record.headers or ()),
                ("dlq.error", error[:1000].encode()),
                ("dlq.original_topic", record.topic.encode()),
                ("dlq.original_partition", str(record.partition).encode()),
                ("dlq.original_offset", str(record.offset).encode()),
                ("dlq.consumer_group", self.group_id.encode()),
                ("dlq.failed_at", failed_at.encode()),
            )
            out.append(OutgoingRecord(topics.dlq(record.topic), record.key, record.value or b"", headers))
        # Waits for acks=all: the offset is committed only after the DLQ holds the record.
        await self._publisher.send_records(out)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        self._next_offsets.update(offsets)
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took partitions away; their new owner replays from the last commit and the
            # handlers are idempotent, so this loses nothing.
            log.warning("offset commit lost to a rebalance", extra={"error": repr(exc)})

    def _record_lag(self) -> None:
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and tp in self._next_offsets:
                CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(
                    max(0, highwater - self._next_offsets[tp])
                )

    def _base_backoff(self) -> float:
        return max(self.settings.consumer_retry_backoff_ms / 1000, 0.01)
