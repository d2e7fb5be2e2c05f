"""The assignment watcher: when is each message's conversation seen assigned?

It reads ``conversation.events`` (``conversation.message_added`` links a message id to its conversation) and
``routing.events`` (``conversation.assigned``) from the beginning, with a short fetch wait so that it adds
at most a few milliseconds to what it measures: the embedded broker may hold a fetch for up to its wait even
when data arrived (measured with a 100 ms wait: a record waited 13 ms median, up to 49 ms). Event types are
read from the record headers; only the two events it needs are decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from switchboard_common import topics

MESSAGE_ID_NAMESPACE = uuid.UUID("5b1c2f0e-8d7a-4c3e-9f61-2a4b8e0d7c15")
_ASSIGNED = b"conversation.assigned"
_MESSAGE_ADDED = b"conversation.message_added"


def message_id_for(external_id: str, channel: str = "api") -> str:
    """Ingest's id for a channel's message (see switchboard_ingest.messages.service.message_id_for)."""
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{channel}:{external_id}"))


class AssignmentWatcher:
    def __init__(self, bootstrap: str, topic_prefix: str, fetch_max_wait_ms: int = 5) -> None:
        self.bootstrap = bootstrap
        self.names = [f"{topic_prefix}{topics.CONVERSATION_EVENTS}", f"{topic_prefix}{topics.ROUTING_EVENTS}"]
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.assigned_at: dict[str, float] = {}  # conversation id -> first time seen assigned
        self.conversation_of: dict[str, str] = {}  # message id -> conversation id
        self.message_assigned_at: dict[str, float] = {}  # message id -> its conversation's assignment time
        self._waiting: dict[str, list[str]] = {}  # conversation id -> messages not yet assigned
        self._partitions: list[TopicPartition] = []
        self.records = 0
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    def assigned(self, message_ids: Iterable[str]) -> int:
        return sum(1 for m in message_ids if m in self.message_assigned_at)

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            client_id="switchboard-bench-watcher",
        )
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [
                TopicPartition(name, p)
                for name in self.names
                for p in consumer.partitions_for_topic(name) or ()
            ]
            if not partitions:
                raise RuntimeError(f"topics {self.names} not found")
            consumer.assign(partitions)
            await consumer.seek_to_beginning()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._partitions = partitions
        self._task = asyncio.create_task(self._run(consumer))

    def pause(self) -> None:
        """Stop fetching (to measure what the system burns idle without the watcher's polling)."""
        if self._consumer is not None:
            self._consumer.pause(*self._partitions)

    def resume(self) -> None:
        if self._consumer is not None:
            self._consumer.resume(*self._partitions)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.monotonic()
            for records in batches.values():
                self.records += len(records)
                for record in records:
                    kind = _event_type(record.headers)
                    if kind == _ASSIGNED:
                        self._on_assigned(json.loads(record.value)["payload"], now)
                    elif kind == _MESSAGE_ADDED:
                        self._on_message_added(json.loads(record.value)["payload"])
                    elif kind is None:  # no header: decode to find out
                        event = json.loads(record.value)
                        if event.get("type") == _ASSIGNED.decode():
                            self._on_assigned(event["payload"], now)
                        elif event.get("type") == _MESSAGE_ADDED.decode():
                            self._on_message_added(event["payload"])
            if batches:
                self.changed.set()

    def _on_assigned(self, payload: dict[str, str], now: float) -> None:
        conversation = str(payload["conversation_id"])
        if conversation in self.assigned_at:
            return
        self.assigned_at[conversation] = now
        for message in self._waiting.pop(conversation, ()):
            self.message_assigned_at[message] = now

    def _on_message_added(self, payload: dict[str, str]) -> None:
        message = str(payload["message_id"])
        if message in self.conversation_of:
            return
        conversation = str(payload["conversation_id"])
        self.conversation_of[message] = conversation
        if (at := self.assigned_at.get(conversation)) is not None:
            self.message_assigned_at[message] = at
        else:
            self._waiting.setdefault(conversation, []).append(message)

    async def wait_assigned(
        self, message_ids: set[str], *, target: int, idle_timeout: float, deadline: float
    ) -> int:
        """Wait until ``target`` of ``message_ids`` are assigned, nothing new was assigned for
        ``idle_timeout`` s, or the monotonic ``deadline`` passed; returns how many are assigned."""
        last_count, last_change = -1, time.monotonic()
        while True:
            count = self.assigned(message_ids)
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            if count >= min(target, len(message_ids)) or now - last_change > idle_timeout or now > deadline:
                return count
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.2)


def _event_type(headers: Iterable[tuple[str, bytes]] | None) -> bytes | None:
    for key, value in headers or ():
        if key == "event_type":
            return value
    return None
