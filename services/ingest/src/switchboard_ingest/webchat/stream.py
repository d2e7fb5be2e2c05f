"""Fan-out of agents' replies to visitors' streams.

One ``WebchatHub`` per process LISTENs on one dedicated connection and wakes the streams of the identity a
notification names; a stream then reads its rows after the last id it sent with a short pooled query. No
stream holds a connection while it waits, however many visitors are connected. The sender wakes streams in
this process directly after its commit; NOTIFY wakes the other replicas' (and this one's, a harmless second
time). While the LISTEN connection is down, streams poll, and when it comes back every stream looks once,
so a reply committed in between is never left waiting.

Resuming is by event id: a row's ``seq``. One identity's rows commit in seq order (see
``repository.record_reply``), so "every row after the last id received" misses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sse_starlette import ServerSentEvent

from switchboard_common.db.database import Database, database_unavailable
from switchboard_ingest.webchat import repository
from switchboard_ingest.webchat.repository import NOTIFY_CHANNEL, StreamEvent

log = logging.getLogger(__name__)

# Rows read per query; a stream further behind reads again at once.
BATCH = 100
# What an EventSource waits before reconnecting after the connection drops (sent as the stream's retry:).
RECONNECT_MS = 2000


class WebchatHub:
    """A background job (``start`` / ``stop``) that tells streams when their identity has new replies."""

    def __init__(
        self,
        db: Database,
        *,
        idle_poll_s: float = 30.0,
        fallback_poll_s: float = 1.0,
        keepalive_s: float = 30.0,
        connections: int = 2,
    ) -> None:
        self._db = db
        # Even while listening, a stream looks now and then: cheap insurance against a lost notification.
        self._idle_poll_s = idle_poll_s
        self._fallback_poll_s = fallback_poll_s
        self._keepalive_s = keepalive_s
        # Web chat's share of ingest's pool (which has no overflow): its reads and writes (streams woken
        # together, sessions, the sender's concurrent sends) queue here rather than in the pool, where they
        # would make the group commit wait for a connection.
        self._slots = asyncio.Semaphore(connections)
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listening = False

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._listen(), name="webchat-listener")

    async def stop(self) -> None:
        """Stop listening and end every stream (their clients reconnect, to this or another replica)."""
        self._stopping.set()
        self._wake_all()
        if self._task is not None:
            await self._task
            self._task = None

    async def _listen(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                async with self._db.engine.connect() as base:
                    conn = await base.execution_options(isolation_level="AUTOCOMMIT")
                    try:
                        await self._hold(conn)
                    finally:
                        # A connection with a LISTEN on it must not go back to the pool.
                        self.listening = False
                        await conn.invalidate()
                backoff = 0.1
            except Exception as exc:
                if database_unavailable(exc):
                    log.warning("webchat listener lost the database", extra={"error": repr(exc)})
                else:
                    log.exception("webchat listener failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)

    async def _hold(self, conn: AsyncConnection) -> None:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.add_listener(NOTIFY_CHANNEL, self._on_notify)
        raw.add_termination_listener(self._on_lost)
        self.listening = True
        self._wake_all()  # rows committed while nobody listened
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._keepalive_s)
            if not self._stopping.is_set():
                await conn.execute(sa.text("SELECT 1"))  # a dead connection raises here, and is replaced

    def _on_notify(self, _conn: object, _pid: int, _channel: str, identity: str) -> None:
        self.wake(identity)

    def _on_lost(self, _conn: object) -> None:
        # Streams fall back to polling at once, not at the next keep-alive query.
        self.listening = False

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """A transaction on one of web chat's pooled connections (see ``connections``)."""
        async with self._slots, self._db.unit_of_work() as session:
            yield session

    # --- waking -------------------------------------------------------------------------------------------

    def wake(self, identity: str) -> None:
        """``identity`` has new rows: its streams in this process read them."""
        for event in self._subscribers.get(identity, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._subscribers.values():
            for event in events:
                event.set()

    @contextlib.contextmanager
    def _subscribe(self, identity: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers.setdefault(identity, set()).add(event)
        try:
            yield event
        finally:
            events = self._subscribers[identity]
            events.discard(event)
            if not events:
                del self._subscribers[identity]

    @property
    def streams(self) -> int:
        return sum(len(events) for events in self._subscribers.values())

    # --- streams ------------------------------------------------------------------------------------------

    async def events(
        self, identity: str, after: int, until: datetime
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """``identity``'s replies after event id ``after``, then each new one as it comes, until ``until``
        (the token's expiry: the client must come back with a fresh one) or the hub stops."""
        yield ServerSentEvent(retry=RECONNECT_MS)
        # Subscribed before the first read, and the flag cleared before each read: a wake-up between a read
        # and the wait is never lost.
        with self._subscribe(identity) as woken:
            while not self._stopping.is_set():
                remaining = (until - datetime.now(UTC)).total_seconds()
                if remaining <= 0:
                    return
                woken.clear()
                rows = await self._read(identity, after)
                for row in rows or ():
                    yield _event(row)
                    after = row.seq
                if rows is not None and len(rows) == BATCH:
                    continue
                poll = self._idle_poll_s if self.listening and rows is not None else self._fallback_poll_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(poll, remaining))

    async def _read(self, identity: str, after: int) -> list[StreamEvent] | None:
        """The rows after ``after``; none when the database is unavailable."""
        try:
            async with self.unit_of_work() as session:
                return await repository.events_after(session, identity, after, BATCH)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            # The stream stays open; its next look (a wake-up or the fallback poll) tries again.
            log.warning("webchat stream could not read", extra={"error": repr(exc)})
            return None


def _event(row: StreamEvent) -> ServerSentEvent:
    data = {"message_id": str(row.message_id), "text": row.text, "sent_at": row.created_at.isoformat()}
    return ServerSentEvent(data=json.dumps(data, ensure_ascii=False), id=str(row.seq))
