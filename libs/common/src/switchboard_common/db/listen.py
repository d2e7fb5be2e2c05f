"""One LISTEN connection per process, and the wake-ups it fans out to the streams of that process.

The connection is dedicated (never returned to the pool, which would hand a LISTENing session to someone
else) and replaced with backoff when it drops. ``listening`` says whether notifications are arriving now;
while it is false, whoever relies on them should poll. ``on_connected`` runs after each (re)connect, so
rows committed while nobody listened are looked for once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard_common.background import BackgroundTask
from switchboard_common.db.database import Database, database_unavailable

log = logging.getLogger(__name__)


class Listener(BackgroundTask):
    """A background job (``start`` / ``stop``) calling ``on_notify(payload)`` for each notification on
    ``channel``."""

    def __init__(
        self,
        db: Database,
        channel: str,
        on_notify: Callable[[str], None],
        on_connected: Callable[[], None],
        *,
        keepalive_s: float = 30.0,
    ) -> None:
        super().__init__(f"listen-{channel}")
        self._db = db
        self._channel = channel
        self._on_notify = on_notify
        self._on_connected = on_connected
        self._keepalive_s = keepalive_s
        self.listening = False

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                async with self._db.engine.connect() as base:
                    conn = await base.execution_options(isolation_level="AUTOCOMMIT")
                    try:
                        await self._listen(conn)
                    finally:
                        self.listening = False
                        await conn.invalidate()
                backoff = 0.1
            except Exception as exc:
                if not database_unavailable(exc):
                    log.exception("listener failed", extra={"channel": self._channel})
                else:
                    log.warning(
                        "listener lost the database", extra={"channel": self._channel, "error": repr(exc)}
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)

    async def _listen(self, conn: AsyncConnection) -> None:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.add_listener(self._channel, lambda _c, _pid, _ch, payload: self._on_notify(payload))
        raw.add_termination_listener(self._lost)
        self.listening = True
        self._on_connected()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._keepalive_s)
            if not self._stopping.is_set():
                await conn.execute(sa.text("SELECT 1"))  # a dead connection raises here and is replaced

    def _lost(self, _conn: object) -> None:
        # Pollers take over at once, not at the next keep-alive query.
        self.listening = False


class Wakeups:
    """Streams waiting by key (an agent, a visitor): ``wake(key)`` sets the events of that key's streams.

    A stream subscribes before its first read and clears its event before each read, so a wake-up between
    a read and the wait is never lost.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    @property
    def count(self) -> int:
        return sum(len(events) for events in self._waiting.values())

    def wake(self, key: str) -> None:
        for event in self._waiting.get(key, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self._waiting.values():
            for event in events:
                event.set()

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiting[key]
            events.discard(event)
            if not events:
                del self._waiting[key]
