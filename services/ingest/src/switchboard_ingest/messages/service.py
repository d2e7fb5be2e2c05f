"""Accepting messages: normalize, then record a group of them in one transaction (dedup receipts and their
``message.received`` events in the outbox). The caller commits; a committed receipt means the event is
durable and the relay will publish it."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Conflict, DomainError
from switchboard_common.events import (
    Channel,
    CustomerIdentity,
    DeliveryStatusChanged,
    EventEnvelope,
    IdentityKind,
    MessageReceived,
    delivery_event_id,
    utcnow,
)
from switchboard_common.logging import correlation_id
from switchboard_ingest.channels.base import ParsedMessage, ParsedStatus
from switchboard_ingest.messages import repository
from switchboard_ingest.messages.repository import NewReceipt, ReceiptKey, StoredReceipt
from switchboard_ingest.messages.schemas import AcceptStatus, MessageAccepted, MessageCreate
from switchboard_ingest.normalize import normalize_email

PRODUCER = "ingest"
# Receipts of status callbacks live beside the messages' under "<channel>:status".
STATUS_RECEIPT_SUFFIX = ":status"
MESSAGE_ID_NAMESPACE = uuid.UUID("5b1c2f0e-8d7a-4c3e-9f61-2a4b8e0d7c15")


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message normalized from any channel, ready to record (the outbox relay publishes it)."""

    channel: Channel
    external_id: str
    payload_digest: str
    event: MessageReceived

    @property
    def key(self) -> ReceiptKey:
        return (self.channel.value, self.external_id)


@dataclass(frozen=True, slots=True)
class Submission:
    """Something a channel received (a customer's message or a delivery status) and the event that
    announces it, built in the request's context (its correlation id). ``key`` is its receipt: the
    provider's id, so a provider's retry is recognised; ``record_id`` is what the receipt answers with."""

    key: ReceiptKey
    record_id: uuid.UUID
    digest: str
    received_at: datetime
    topic: str | None  # none: a receipt alone, no event (a replay key)
    partition_key: str
    envelope: EventEnvelope | None


# Per submission, in order: the answer, or the error the request fails with.
Outcome = MessageAccepted | DomainError


def message_id_for(channel: Channel, external_id: str) -> uuid.UUID:
    """Switchboard's id for a provider's message: derived, so every retry of it carries the same id."""
    return uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{channel.value}:{external_id}")


def event_id_for(message_id: uuid.UUID) -> uuid.UUID:
    """The id of the ``message.received`` event announcing a message: derived from the message id, so
    however often the message is accepted or the event published, consumers see one event."""
    return uuid.uuid5(message_id, MessageReceived.event_type)


def content_digest(event: MessageReceived, *, sent_at_given: bool) -> str:
    """A digest of what the message says once normalized: a resend that differs only in form (key order,
    a repeated skill, an email's case, another offset for the same instant) is the same message. The
    times ingest assigns itself (``received_at``, and ``sent_at`` when the sender gave none) are left out,
    since a retry gets new ones."""
    exclude = {"received_at"} if sent_at_given else {"received_at", "sent_at"}
    canonical = json.dumps(event.model_dump(mode="json", exclude=exclude), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def from_api(request: MessageCreate) -> InboundMessage:
    customer = request.customer
    sender = CustomerIdentity(kind=IdentityKind.API, value=customer.id)
    identities = []
    if customer.email:
        identities.append(CustomerIdentity(kind=IdentityKind.EMAIL, value=normalize_email(customer.email)))
    if customer.phone:
        identities.append(CustomerIdentity(kind=IdentityKind.PHONE, value=customer.phone))  # E.164 already
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
        customer_attributes=dict(sorted(customer.attributes.items())),
    )
    digest = content_digest(event, sent_at_given=request.sent_at is not None)
    return InboundMessage(Channel.API, request.message_id, digest, event)


def from_parsed(parsed: ParsedMessage, received_at: datetime | None = None) -> InboundMessage:
    """A provider's message, parsed by its channel adapter, as the canonical inbound message."""
    now = received_at or utcnow()
    event = MessageReceived(
        message_id=message_id_for(parsed.channel, parsed.external_id),
        channel=parsed.channel,
        external_id=parsed.external_id,
        sender=parsed.sender,
        identities=list(parsed.identities),
        display_name=parsed.display_name,
        text=parsed.text,
        sent_at=parsed.sent_at or now,
        received_at=now,
        attachments=list(parsed.attachments),
        content_kind=parsed.content_kind,
        subject=parsed.subject,
        original_text=parsed.original_text,
        thread_refs=list(parsed.thread_refs),
    )
    digest = content_digest(event, sent_at_given=parsed.sent_at is not None)
    return InboundMessage(parsed.channel, parsed.external_id, digest, event)


