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

Progress is watched, not assumed (``ProgressTracker``, judged by ``/health/ready`` and the
``switchboard_consumer_*`` gauges): records waiting on a partition whose position does not move, offset
commits failing, or a position beyond the end of its log all report the consumer stalled. The last one
means the log was lost or recreated (a broker that keeps its log in memory, a topic deleted and created
again): Kafka answers such a fetch with OffsetOutOfRange and aiokafka resets by itself, but the embedded
broker answers with no records, so the runner resets the partition itself, to the beginning of the new
log (see ``_reset_beyond_log_end``).

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
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.database import Database, database_unavailable
from switchboard_common.errors import Unavailable
from switchboard_common.events import EventEnvelope, Payload, PoisonEvent
from switchboard_common.instrumentation import (
    CONSUMER_COMMIT_FAILURES,
    CONSUMER_LAST_COMMIT,
    CONSUMER_STALLED,
    CONSUMER_UNMOVED_SECONDS,
    STALL_REASONS,
)
from switchboard_common.kafka.producer import EventPublisher, OutgoingRecord
from switchboard_common.logging import correlation_id
from switchboard_common.observability import (
    BATCH_RECORDS,
    BATCH_SECONDS,
    CONSUMER_LAG,
    DLQ_RECORDS,
    EVENTS_CONSUMED,
)
from switchboard_common.settings import CommonSettings

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Payload)

# A commit or an offset lookup normally takes milliseconds. aiokafka retries some failed commits forever
# (UnknownTopicOrPartition while a lost topic is not recreated yet): bound them, so the loop goes on and
# the failure is counted and reported instead of hanging unseen.
_BROKER_CALL_TIMEOUT_S = 10.0
# How often offsets that failed to commit are retried while no new poll carries them.
_COMMIT_RETRY_INTERVAL_S = 1.0


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


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """The last observation of one partition."""

    position: int  # the offset of the next record the consumer reads
    log_end: int  # the partition's end (highwater) as of the consumer's last fetch
    unmoved_since: float  # since when records have waited on this position (monotonic seconds)

    @property
    def lag(self) -> int:
        return max(0, self.log_end - self.position)

    @property
    def beyond_log_end(self) -> bool:
        # A log's end never moves back: a position past it belongs to a log that was lost or recreated.
        return self.position > self.log_end


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """Is the consumer getting anywhere? What ``/health/ready`` and the stall gauges show."""

    lag: int
    beyond_log_end: dict[TopicPartition, PartitionProgress]
    # Partitions whose records have waited at least the stall threshold, and for how long (seconds).
    stalled: dict[TopicPartition, float]
    # Longest time any partition has had records waiting while its position did not move (seconds).
    unmoved_for: float
    poll_running_for: float | None  # how long the poll being handled has taken (seconds); None if idle
    commit_failures: int  # in a row
    commit_failing_for: float | None  # since the first of them (seconds); None while commits succeed
    since_commit: float | None  # since the last successful commit (seconds); None before the first
    commit_stalled: bool
    poll_stalled: bool

    @property
    def problems(self) -> list[str]:
        out = []
        if self.beyond_log_end:
            out.append("position beyond log end")
        if self.stalled:
            out.append("no progress while records wait")
        if self.poll_stalled:
            out.append("poll running too long")
        if self.commit_stalled:
            out.append("offset commits failing")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ProgressTracker:
    """What a consumer observed of its partitions and offset commits, judged against ``stall_after``.

    The caller passes the time (monotonic seconds), so the judgement is a pure function of the
    observations. Observe a partition only where its position means "what was handled": after a poll
    committed, or after it failed and was rewound; a probe in the middle of a poll would see the position
    of records not handled yet.
    """

    stall_after: float
    partitions: dict[TopicPartition, PartitionProgress] = field(default_factory=dict)
    # A poll being handled is not observed until it ends: a handler or database that hangs shows here.
    poll_running_since: float | None = None
    commit_failures: int = 0
    commit_failing_since: float | None = None
    last_commit_at: float | None = None

    def observe(self, tp: TopicPartition, position: int, log_end: int, now: float) -> PartitionProgress:
        before = self.partitions.get(tp)
        # Waiting counts from the first observation that saw records waiting on an unmoved position.
        still = before is not None and before.lag > 0 and before.position == position and log_end > position
        since = before.unmoved_since if before is not None and still else now
        self.partitions[tp] = observed = PartitionProgress(position, log_end, since)
        return observed

    def poll_started(self, now: float) -> None:
        self.poll_running_since = now

    def poll_ended(self) -> None:
        self.poll_running_since = None

    def retain(self, assigned: Collection[TopicPartition]) -> None:
        """Forget the partitions the consumer no longer owns (a rebalance moved them)."""
        for tp in [tp for tp in self.partitions if tp not in assigned]:
            del self.partitions[tp]

    def commit_succeeded(self, now: float) -> None:
        self.commit_failures = 0
        self.commit_failing_since = None
        self.last_commit_at = now

    def commit_failed(self, now: float) -> None:
        self.commit_failures += 1
        if self.commit_failing_since is None:
            self.commit_failing_since = now

    def commit_abandoned(self) -> None:
        """Nothing is left to commit (a rebalance gave the partitions to another consumer, which replays
        from the last commit): past failures no longer hold anything back."""
        self.commit_failures = 0
        self.commit_failing_since = None

    def report(self, now: float) -> ProgressReport:
        unmoved = {tp: now - p.unmoved_since for tp, p in self.partitions.items() if p.lag > 0}
        failing_for = None if self.commit_failing_since is None else now - self.commit_failing_since
        running_for = None if self.poll_running_since is None else now - self.poll_running_since
        return ProgressReport(
            lag=sum(p.lag for p in self.partitions.values()),
            beyond_log_end={tp: p for tp, p in self.partitions.items() if p.beyond_log_end},
            stalled={tp: s for tp, s in unmoved.items() if s >= self.stall_after},
            unmoved_for=max([*unmoved.values(), running_for or 0.0]),
            poll_running_for=running_for,
            commit_failures=self.commit_failures,
            commit_failing_for=failing_for,
            since_commit=None if self.last_commit_at is None else now - self.last_commit_at,
            commit_stalled=failing_for is not None and failing_for >= self.stall_after,
            poll_stalled=running_for is not None and running_for >= self.stall_after,
        )


