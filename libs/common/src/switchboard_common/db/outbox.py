"""Transactional outbox: events are written in the same transaction as the change they describe, and a
relay publishes them after the commit.

* The insert is one statement of constant shape (``unnest`` over arrays), whatever the number of events,
  and it ``pg_notify``s the relay, so the event leaves within milliseconds of the commit even when another
  replica committed it (the notification is delivered on commit, never on rollback).
* One relay per outbox table runs at a time: it holds a session advisory lock on a dedicated connection
  that also LISTENs for commits. Events of one key therefore leave in commit order even with replicas. A
  replica whose relay is on standby tries to take the lock at every poll interval and after its own
  commits; when the leader's connection dies, PostgreSQL releases its lock.
* The relay holds no transaction open across the broker's acknowledgement: it reads a batch (autocommit),
  publishes it and waits for acks=all, then deletes exactly the acknowledged rows by id. A crash between
  the ack and the delete republishes them (at-least-once); consumers are idempotent. A row committed after
  the read is never deleted unpublished, because deletion is by id, not by range.
* What waits is measured at each scrape of ``/metrics`` (``observe_backlog``): the number of rows and the
  age of the oldest, read from the table, so every replica, leader or standby, reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from switchboard_common.db.database import Database, after_commit
from switchboard_common.db.sql import BIGINTS, BYTEAS, TEXTS, statement
from switchboard_common.events import EventEnvelope
from switchboard_common.kafka.producer import EventPublisher, OutgoingRecord, event_headers
from switchboard_common.observability import OUTBOX_BACKLOG, OUTBOX_OLDEST_SECONDS, OUTBOX_PUBLISHED
from switchboard_common.settings import CommonSettings

log = logging.getLogger(__name__)

OutboxEvent = tuple[str, str, EventEnvelope]  # (logical topic, key, envelope)


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

    def __init__(self, table: sa.Table, settings: CommonSettings) -> None:
        self.table = table
        self._settings = settings
        self._wakeup = asyncio.Event()
        name = f"{table.schema}.{table.name}" if table.schema else table.name
        self.channel = f"switchboard_outbox_{zlib.crc32(name.encode()):x}"
        self._insert = statement(
            f"""
            WITH inserted AS (
                INSERT INTO {name} (topic, key, value, headers)
                SELECT t, k, v, h::json FROM unnest(:topics, :keys, :values, :headers) AS u(t, k, v, h)
                RETURNING 1
            )
            SELECT pg_notify(:channel, '') FROM (SELECT count(*) FROM inserted) AS c
            """,  # noqa: S608 - the table name is ours, not input
            topics=TEXTS,
            keys=TEXTS,
            values=BYTEAS,
            headers=TEXTS,
            channel=sa.Text(),
        )

    async def add(self, session: AsyncSession, topic: str, key: str, envelope: EventEnvelope) -> None:
        await self.add_many(session, [(topic, key, envelope)])

    async def add_many(self, session: AsyncSession, events: list[OutboxEvent]) -> None:
        """Write ``events`` in one statement; the relay is woken when the session's transaction commits."""
        if not events:
            return
        await session.execute(
            self._insert,
            {
                "topics": [self._settings.topic(topic) for topic, _, _ in events],
                "keys": [key for _, key, _ in events],
                "values": [envelope.to_bytes() for _, _, envelope in events],
                "headers": [_headers_json(envelope) for _, _, envelope in events],
                "channel": self.channel,
            },
        )
        after_commit(session, self.wake)

    def wake(self) -> None:
        self._wakeup.set()

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()


def _headers_json(envelope: EventEnvelope) -> str:
    return json.dumps({k: v.decode() for k, v in event_headers(envelope)})


def relay_lock_key(table: sa.Table) -> int:
    """The advisory lock the leading relay of ``table`` holds: one per outbox table, so services sharing a
    database never block each other."""
    return zlib.crc32(f"switchboard.outbox.{table.schema}.{table.name}".encode())


class OutboxRelay:
    def __init__(
        self, db: Database, outbox: Outbox, publisher: EventPublisher, settings: CommonSettings
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._publisher = publisher
        self._settings = settings
        table = outbox.table
        self._lock_key = relay_lock_key(table)
        self._select = (
            sa.select(table.c.id, table.c.topic, table.c.key, table.c.value, table.c.headers)
            .order_by(table.c.id)
            .limit(sa.bindparam("limit", type_=sa.Integer))
        )
        name = f"{table.schema}.{table.name}" if table.schema else table.name
        self._delete = statement(f"DELETE FROM {name} WHERE id = ANY(:ids)", ids=BIGINTS)  # noqa: S608
        self.table_name = name
        # The database's clock on both sides: the age does not depend on this host's clock.
        self._backlog = sa.text(
            f"SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) "  # noqa: S608
            f"FROM {name}"
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.leader = False

    async def relay_once(self, conn: AsyncConnection) -> int:
        """Publish one batch over ``conn`` (autocommit); returns how many events left."""
        rows = (await conn.execute(self._select, {"limit": self._settings.outbox_batch_size})).all()
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
        await conn.execute(self._delete, {"ids": [r.id for r in rows]})
        OUTBOX_PUBLISHED.labels(self._outbox.table.schema or "").inc(len(rows))
        return len(rows)

    async def observe_backlog(self, timeout: float) -> None:  # noqa: ASYNC109
        """Set the backlog gauges from one query on a pooled connection, within ``timeout`` seconds.

        Called at every scrape: a slow or failing database must neither fail nor hold up the scrape, so a
        failure keeps the previous values (the relay's own errors are logged where they happen).
        """
        try:
            async with asyncio.timeout(timeout):
                async with self._db.engine.connect() as base:
                    # Autocommit: one round trip, no BEGIN/ROLLBACK around a read of one statement.
                    conn = await base.execution_options(isolation_level="AUTOCOMMIT")
                    count, oldest = (await conn.execute(self._backlog)).one()
        except Exception as exc:
            log.debug("outbox backlog not measured", extra={"table": self.table_name, "error": repr(exc)})
            return
        OUTBOX_BACKLOG.labels(self.table_name).set(count)
        OUTBOX_OLDEST_SECONDS.labels(self.table_name).set(max(0.0, float(oldest)))

    async def _lead(self, conn: AsyncConnection) -> None:
        """Wait for the relay lock, then publish until stopped. Only the leader LISTENs: a standby wakes
        on its own process's commits and at the poll interval, to try the lock."""
        interval = self._settings.outbox_poll_interval_ms / 1000
        while not self._stopping.is_set():
            if await conn.scalar(sa.select(sa.func.pg_try_advisory_lock(self._lock_key))):
                break
            await self._outbox.wait_for_work(interval)
        else:
            return
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.add_listener(self._outbox.channel, self._on_notify)
        self.leader = True
        while not self._stopping.is_set():
            if await self.relay_once(conn) < self._settings.outbox_batch_size:
                await self._outbox.wait_for_work(interval)

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            self.leader = False
            try:
                async with self._db.engine.connect() as base:
                    conn = await base.execution_options(isolation_level="AUTOCOMMIT")
                    try:
                        await self._lead(conn)
                    finally:
                        # The session lock and the LISTEN must not go back to the pool with the connection.
                        await conn.invalidate()
                backoff = 0.1
            except Exception:
                # The broker or the database is unavailable; the rows stay and are retried.
                log.exception("outbox relay failed, retrying", extra={"retry_in_s": backoff})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)

    def _on_notify(self, *_: object) -> None:
        self._outbox.wake()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish the batch in flight, then stop."""
        self._stopping.set()
        self._outbox.wake()
        if self._task is not None:
            await self._task
