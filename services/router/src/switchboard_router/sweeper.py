"""Periodically serves the queue head with any free capacity, so no conversation waits on a missed
wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_router.routing import service

log = logging.getLogger(__name__)


class QueueSweeper:
    def __init__(self, db: Database, outbox: Outbox, interval_s: float) -> None:
        self._db = db
        self._outbox = outbox
        self._interval = interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> int:
        async with self._db.unit_of_work() as session:
            return await service.sweep(session, self._outbox)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                break
            try:
                assigned = await self.sweep_once()
                if assigned:
                    log.info("sweeper assigned waiting conversations", extra={"assigned": assigned})
            except Exception as exc:
                # The database is unavailable or a sweep collided with a migration: the next tick retries.
                log.warning("queue sweep failed", exc_info=True, extra={"error": repr(exc)})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-sweeper")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
