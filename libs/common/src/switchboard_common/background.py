"""Background jobs a service runs beside its consumers, started and stopped with it.

``Periodic`` runs one tick every interval until the service stops. The services' clocks (the router's
queue sweeper, conversation's snooze waker and feed retention, metrics' retention) share it. A tick that
fails is logged and the next one runs as planned: a tick is a short unit of work on the database, so a
database away for a while only delays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class BackgroundTask:
    """One asyncio task run by ``_run`` until ``_stopping`` is set; ``stop`` waits for it to return."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        raise NotImplementedError


class Periodic(BackgroundTask):
    """Calls ``tick`` every ``interval_s``, the first time after ``first_delay_s`` (default: one interval).

    ``stop`` lets a running tick finish, so a tick never stops halfway through its transaction.
    """

    def __init__(
        self,
        name: str,
        tick: Callable[[], Awaitable[object]],
        interval_s: float,
        *,
        first_delay_s: float | None = None,
    ) -> None:
        super().__init__(name)
        self._tick = tick
        self._interval_s = interval_s
        self._first_delay_s = interval_s if first_delay_s is None else first_delay_s

    async def _run(self) -> None:
        delay = self._first_delay_s
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                break
            delay = self._interval_s
            try:
                await self._tick()
            except Exception as exc:
                log.warning(
                    "%s failed; the next tick retries", self.name, exc_info=True, extra={"error": repr(exc)}
                )
