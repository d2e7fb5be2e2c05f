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
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import ServerSentEvent

from switchboard_common.db.database import Database, database_unavailable
from switchboard_common.db.listen import Listener, Wakeups
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
        # Web chat's share of ingest's pool (which has no overflow): its reads and writes (streams woken
        # together, sessions, the sender's concurrent sends) queue here rather than in the pool, where they
        # would make the group commit wait for a connection.
        self._slots = asyncio.Semaphore(connections)
        self._wakeups = Wakeups()
        self._stopping = asyncio.Event()
        # Every stream looks once when the listener (re)connects: rows committed while nobody listened.
        self._listener = Listener(
            db, NOTIFY_CHANNEL, self.wake, self._wakeups.wake_all, keepalive_s=keepalive_s
        )

    @property
    def listening(self) -> bool:
        return self._listener.listening

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        await self._listener.start()

    async def stop(self) -> None:
        """Stop listening and end every stream (their clients reconnect, to this or another replica)."""
        self._stopping.set()
        self._wakeups.wake_all()
        await self._listener.stop()

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """A transaction on one of web chat's pooled connections (see ``connections``)."""
        async with self._slots, self._db.unit_of_work() as session:
            yield session

    def wake(self, identity: str) -> None:
        """``identity`` has new rows: its streams in this process read them."""
        self._wakeups.wake(identity)

    @property
    def streams(self) -> int:
        return self._wakeups.count

    # --- streams ------------------------------------------------------------------------------------------

    async def events(
        self, identity: str, after: int, until: datetime
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """``identity``'s replies after event id ``after``, then each new one as it comes, until ``until``
        (the token's expiry: the client must come back with a fresh one) or the hub stops."""
        yield ServerSentEvent(retry=RECONNECT_MS)
        # Subscribed before the first read, and the flag cleared before each read: a wake-up between a read
        # and the wait is never lost.
        with self._wakeups.subscribe(identity) as woken:
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
