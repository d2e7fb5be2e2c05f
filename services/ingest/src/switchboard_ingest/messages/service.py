"""Accepting a message: dedup, normalize, publish (acks=all), and only then answer."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from switchboard_common import topics
from switchboard_common.events import Channel, CustomerIdentity, EventEnvelope, MessageReceived, utcnow
from switchboard_common.http.errors import ApiError
from switchboard_common.logging import correlation_id
from switchboard_common.runtime import ServiceRuntime
from switchboard_ingest.messages import repository
from switchboard_ingest.messages.schemas import AcceptStatus, MessageAccepted, MessageCreate
from switchboard_ingest.normalize import normalize_email, normalize_phone

log = logging.getLogger(__name__)
PRODUCER = "ingest"
MESSAGE_ID_NAMESPACE = uuid.UUID("5b1c2f0e-8d7a-4c3e-9f61-2a4b8e0d7c15")


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message normalized from any channel, ready to publish."""

    channel: Channel
    external_id: str
    payload_digest: str
    event: MessageReceived


def message_id_for(channel: Channel, external_id: str) -> uuid.UUID:
    """Switchboard's id for a provider's message: derived, so every retry of it carries the same id."""
    return uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{channel.value}:{external_id}")


def from_api(request: MessageCreate) -> InboundMessage:
    customer = request.customer
    sender = CustomerIdentity(kind=Channel.API.value, value=customer.id)
    identities = []
    if customer.email:
        identities.append(CustomerIdentity(kind="email", value=normalize_email(customer.email)))
    if customer.phone:
        identities.append(CustomerIdentity(kind="phone", value=normalize_phone(customer.phone)))
    now = utcnow()
    event = MessageReceived(
        message_id=message_id_for(Channel.API, request.message_id),
        channel=Channel.API,
        external_id=request.message_id,
        sender=sender,
        identities=identities,
        customer_ref=customer.id,
        display_name=customer.name,
        text=request.text,
        sent_at=request.sent_at or now,
        received_at=now,
        required_skills=sorted(set(request.skills)),
        priority=request.priority,
    )
    digest = hashlib.sha256(request.model_dump_json(exclude_none=True).encode()).hexdigest()
    return InboundMessage(Channel.API, request.message_id, digest, event)


async def accept(runtime: ServiceRuntime, message: InboundMessage) -> MessageAccepted:
    """Record the dedup receipt and publish the event in one transaction, answering after both.

    The receipt commits only after the broker acknowledged the event (acks=all), so a receipt always means
    "published" and costs one commit. A concurrent duplicate waits on the receipt's key until the first
    request commits (then it is a duplicate) or rolls back (then it publishes itself). A crash between the
    ack and the commit leaves no receipt: the retry publishes again under the same deterministic message
    id, and the conversation service stores a message id once.
    """
    event = message.event
    channel = message.channel.value
    async with runtime.db.unit_of_work() as session:
        receipt = await repository.insert_receipt(
            session, channel, message.external_id, event.message_id, message.payload_digest
        )
        if receipt is None:
            existing = await repository.get_receipt(session, channel, message.external_id)
            assert existing is not None  # the insert conflicted with it
            if existing.content_digest != message.payload_digest:
                raise ApiError(409, "message_id was already used for a different message", code="id_reused")
            return MessageAccepted(
                message_id=existing.message_id,
                status=AcceptStatus.DUPLICATE,
                received_at=existing.received_at,
            )
        envelope = EventEnvelope.wrap(event, producer=PRODUCER, correlation_id=correlation_id.get())
        try:
            await runtime.publisher.publish(
                topics.MESSAGES_INBOUND, f"{event.sender.kind}:{event.sender.value}", envelope
            )
        except Exception as exc:
            log.warning("publish failed", extra={"error": repr(exc), "message_id": str(event.message_id)})
            # Raising rolls the receipt back: the client's retry is a first attempt again.
            raise ApiError(503, "message not accepted: the event log is unavailable, retry later") from exc
    return MessageAccepted(
        message_id=event.message_id, status=AcceptStatus.ACCEPTED, received_at=event.received_at
    )
