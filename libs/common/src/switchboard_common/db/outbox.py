"""Transactional outbox: events are written in the same transaction as the change they describe, and a
relay publishes them after the commit.

The relay deletes rows only after the broker acknowledged them, so a crash between the two re-publishes
(at-least-once); consumers are idempotent on event id or a natural key. Only one relay per service runs at a
time (a PostgreSQL advisory lock), which keeps events of one key in the order they were committed even with
several replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.database import Database, after_commit
from switchboard_common.events import EventEnvelope
from switchboard_common.kafka.producer import EventPublisher, OutgoingRecord, event_headers
from switchboard_common.observability import OUTBOX_PUBLISHED
from switchboard_common.settings import Settings

log = logging.getLogger(__name__)


def outbox_columns() -> list[sa.Column[Any]]:
    """The outbox table's columns; shared by the models and the migrations of every service."""
    return [
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def define_outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table("outbox", metadata, *outbox_columns())


class Outbox:
    """Writes events into a service's outbox table and wakes the relay after the commit."""

    def __init__(self, table: sa.Table, settings: Settings) -> None:
        self.table = table
        self._settings = settings
        self._wakeup = asyncio.Event()

    async def add(self, session: AsyncSession, topic: str, key: str, envelope: EventEnvelope) -> None:
        await self.add_many(session, [(topic, key, envelope)])

    async def add_many(self, session: AsyncSession, events: list[tuple[str, str, EventEnvelope]]) -> None:
        if not events:
            return
        await session.execute(
            self.table.insert(),
            [
                {
                    "topic": self._settings.topic(topic),
                    "key": key,
                    "value": envelope.to_bytes(),
                    "headers": {k: v.decode() for k, v in event_headers(envelope)},
                }
                for topic, key, envelope in events
            ],
        )
        after_commit(session, self._wakeup.set)

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()


class OutboxRelay:
    def __init__(self, db: Database, outbox: Outbox, publisher: EventPublisher, settings: Settings) -> None:
        self._db = db
        self._outbox = outbox
        self._publisher = publisher
        self._settings = settings
        table = outbox.table
        # One advisory lock per outbox table, so services sharing a database never block each other.
        self._lock_key = zlib.crc32(f"switchboard.outbox.{table.schema}.{table.name}".encode())
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events left (0 when empty or another replica relays)."""
        table = self._outbox.table
        async with self._db.unit_of_work() as session:
            locked = await session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(self._lock_key)))
            if not locked:
                return 0
            rows = (
                await session.execute(
                    sa.select(table).order_by(table.c.id).limit(self._settings.outbox_batch_size)
                )
            ).all()
            if not rows:
                return 0
            await self._publisher.send_records(
                [
                    OutgoingRecord(
                        r.topic, r.key.encode(), r.value, tuple((k, v.encode()) for k, v in r.headers.items())
                    )
                    for r in rows
                ]
            )
            # By id, not by range: a row committed after the SELECT must not be deleted unpublished.
            await session.execute(sa.delete(table).where(table.c.id.in_([r.id for r in rows])))
        OUTBOX_PUBLISHED.labels(table.schema or "").inc(len(rows))
        return len(rows)

    async def run(self) -> None:
        interval = self._settings.outbox_poll_interval_ms / 1000
        backoff = interval
        while not self._stopping.is_set():
            try:
                while await self.relay_once() >= self._settings.outbox_batch_size:
                    pass  # a full batch: there may be more right away
                backoff = interval
            except Exception:
                # The broker or the database is unavailable; the rows stay and are retried.
                log.exception("outbox relay failed, retrying", extra={"retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            await self._outbox.wait_for_work(interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish the batch in flight, then stop."""
        self._stopping.set()
        self._outbox._wakeup.set()
        if self._task is not None:
            await self._task