def _fetch_state(consumer: AIOKafkaConsumer, tp: TopicPartition) -> tuple[int | None, int | None]:
    """aiokafka's position (next offset to read) and highwater of an assigned partition, without waiting.

    ``AIOKafkaConsumer.position`` waits until a position is known, forever while the broker is away; this
    reads the partition state aiokafka keeps (the one ``highwater`` reads) instead.
    """
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    state = assignment.state_value(tp) if assignment is not None else None
    if state is None:
        return None, None
    return (state.position if state.has_valid_position else None), state.highwater


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
        self._started = False
        # Offsets handled (their transaction committed) but not committed to the group yet.
        self._pending: dict[TopicPartition, int] = {}
        self._last_commit_attempt = 0.0
        self._progress = ProgressTracker(settings.consumer_stall_seconds)
        # Partitions whose lag this process exports: one a rebalance took away leaves /metrics, or its last
        # lag would linger there beside the new owner's.
        self._lag_series: set[TopicPartition] = set()

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
        """Finish the poll in flight and commit it (a record-by-record replay is cut short instead, and
        left uncommitted for the next owner), then leave the group (partitions move at once)."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _main(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                *self._topics,
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=self.settings.group(self.group_id),
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

    def progress(self) -> ProgressReport:
        """Judge the consumer's progress now, and refresh the lag and stall gauges with it (called by
        ``/metrics`` and ``/health/ready``; the poll loop only records observations)."""
        report = self._progress.report(time.monotonic())
        held = set(self._progress.partitions)
        for tp, observed in self._progress.partitions.items():
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(observed.lag)
        for tp in self._lag_series - held:
            CONSUMER_LAG.remove(self.group_id, tp.topic, str(tp.partition))
        self._lag_series = held
        stalled_by_reason = {
            "beyond_log_end": bool(report.beyond_log_end),
            "no_progress": bool(report.stalled) or report.poll_stalled,
            "commit_failing": report.commit_stalled,
        }
        for reason in STALL_REASONS:
            CONSUMER_STALLED.labels(self.group_id, reason).set(int(stalled_by_reason[reason]))
        CONSUMER_UNMOVED_SECONDS.labels(self.group_id).set(report.unmoved_for)
        CONSUMER_COMMIT_FAILURES.labels(self.group_id).set(report.commit_failures)
        return report

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        backoff = self._base_backoff()
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=self.settings.consumer_max_batch)
            polled = {tp: records for tp, records in batches.items() if records}
            retry_due = time.monotonic() - self._last_commit_attempt >= _COMMIT_RETRY_INTERVAL_S
            if not polled and self._pending and retry_due:
                await self._commit({})
            if polled:
                started = time.perf_counter()
                self._progress.poll_started(time.monotonic())
                try:
                    await self.process([r for records in polled.values() for r in records])
                except Exception as exc:
                    self._progress.poll_ended()
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
                    # Observed at the rewound position: a poll that keeps failing leaves it unmoved.
                    self._observe()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                self._progress.poll_ended()
                backoff = self._base_backoff()
                await self._commit({tp: records[-1].offset + 1 for tp, records in polled.items()})
                BATCH_SECONDS.labels(self.group_id).observe(time.perf_counter() - started)
                BATCH_RECORDS.labels(self.group_id).observe(sum(len(r) for r in polled.values()))
            beyond = self._observe()
            if beyond:
                await self._reset_beyond_log_end(beyond)

    def _observe(self) -> dict[TopicPartition, int]:
        """Record each assigned partition's position and log end; returns the positions found beyond it."""
        assert self._consumer is not None
        now = time.monotonic()
        assigned = self._consumer.assignment()
        self._progress.retain(assigned)
        beyond: dict[TopicPartition, int] = {}
        for tp in assigned:
            position, log_end = _fetch_state(self._consumer, tp)
            if position is None or log_end is None:
                continue  # not fetched yet since it was assigned or reset
            if self._progress.observe(tp, position, log_end, now).beyond_log_end:
                beyond[tp] = position
        return beyond

    async def _reset_beyond_log_end(self, suspects: Mapping[TopicPartition, int]) -> None:
        """Re-read from its beginning each partition whose position lies beyond the end of its log.

        A log end never moves back, so such a position was read on a log that is gone: the broker lost it
        (the embedded broker keeps logs in memory) or the topic was deleted and created again, and an old
        offset came back (a commit aiokafka retried until the topic existed again, or a poll rewound
        across the loss). Every record of the new log was written after the loss and none has been handled
        here, so the beginning of the log is exactly the first unread record: with at-least-once delivery
        and idempotent handlers, re-reading from it loses nothing. Seeking to the end (auto_offset_reset
        "latest") would skip every record written since the broker came back, acknowledged ones included;
        the runner's auto_offset_reset is "earliest" for the same reason. A handler that keeps offsets of its
        own must treat those beyond the new log's end as belonging to the lost log.
        """
        assert self._consumer is not None
        consumer = self._consumer
        try:
            # Confirmed with the broker: the highwater is from the last fetch and may lag behind.
            ends = await asyncio.wait_for(consumer.end_offsets(list(suspects)), _BROKER_CALL_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            log.warning("cannot read the log end to check positions", extra={"error": repr(exc)})
            return
        beyond = {tp: position for tp, position in suspects.items() if tp in ends and position > ends[tp]}
        for tp, position in sorted(beyond.items()):
            log.error(
                "consumer position beyond the end of the log (the log was lost or recreated): "
                "re-reading the partition from its beginning",
                extra={
                    "group": self.group_id,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "position": position,
                    "log_end": ends[tp],
                },
            )
        if not beyond:
            return
        # Offsets of the old log, not committed yet, mean nothing on the new one.
        for tp in beyond:
            self._pending.pop(tp, None)
        try:
            reset = await consumer.seek_to_beginning(*beyond)
        except (KafkaError, IllegalStateError) as exc:
            log.warning("cannot reset positions beyond the log end", extra={"error": repr(exc)})
            return
        if not reset:
            return  # timed out or the partitions moved away: observed again after the next poll
        positions = {tp: p for tp in beyond if (p := _fetch_state(consumer, tp)[0]) is not None}
        # Commit the new start at once, so the group's committed offset is no longer beyond the end either.
        await self._commit(positions)
        self._observe()

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
                    if self._stopping.is_set():
                        # Replaying a whole poll alone can take minutes; a shutdown must not wait for it
                        # (an orchestrator kills after ~30 s). Nothing is committed, so the next owner
                        # replays the rest, and the records handled alone so far are skipped as repeats.
                        raise TransientError("stopping: the next owner replays the rest") from exc
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
        for topic, n in Counter(record.topic for record, _ in dead).items():
            DLQ_RECORDS.labels(self.group_id, topic).inc(n)

    async def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` with any that failed to commit before (a later offset replaces an earlier)."""
        assert self._consumer is not None
        self._pending.update(offsets)
        assigned = self._consumer.assignment()
        # Partitions a rebalance took away are their new owner's to commit.
        self._pending = {tp: offset for tp, offset in self._pending.items() if tp in assigned}
        if not self._pending:
            return
        attempt = dict(self._pending)
        self._last_commit_attempt = time.monotonic()
        try:
            await asyncio.wait_for(self._consumer.commit(attempt), _BROKER_CALL_TIMEOUT_S)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took partitions away; their new owner replays from the last commit and the
            # handlers are idempotent, so this loses nothing.
            log.warning("offset commit lost to a rebalance", extra={"error": repr(exc)})
            self._pending.clear()
            self._progress.commit_abandoned()
        except (KafkaError, TimeoutError) as exc:
            # Kept and retried: with the next poll's commit, or on its own while no records come.
            self._progress.commit_failed(time.monotonic())
            log.warning(
                "offset commit failed, will retry",
                extra={
                    "group": self.group_id,
                    "partitions": {f"{tp.topic}/{tp.partition}": o for tp, o in sorted(attempt.items())},
                    "failures_in_a_row": self._progress.commit_failures,
                    "error": repr(exc),
                },
            )
        else:
            self._pending.clear()
            self._progress.commit_succeeded(time.monotonic())
            CONSUMER_LAST_COMMIT.labels(self.group_id).set_to_current_time()

    def _base_backoff(self) -> float:
        return max(self.settings.consumer_retry_backoff_ms / 1000, 0.01)