def submission_for(message: InboundMessage) -> Submission:
    """Wrap the message's event; call it in the request's context, which carries the correlation id."""
    event = message.event
    envelope = EventEnvelope.wrap(
        event, producer=PRODUCER, correlation_id=correlation_id.get(), event_id=event_id_for(event.message_id)
    )
    return Submission(
        key=message.key,
        record_id=event.message_id,
        digest=message.payload_digest,
        received_at=event.received_at,
        topic=topics.MESSAGES_INBOUND,
        partition_key=f"{event.sender.kind}:{event.sender.value}",
        envelope=envelope,
    )


def replay_submission(kind: str, value: str, covers: Sequence[Submission]) -> Submission:
    """A single-use value a provider signed (Mailgun's token), recorded with the items it came with: the
    same value again with the same items is a duplicate (a retry), with other items a ``Conflict`` (a
    replay of a captured signature)."""
    now = utcnow()
    key = (f"replay:{kind}", value)
    covered = "|".join(sorted(f"{s.key[0]}:{s.key[1]}:{s.digest}" for s in covers))
    return Submission(
        key=key,
        record_id=uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{key[0]}:{value}"),
        digest=hashlib.sha256(covered.encode()).hexdigest(),
        received_at=now,
        topic=None,
        partition_key="",
        envelope=None,
    )


def status_submission(status: ParsedStatus, received_at: datetime | None = None) -> Submission:
    """A provider's status callback. Its receipt is (channel, provider id, status): the same status reported
    twice is one report (its digest names only the key, so a repeat is a duplicate, never a conflict,
    whatever else the provider changed in it)."""
    now = received_at or utcnow()
    event = DeliveryStatusChanged(
        channel=status.channel,
        external_id=status.external_id,
        status=status.status,
        at=status.at or now,
        error_code=status.error_code,
        error_reason=status.error_reason,
    )
    event_id = delivery_event_id(event)
    envelope = EventEnvelope.wrap(
        event, producer=PRODUCER, correlation_id=correlation_id.get(), event_id=event_id
    )
    key = (f"{status.channel.value}{STATUS_RECEIPT_SUFFIX}", f"{status.external_id}:{status.status.value}")
    return Submission(
        key=key,
        record_id=event_id,
        digest=hashlib.sha256(f"{key[0]}|{key[1]}".encode()).hexdigest(),
        received_at=now,
        topic=topics.DELIVERY_EVENTS,
        partition_key=event.partition_key,
        envelope=envelope,
    )


async def accept_batch(
    session: AsyncSession, outbox: Outbox, submissions: Sequence[Submission]
) -> list[Outcome]:
    """Record ``submissions`` in the session's transaction; returns each one's outcome, to be given to
    its caller only once the transaction committed.

    A key's first submission in the batch is the one inserted; later ones with the same key are answered
    against it (same content: duplicate; other content: ``Conflict``), exactly like a repeat arriving
    after the commit is answered against the stored receipt.
    """
    firsts: dict[ReceiptKey, Submission] = {}
    for submission in submissions:
        firsts.setdefault(submission.key, submission)
    inserted = await repository.insert_receipts(
        session,
        [
            NewReceipt(
                channel=key[0],
                external_id=key[1],
                message_id=s.record_id,
                content_digest=s.digest,
                received_at=s.received_at,
            )
            for key, s in firsts.items()
        ],
    )
    stored: dict[ReceiptKey, StoredReceipt] = {
        key: StoredReceipt(s.record_id, s.digest, inserted[key])
        for key, s in firsts.items()
        if key in inserted
    }
    earlier = [key for key in firsts if key not in inserted]
    if earlier:
        stored |= await repository.receipts(session, earlier)
        if missing := [key for key in earlier if key not in stored]:
            raise RuntimeError(f"receipts conflicted on insert but are not stored: {missing[:5]}")
    # In arrival order: the relay publishes by outbox id, so one sender's messages keep their order.
    await outbox.add_many(
        session,
        [
            (s.topic, s.partition_key, s.envelope)
            for key, s in firsts.items()
            if key in inserted and s.topic is not None and s.envelope is not None
        ],
    )
    outcomes: list[Outcome] = []
    for submission in submissions:
        key = submission.key
        receipt = stored[key]
        if key in inserted and firsts[key] is submission:
            status = AcceptStatus.ACCEPTED
        elif receipt.content_digest == submission.digest:
            status = AcceptStatus.DUPLICATE
        else:
            outcomes.append(Conflict("message_id was already used for a different message", code="id_reused"))
            continue
        outcomes.append(
            MessageAccepted(message_id=receipt.message_id, status=status, received_at=receipt.received_at)
        )
    return outcomes
