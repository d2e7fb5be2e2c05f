"""Stored offsets that the log no longer has behind them.

The offsets in ``metrics.partition_offsets`` are only meaningful for the log they were read from. When a
topic is deleted and created again (the embedded broker of ``make run`` keeps its topics in memory, while
PostgreSQL keeps its data), its offsets start again at 0 and every stored offset would make the new
records look like records already counted. In Kafka a partition's end offset never moves back, and a
consumer reads only below it, so a stored offset beyond the end means the log was recreated (or truncated):
the row is forgotten before the consumer starts, and counting resumes from the group's committed offset.

Stored offsets are read before the end offsets, so a replica advancing them meanwhile never looks truncated.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from switchboard_common.db.database import Database
from switchboard_common.events import registered
from switchboard_common.settings import CommonSettings
from switchboard_metrics.kpis import repository
from switchboard_metrics.kpis.repository import Partition

log = logging.getLogger(__name__)

_TIMEOUT_S = 15.0


async def end_offsets(settings: CommonSettings, partitions: list[Partition]) -> dict[Partition, int]:
    """The end offset of each of ``partitions`` the broker knows (no group: nothing is joined)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="switchboard-metrics-offsets",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await consumer.topics()  # loads the metadata partitions_for_topic reads
        known = [
            TopicPartition(topic, partition)
            for topic, partition in partitions
            if partition in (consumer.partitions_for_topic(topic) or set())
        ]
        if not known:
            return {}
        ends = await consumer.end_offsets(known)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def forget_offsets_beyond_the_log(db: Database, settings: CommonSettings) -> None:
    """Forget the stored offsets of this deployment's topics that lie beyond their partition's end.

    Best effort: if the broker does not answer, the rows stay (and are checked again at the next start).
    """
    topics = sorted({settings.topic(payload_type.topic) for payload_type in registered()})
    async with db.unit_of_work() as session:
        stored = await repository.stored_offsets(session, topics)
    if not stored:
        return
    try:
        ends = await asyncio.wait_for(end_offsets(settings, sorted(stored)), _TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("cannot check stored offsets against the log", extra={"error": repr(exc)})
        return
    beyond = {p: end for p, end in ends.items() if stored[p] > end}
    if not beyond:
        return
    async with db.unit_of_work() as session:
        forgotten = await repository.forget_offsets_beyond(session, beyond)
    if forgotten:
        log.warning(
            "topics were recreated: forgot the offsets stored beyond their end",
            extra={
                "partitions": {
                    f"{t}/{p}": {"stored": n, "end": ends[(t, p)]} for (t, p), n in sorted(forgotten.items())
                }
            },
        )
