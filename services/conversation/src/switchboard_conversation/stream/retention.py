"""Deleting feed items past their retention, every few minutes, in one statement.

Every replica runs it: a second delete of the same rows finds nothing (it waits for the first), so no
leader is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from switchboard_common.db.database import Database, database_unavailable
from switchboard_conversation.stream import repository

log = logging.getLogger(__name__)


class FeedRetention:
    """A background job (``start`` / ``stop``) deleting items older than ``keep`` every ``interval_s``."""

    def __init__(self, db: Database, keep: timedelta, interval_s: float) -> None:
        self._db = db
        self._keep = keep
        self._interval_s = interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="agent-feed-retention")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def purge(self) -> int:
        async with self._db.unit_of_work() as session:
            return await repository.purge(session, self._keep)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                deleted = await self.purge()
                if deleted:
                    log.info("agent feed items deleted past retention", extra={"deleted": deleted})
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                log.warning("agent feed retention could not run", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
