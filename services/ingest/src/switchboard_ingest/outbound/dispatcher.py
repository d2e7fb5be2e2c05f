"""The dispatcher: sends due replies through their providers, beside (never inside) a consumer's loop.

A claimer takes due replies from ``outbound_deliveries`` in one statement and starts a send for each; each
send runs on its own, bounded by ``dispatch_timeout_ms``; finished sends are recorded in group commits by a
recorder. A provider that is slow or failing holds only its own sends (at most
``dispatch_channel_concurrency`` of them) and its replies wait in the table for their next attempt, so the
other channels keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally
from collections.abc import Mapping

import httpx
from prometheus_client import Counter

from switchboard_common.db.database import Database, database_unavailable
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import Channel, EventEnvelope, MessageOutbound
from switchboard_ingest.channels.base import OutboundAdapter, OutboundMessage, Sender, SendOutcome, SendResult
from switchboard_ingest.outbound import repository, service
from switchboard_ingest.outbound.policy import RetrySchedule
from switchboard_ingest.outbound.repository import Claimed
from switchboard_ingest.outbound.service import Result
from switchboard_ingest.settings import IngestSettings

log = logging.getLogger(__name__)

ATTEMPTS = Counter(
    "switchboard_dispatch_attempts_total",
    "Reply sends attempted, by channel and outcome",
    ["channel", "result"],
)


class Dispatcher:
    """A background job (``start`` / ``stop``); ``wake`` says new replies were scheduled."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        adapters: Mapping[Channel, OutboundAdapter | Sender],
        settings: IngestSettings,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._adapters = adapters
        self._capacity = settings.dispatch_concurrency
        self._per_channel = settings.dispatch_channel_concurrency
        self._timeout_s = settings.dispatch_timeout_ms / 1000
        # A claimed reply is due again after the lease: long enough for its call and its recording.
        self._lease_s = 3 * self._timeout_s + 30
        self._poll_s = settings.dispatch_poll_interval_ms / 1000
        self._retries = RetrySchedule(
            initial_s=settings.dispatch_backoff_initial_ms / 1000,
            max_s=settings.dispatch_backoff_max_ms / 1000,
            max_attempts=settings.dispatch_max_attempts,
        )
        self._wakeup = asyncio.Event()
        self._finished: list[Result] = []
        self._finished_event = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def wake(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        # One client for every send: connections to each provider are pooled and reused.
        self._client = httpx.AsyncClient(timeout=self._timeout_s)
        self._running = True
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="dispatch-claimer"),
            asyncio.create_task(self._record_loop(), name="dispatch-recorder"),
        ]

    async def stop(self) -> None:
        """Stop claiming, let the sends in flight finish (each is bounded), record them, then stop."""
        self._running = False
        self._wakeup.set()
        if not self._tasks:  # never started
            return
        claimer, recorder = self._tasks
        await claimer
        if self._in_flight:
            await asyncio.wait(list(self._in_flight))
        self._finished_event.set()
        await recorder
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()

    # --- claiming -----------------------------------------------------------------------------------------

    def _busy_channels(self) -> list[str]:
        per_channel = Tally(self._in_flight.values())
        return [channel for channel, n in per_channel.items() if n >= self._per_channel]

    async def _claim_loop(self) -> None:
        while self._running:
            room = min(self._capacity - len(self._in_flight), self._per_channel)
            claimed: list[Claimed] = []
            if room > 0:
                try:
                    async with self._db.unit_of_work() as session:
                        claimed = await repository.claim(session, room, self._busy_channels(), self._lease_s)
                except Exception as exc:
                    if not database_unavailable(exc):
                        log.exception("claiming replies to send failed")
                    else:
                        log.warning("database unavailable, replies wait", extra={"error": repr(exc)})
            for reply in claimed:
                task = asyncio.create_task(self._send(reply), name=f"dispatch-{reply.message_id}")
                self._in_flight[task] = reply.channel
                task.add_done_callback(self._sent)
            if claimed and len(claimed) == room:
                continue  # more may be due
            await self._idle()

    async def _idle(self) -> None:
        """Wait for a wake-up (new replies, a freed slot) or the poll interval (retries falling due)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._poll_s)
        self._wakeup.clear()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wakeup.set()  # a slot is free

    # --- sending ------------------------------------------------------------------------------------------

    async def _send(self, reply: Claimed) -> None:
        try:
            outcome = await self._attempt(reply)
        except Exception:
            # A bug in an adapter must still end in a recorded outcome: unrecorded, the reply would come
            # due again at every lease forever, never reaching its last attempt and the dead letters.
            log.exception("sending a reply failed unexpectedly", extra={"message_id": str(reply.message_id)})
            outcome = SendOutcome(SendResult.RETRY, error_code="internal", error_reason="internal error")
        ATTEMPTS.labels(reply.channel, outcome.result.value).inc()
        if outcome.result is not SendResult.SENT:
            log.info(
                "reply not sent",
                extra={
                    "message_id": str(reply.message_id),
                    "channel": reply.channel,
                    "attempt": reply.attempts,
                    "result": outcome.result.value,
                    "error": outcome.error_reason,
                },
            )
        self._finished.append(Result(reply, outcome))
        self._finished_event.set()

    async def _attempt(self, reply: Claimed) -> SendOutcome:
        adapter = self._adapters.get(Channel(reply.channel))
        if adapter is None:
            return SendOutcome(
                SendResult.FAILED,
                error_code="channel_not_configured",
                error_reason=f"no provider is configured to send on {reply.channel}",
            )
        if not reply.recipient:
            return SendOutcome(
                SendResult.FAILED, error_code="no_recipient", error_reason="the reply names no recipient"
            )
        message = _message(reply)
        if not isinstance(adapter, OutboundAdapter):
            return await adapter.send(message)
        try:
            request = adapter.build(message)
        except ValueError as exc:  # the recipient or text cannot be sent on this channel
            return SendOutcome(SendResult.FAILED, error_code="unsendable", error_reason=str(exc))
        assert self._client is not None
        try:
            response = await self._client.send(request)
        except httpx.TimeoutException:
            return SendOutcome(
                SendResult.RETRY, error_code="timeout", error_reason="the provider did not answer"
            )
        except httpx.TransportError as exc:
            return SendOutcome(SendResult.RETRY, error_code="unreachable", error_reason=repr(exc))
        return adapter.outcome(response)

    # --- recording ----------------------------------------------------------------------------------------

    async def _record_loop(self) -> None:
        while True:
            await self._finished_event.wait()
            self._finished_event.clear()
            while self._finished:
                batch = self._finished[:]
                if await self._record(batch):
                    del self._finished[: len(batch)]
                elif self._running:
                    await asyncio.sleep(self._poll_s)  # keep them and try again: the sends happened
                else:
                    # Shutting down with the database away: unrecorded, these replies come due again when
                    # their lease ends and are sent again (at-least-once: never lost, possibly twice).
                    log.error("send outcomes lost at shutdown", extra={"replies": len(batch)})
                    self._finished.clear()
            if not self._running and not self._in_flight:
                return

    async def _record(self, batch: list[Result]) -> bool:
        try:
            async with self._db.unit_of_work() as session:
                await service.record(session, self._outbox, batch, self._retries)
        except Exception as exc:
            if database_unavailable(exc):
                log.warning(
                    "database unavailable, send outcomes not recorded yet", extra={"error": repr(exc)}
                )
                return False
            if len(batch) == 1:
                # A bug: dropped with its trace, so it cannot hold up the others; its reply is sent again
                # when its lease ends.
                log.exception(
                    "recording a send outcome failed", extra={"message_id": str(batch[0].claimed.message_id)}
                )
                return True
            log.exception("recording send outcomes failed, recording them one by one")
            for result in batch:
                if not await self._record([result]):
                    return False
        return True


def _message(reply: Claimed) -> OutboundMessage:
    """The reply to send; email threading fields come from its event, which the delivery row keeps."""
    event = EventEnvelope.model_validate_json(reply.envelope).parse()
    assert isinstance(event, MessageOutbound)
    return OutboundMessage(
        message_id=reply.message_id,
        channel=Channel(reply.channel),
        recipient=reply.recipient or "",
        text=reply.text,
        subject=event.subject,
        in_reply_to=event.in_reply_to,
        references=tuple(event.references),
    )
