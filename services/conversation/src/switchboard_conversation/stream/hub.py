"""Fan-out of feed items to the agents' open streams of this replica.

One ``FeedHub`` per process LISTENs on one dedicated connection (``switchboard_common.db.listen``); the
feed's trigger notifies, on commit, the agents a statement wrote for (or ``*``), from whichever replica
committed. A woken stream reads its items after its position with a short pooled query and goes back to
waiting: no stream holds a connection while it waits, however many are open. A stream also looks every
``poll_s`` (a lost notification, or a row held back behind an older transaction, only delays), and at
once while the LISTEN connection is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import ServerSentEvent

from switchboard_common.db.database import Database, database_unavailable
from switchboard_common.db.listen import Listener, Wakeups
from switchboard_conversation.stream import repository
from switchboard_conversation.stream.repository import FeedItem, Position

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "switchboard_agent_feed"  # as the feed's trigger (migration 0007) names it
EVERYONE = "*"  # the admin's streams, woken by every notification; and a notification for every stream
# Items read per query; a stream further behind reads again at once.
BATCH = 100
# What an EventSource waits before reconnecting after the connection drops (sent as the stream's retry:).
RECONNECT_MS = 2000


class FeedHub:
    def __init__(self, db: Database, *, poll_s: float = 1.0, connections: int = 2) -> None:
        self._db = db
        self._poll_s = poll_s
        # The streams' share of the pool: many streams woken together queue here, not in the pool, where
        # they would make the consumer's and the API's transactions wait for a connection.
        self._slots = asyncio.Semaphore(connections)
        self._wakeups = Wakeups()
        self._stopping = asyncio.Event()
        self._listener = Listener(db, NOTIFY_CHANNEL, self._on_notify, self._wakeups.wake_all)

    @property
    def listening(self) -> bool:
        return self._listener.listening

    @property
    def streams(self) -> int:
        return self._wakeups.count

    async def start(self) -> None:
        self._stopping.clear()
        await self._listener.start()

    async def stop(self) -> None:
        """Stop listening and end every stream (their clients reconnect, to this or another replica)."""
        self._stopping.set()
        self._wakeups.wake_all()
        await self._listener.stop()

    # --- waking -------------------------------------------------------------------------------------------

    def _on_notify(self, payload: str) -> None:
        if payload == EVERYONE:
            self._wakeups.wake_all()
            return
        for agent in (*payload.split(","), EVERYONE):
            self._wakeups.wake(agent)

    @contextlib.asynccontextmanager
    async def _unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with self._slots, self._db.unit_of_work() as session:
            yield session

    # --- streams ------------------------------------------------------------------------------------------

    async def position_after(self, seq: int | None) -> Position:
        """Where a stream resumes after the item ``seq`` (see ``repository.position_after``)."""
        async with self._unit_of_work() as session:
            return await repository.position_after(session, seq)

    async def events(
        self, agent_id: uuid.UUID | None, position: Position
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """``agent_id``'s items (every agent's for None) after ``position``, then each new one as it
        commits, until the hub stops."""
        yield ServerSentEvent(retry=RECONNECT_MS)
        # Subscribed before the first read, and the flag cleared before each read: a wake-up between a read
        # and the wait is never lost.
        with self._wakeups.subscribe(EVERYONE if agent_id is None else str(agent_id)) as woken:
            while not self._stopping.is_set():
                woken.clear()
                items = await self._read(agent_id, position)
                for item in items or ():
                    yield _event(item)
                    position = item.position
                if items is not None and len(items) == BATCH:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self._poll_s)

    async def _read(self, agent_id: uuid.UUID | None, position: Position) -> list[FeedItem] | None:
        """The items after ``position`` in a short transaction; None when the database is unavailable (the
        stream stays open and tries again at its next look)."""
        try:
            async with self._unit_of_work() as session:
                return await repository.read(session, agent_id, position, BATCH)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            log.warning("agent stream could not read", extra={"error": repr(exc)})
            return None


def _event(item: FeedItem) -> ServerSentEvent:
    data = {
        "agent_id": str(item.agent_id),
        "conversation_id": str(item.conversation_id),
        "at": item.at.isoformat(),
        **item.data,
    }
    return ServerSentEvent(data=json.dumps(data, ensure_ascii=False), event=item.kind, id=str(item.seq))
