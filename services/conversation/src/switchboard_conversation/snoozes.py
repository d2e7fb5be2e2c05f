"""Wakes snoozed conversations when their time comes: one statement per tick whatever their number, each
tick its own transaction, so a failing tick (the database away) only delays the next."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import utcnow
from switchboard_conversation.conversations import service

log = logging.getLogger(__name__)


class SnoozeWaker:
    def __init__(self, db: Database, outbox: Outbox, interval_s: float) -> None:
        self._db = db
        self._outbox = outbox
        self._interval = interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def wake_once(self) -> int:
        async with self._db.unit_of_work() as session:
            return await service.wake_due(session, self._outbox, utcnow())

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                break
            try:
                woke = await self.wake_once()
            except Exception as exc:
                log.warning("waking snoozed conversations failed", exc_info=True, extra={"error": repr(exc)})
                continue
            if woke:
                log.info("snoozed conversations woke", extra={"count": woke})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="snooze-waker")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
