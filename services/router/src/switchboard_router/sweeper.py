"""The router's clock. On every tick: lapsed offers return to the queue; silent agents go offline; the
conversations of agents offline past the grace period, or unanswered past the no-answer time, are
requeued; conversations waiting past their SLA target move up a priority; waiting ones reaching an
escalation step ask less of an agent; and the queue head is served with any free capacity, so no
conversation waits on a missed wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_router.routing import service

log = logging.getLogger(__name__)

Step = Callable[[AsyncSession, Outbox], Awaitable[int]]


class QueueSweeper:
    def __init__(
        self, db: Database, outbox: Outbox, interval_s: float, config: service.RoutingConfig
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._interval = interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Each step is its own transaction, so one failing (a lock timeout, a bad row) does not hold back
        # the others; the order puts capacity back before the queue is served.
        self._steps: list[tuple[str, Step]] = [
            ("offers timed out", service.expire_offers),
            ("agents silent, set offline", lambda s, o: service.silence_stale_agents(s, o, config)),
            (
                "conversations requeued from offline agents",
                lambda s, o: service.requeue_abandoned(s, o, config),
            ),
            ("waiting conversations placed", service.sweep),
        ]

    async def sweep_once(self) -> int:
        """One tick; returns how many conversations the queue sweep placed."""
        placed = 0
        for what, step in self._steps:
            async with self._db.unit_of_work() as session:
                n = await step(session, self._outbox)
            if n:
                log.info("sweeper: %s", what, extra={"count": n})
            placed = n
        return placed

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                break
            try:
                await self.sweep_once()
            except Exception as exc:
                # The database is unavailable or a sweep collided with a migration: the next tick retries.
                log.warning("queue sweep failed", exc_info=True, extra={"error": repr(exc)})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-sweeper")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
