"""Delivering agents' replies: scheduling them from ``message.outbound`` events, and recording what each
attempt came to (with the delivery report the conversation service folds into the thread). Services take
the session first and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.outbox import Outbox, OutboxEvent
from switchboard_common.events import (
    Channel,
    DeliveryState,
    DeliveryStatusChanged,
    EventEnvelope,
    MessageOutbound,
    delivery_event_id,
    utcnow,
)
from switchboard_ingest.channels.base import SendOutcome, SendResult
from switchboard_ingest.models import DispatchState
from switchboard_ingest.outbound import repository
from switchboard_ingest.outbound.policy import RetrySchedule
from switchboard_ingest.outbound.repository import Attempted, Claimed, NewDelivery

PRODUCER = "ingest-dispatcher"


async def schedule(session: AsyncSession, events: Sequence[tuple[EventEnvelope, MessageOutbound]]) -> None:
    """Schedule each reply for sending now (a redelivered event changes nothing)."""
    now = utcnow()
    await repository.enqueue(
        session,
        [
            NewDelivery(
                message_id=e.message_id,
                conversation_id=e.conversation_id,
                channel=e.channel.value,
                recipient=e.recipient,
                text=e.text,
                envelope=envelope.model_dump_json(),
                at=now,
            )
            for envelope, e in events
        ],
    )


@dataclass(frozen=True, slots=True)
class Result:
    claimed: Claimed
    outcome: SendOutcome


def _error(outcome: SendOutcome) -> str | None:
    if outcome.error_reason and outcome.error_code:
        return f"{outcome.error_reason} ({outcome.error_code})"
    return outcome.error_reason or outcome.error_code


def attempted(result: Result, retries: RetrySchedule) -> Attempted:
    """What an attempt's outcome makes of the reply: sent, failed for good, due again later, or dead
    (retryable, but out of attempts)."""
    claimed, outcome = result.claimed, result.outcome
    state, delay = DispatchState.PENDING, None
    if outcome.result is SendResult.SENT:
        state = DispatchState.SENT
    elif outcome.result is SendResult.FAILED:
        state = DispatchState.FAILED
    else:
        delay = retries.delay(claimed.attempts, outcome.retry_after)
        if delay is None:
            state = DispatchState.DEAD
    return Attempted(
        message_id=claimed.message_id,
        attempts=claimed.attempts,
        state=state.value,
        external_id=outcome.external_id,
        delay_s=delay,
        error=_error(outcome),
    )


def _report(result: Result, attempt: Attempted) -> DeliveryStatusChanged | None:
    channel = Channel(result.claimed.channel)
    if attempt.state == DispatchState.SENT.value:
        return DeliveryStatusChanged(
            channel=channel,
            message_id=attempt.message_id,
            external_id=attempt.external_id,
            status=DeliveryState.SENT,
            at=utcnow(),
        )
    if attempt.state in (DispatchState.FAILED.value, DispatchState.DEAD.value):
        reason = attempt.error or "failed"
        if attempt.state == DispatchState.DEAD.value:
            reason = f"gave up after {attempt.attempts} attempts: {reason}"
        return DeliveryStatusChanged(
            channel=channel,
            message_id=attempt.message_id,
            status=DeliveryState.FAILED,
            at=utcnow(),
            error_code=result.outcome.error_code,
            error_reason=reason,
        )
    return None


async def record(
    session: AsyncSession, outbox: Outbox, results: Sequence[Result], retries: RetrySchedule
) -> list[Attempted]:
    """Record the attempts' outcomes and, for each reply sent or given up on, its delivery report; a reply
    given up on after retries also goes to the ``messages.outbound`` DLQ as it came. An outcome whose
    reply was claimed again meanwhile (its lease ran out) is stale and dropped. Returns what was recorded."""
    attempts = {r.claimed.message_id: (r, attempted(r, retries)) for r in results}
    recorded = await repository.record(session, [a for _, a in attempts.values()])
    events: list[OutboxEvent] = []
    kept: list[Attempted] = []
    for message_id in recorded:
        result, attempt = attempts[message_id]
        kept.append(attempt)
        report = _report(result, attempt)
        if report is None:
            continue
        envelope = EventEnvelope.wrap(report, producer=PRODUCER, event_id=delivery_event_id(report))
        events.append((topics.DELIVERY_EVENTS, report.partition_key, envelope))
        if attempt.state == DispatchState.DEAD.value:
            original = EventEnvelope.model_validate_json(result.claimed.envelope)
            events.append(
                (topics.dlq(topics.MESSAGES_OUTBOUND), str(result.claimed.conversation_id), original)
            )
    await outbox.add_many(session, events)
    return kept
