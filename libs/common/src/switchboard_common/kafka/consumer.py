"""The consumer runner: at-least-once, batched, with a dead-letter policy.

For each partition's batch it runs the handler for every record inside one database transaction, commits
it, and only then commits the Kafka offset. Failures follow an explicit policy:

* a record that cannot be decoded or validated (``PoisonEvent``) goes to ``<topic>.dlq`` at once;
* any other handler error rolls the batch back; the records are then replayed one transaction each, a
  failing one retried ``consumer_max_retries`` times with backoff, then dead-lettered — the rest of the
  partition keeps flowing;
* an infrastructure error (database or broker unreachable) dead-letters nothing: the partition is rewound
  to the batch's first offset and retried with backoff until the infrastructure is back.

Handlers must be idempotent: a crash between the database commit and the offset commit replays the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.database import Database
from switchboard_common.events import EventEnvelope, PoisonEvent
from switchboard_common.kafka.producer import EventPublisher, OutgoingRecord
from switchboard_common.logging import correlation_id
from switchboard_common.observability import BATCH_SECONDS, CONSUMER_LAG, EVENTS_CONSUMED
from switchboard_common.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, EventEnvelope], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, Sequence[EventEnvelope]], Awaitable[None]]


def per_event(handler: Handler) -> BatchHandler:
    """Adapt a one-event handler; each event runs with its correlation id in the logging context."""

    async def handle(session: AsyncSession, envelopes: Sequence[EventEnvelope]) -> None:
        for envelope in envelopes:
            token = correlation_id.set(envelope.correlation_id)
            try:
                await handler(session, envelope)
            finally:
                correlation_id.reset(token)

    return handle


class TransientError(Exception):
    """Raise from a handler when the failure is about the environment, not the record."""


_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
    KafkaError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _TRANSIENT)


class ConsumerRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        publisher: EventPublisher,
        group_id: str,
        topics: Sequence[str],
        handler: BatchHandler,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self._db = db
        self._publisher = publisher
        self._topics = [settings.topic(t) for t in topics]
        self._handler = handler
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._next_offsets: dict[TopicPartition, int] = {}
        self._started = False

    async def start(self) -> None:
        """Start consuming in the background. Joining the group takes seconds on some brokers; the
        service's HTTP side does not wait for it (``running`` turns true, and /health/ready green, once
        joined)."""
        self._task = asyncio.create_task(self._main(), name=f"consumer-{self.group_id}")

    @property
    def running(self) -> bool:
        return self._started and self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish the batch in flight, commit it, and leave the group (partitions move at once)."""
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
            for tp, records in batches.items():
                if not records:
                    continue
                started = time.perf_counter()
                try:
                    await self._process(records)
                except Exception as exc:
                    # Nothing of this batch is acknowledged: rewind and try again after a pause.
                    log.warning(
                        "batch failed, retrying",
                        exc_info=not is_transient(exc),
                        extra={
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "offset": records[0].offset,
                            "error": repr(exc),
                            "retry_in_s": backoff,
                        },
                    )
                    consumer.seek(tp, records[0].offset)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = self._base_backoff()
                await self._commit(tp, records[-1].offset + 1)
                BATCH_SECONDS.labels(self.group_id).observe(time.perf_counter() - started)
            self._record_lag()

    async def _process(self, records: list[ConsumerRecord]) -> None:
        decoded: list[tuple[ConsumerRecord, EventEnvelope]] = []
        dead: list[tuple[ConsumerRecord, str]] = []
        for record in records:
            try:
                decoded.append((record, EventEnvelope.from_bytes(record.value)))
            except PoisonEvent as exc:
                dead.append((record, str(exc)))
        try:
            async with self._db.unit_of_work() as session:
                await self._handler(session, [envelope for _, envelope in decoded])
        except Exception as exc:
            if is_transient(exc):
                raise
            # Isolate the record that fails: one transaction per record from here on.
            for record, envelope in decoded:
                error = await self._process_alone(record, envelope)
                if error is not None:
                    dead.append((record, error))
        if dead:
            await self._dead_letter(dead)
        group, topic = self.group_id, records[0].topic
        EVENTS_CONSUMED.labels(group, topic, "ok").inc(len(records) - len(dead))
        if dead:
            EVENTS_CONSUMED.labels(group, topic, "dead_lettered").inc(len(dead))

    async def _process_alone(self, record: ConsumerRecord, envelope: EventEnvelope) -> str | None:
        """Handle one record in its own transaction; returns the error when it must be dead-lettered."""
        attempts = self.settings.consumer_max_retries + 1
        for attempt in range(attempts):
            try:
                async with self._db.unit_of_work() as session:
                    await self._handler(session, [envelope])
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
                        "event_id": str(envelope.event_id),
                        "attempt": attempt + 1,
                        "of": attempts,
                    },
                )
                if attempt + 1 == attempts:
                    return f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(self._base_backoff() * 2**attempt)
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

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        self._next_offsets[tp] = offset
        try:
            await self._consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partition away; its new owner replays from the last commit and the
            # handlers are idempotent, so this loses nothing.
            log.warning(
                "offset commit lost to a rebalance",
                extra={"topic": tp.topic, "partition": tp.partition, "error": repr(exc)},
            )

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
