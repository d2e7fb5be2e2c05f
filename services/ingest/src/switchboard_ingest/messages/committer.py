"""Group commit for ``POST /v1/messages``.

A request submits its normalized message and waits. ``ingest_commit_concurrency`` workers each take
everything queued (up to ``ingest_commit_max_batch``) and record it in one transaction: one receipts
insert, at most one lookup of the receipts that already existed, one outbox insert, one commit. Nothing
waits on purpose: a lone request commits at once, and under load the next batch forms while the previous
one commits. Each worker holds one pooled connection for the length of one transaction, and never across
a broker round trip (the outbox relay publishes after the commit).

Every submitted request is answered: with its outcome after the commit; with ``Unavailable`` when the
database could not be reached (nothing of the batch was acknowledged, so a retry is safe); with
:class:`AcceptFailed` when the transaction failed for another reason (a bug) — then each request of the
batch is retried alone first, so one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from prometheus_client import Histogram

from switchboard_common.db.database import Database, database_unavailable
from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Unavailable
from switchboard_ingest.messages import service
from switchboard_ingest.messages.schemas import MessageAccepted
from switchboard_ingest.messages.service import Outcome, Submission
from switchboard_ingest.settings import IngestSettings

log = logging.getLogger(__name__)

COMMIT_BATCH = Histogram(
    "switchboard_ingest_commit_batch_requests",
    "Requests recorded by one ingest transaction (group commit)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)


class AcceptFailed(Exception):
    """Recording the message failed for a reason that is not the database's availability (a bug)."""


@dataclass(slots=True)
class _Pending:
    submission: Submission
    future: asyncio.Future[MessageAccepted]
    expiry: asyncio.TimerHandle | None = None


def _expire(pending: _Pending) -> None:
    _settle(
        pending,
        Unavailable(
            "the message could not be confirmed in time (the database is slow or unreachable); "
            "retry with the same message_id"
        ),
    )


def _settle(pending: _Pending, outcome: Outcome | Exception) -> None:
    if pending.expiry is not None:
        pending.expiry.cancel()
    # Already answered: the request was cancelled (client gone) or expired; that answer stands.
    if pending.future.done():
        return
    if isinstance(outcome, MessageAccepted):
        pending.future.set_result(outcome)
    else:
        pending.future.set_exception(outcome)


class GroupCommitter:
    """A background job (``start`` / ``stop``) that records submitted messages in group commits."""

    def __init__(self, db: Database, outbox: Outbox, settings: IngestSettings) -> None:
        self._db = db
        self._outbox = outbox
        self._max_batch = settings.ingest_commit_max_batch
        self._concurrency = settings.ingest_commit_concurrency
        self._timeout_s = settings.ingest_accept_timeout_ms / 1000
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._accepting = False

    async def start(self) -> None:
        self._accepting = True
        self._workers = [
            asyncio.create_task(self._work(), name=f"ingest-committer-{i}") for i in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Refuse new submissions, answer every queued one, then stop."""
        self._accepting = False
        self._wakeup.set()
        await asyncio.gather(*self._workers)
        self._workers = []

    async def submit(self, submission: Submission) -> MessageAccepted:
        """Queue ``submission`` and wait until its transaction committed (or failed), at most
        ``ingest_accept_timeout_ms``: then ``Unavailable``. The message may still be recorded after that;
        the caller's retry with the same id is answered as a duplicate then, so nothing is lost or doubled."""
        if not self._accepting:
            raise Unavailable("ingest is shutting down, retry later")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[MessageAccepted] = loop.create_future()
        pending = _Pending(submission, future)
        # A timer that settles the future, not asyncio.wait_for: wait_for adds two event-loop hops to every
        # answer, which measurably delayed acknowledgements under load. An expired request left in the
        # queue is dropped from the next batch; one already in a batch keeps its (ignored) outcome.
        pending.expiry = loop.call_later(self._timeout_s, _expire, pending)
        self._queue.append(pending)
        self._wakeup.set()
        return await future

    async def _work(self) -> None:
        while True:
            while not self._queue:
                if not self._accepting:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            batch = [p for p in batch if not p.future.done()]  # requests that timed out while queued
            if not batch:
                continue
            COMMIT_BATCH.observe(len(batch))
            # Whatever happens, every request of the batch is answered and the worker lives on.
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for pending in batch:  # a forced shutdown: nothing more will happen to them
                    _settle(pending, Unavailable("message not accepted, retry later"))
                raise
            except Exception:
                log.exception("group commit failed unexpectedly", extra={"requests": len(batch)})
                for pending in batch:
                    _settle(pending, AcceptFailed("accepting the message failed"))

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            async with self._db.unit_of_work() as session:
                outcomes = await service.accept_batch(session, self._outbox, [p.submission for p in batch])
        except Exception as exc:
            if database_unavailable(exc):
                log.warning(
                    "database unavailable, batch refused", extra={"requests": len(batch), "error": repr(exc)}
                )
                for pending in batch:
                    _settle(
                        pending, Unavailable("message not accepted: the database is unavailable, retry later")
                    )
            elif len(batch) > 1:
                log.exception(
                    "batch failed, retrying its requests one by one", extra={"requests": len(batch)}
                )
                for pending in batch:
                    await self._commit([pending])
            else:
                log.exception("accepting a message failed")
                _settle(batch[0], AcceptFailed("accepting the message failed"))
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            _settle(pending, outcome)
