"""The conversation domain: one thread per customer across channels.

Services take the session first, flush but never commit (the caller's unit of work does), and write their
events to the outbox in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    ConversationAssigned,
    ConversationMessageAdded,
    ConversationOpened,
    ConversationResolved,
    EventEnvelope,
    MessageReceived,
    utcnow,
)
from switchboard_common.http.errors import ApiError
from switchboard_conversation.conversations import repository
from switchboard_conversation.models import Conversation, ConversationStatus, Message

PRODUCER = "conversation"


async def resolve_customer(session: AsyncSession, event: MessageReceived) -> uuid.UUID:
    """The customer behind a message: found by any identity the message carries, or created.

    The sender's own identity wins; other identities (an email or phone the API caller gave) link the
    customer's channels. An identity already owned by another customer is not moved (merging is explicit).
    """
    refs = [event.sender, *event.identities]
    owners = await repository.customers_by_identity(session, refs)
    customer_id = owners.get((event.sender.kind, event.sender.value))
    if customer_id is None:
        customer_id = next(iter(owners.values()), None)
    if customer_id is None:
        customer_id = await repository.create_customer(session, event.display_name)
        # A concurrent first message from the same sender raises IntegrityError here; the consumer retries
        # the record alone and then finds the customer the other transaction created.
        await repository.add_identities(session, customer_id, [event.sender], tolerate_taken=False)
    elif event.display_name:
        await repository.set_display_name_if_missing(session, customer_id, event.display_name)
    missing = [r for r in refs if (r.kind, r.value) not in owners and r != event.sender]
    await repository.add_identities(session, customer_id, missing, tolerate_taken=True)
    return customer_id


async def record_inbound(
    session: AsyncSession, outbox: Outbox, envelope: EventEnvelope, event: MessageReceived
) -> None:
    """Store an inbound message in the customer's open conversation, opening one if there is none.

    Idempotent: a message id (or a channel's message id) already stored changes nothing.
    """
    if await repository.message_exists(session, event.message_id):
        return
    customer_id = await resolve_customer(session, event)
    conversation = await repository.unresolved_for_customer(session, customer_id)
    out: list[tuple[str, str, EventEnvelope]] = []
    if conversation is None:
        conversation = Conversation(
            id=uuid.uuid4(),
            customer_id=customer_id,
            status=ConversationStatus.OPEN.value,
            first_channel=event.channel.value,
            last_channel=event.channel.value,
            required_skills=event.required_skills,
            priority=event.priority,
            opened_at=event.received_at,
            last_message_at=event.received_at,
        )
        await repository.add_conversation(session, conversation)
        opened = ConversationOpened(
            conversation_id=conversation.id,
            customer_id=customer_id,
            channel=event.channel,
            required_skills=event.required_skills,
            priority=event.priority,
            opened_at=conversation.opened_at,
        )
        out.append((topics.CONVERSATION_EVENTS, str(conversation.id), _wrap(opened, envelope)))
    inserted = await repository.insert_message(
        session,
        Message(
            id=event.message_id,
            conversation_id=conversation.id,
            channel=event.channel.value,
            external_id=event.external_id,
            direction="inbound",
            body=event.text,
            sent_at=event.sent_at,
            received_at=event.received_at,
        ),
    )
    if not inserted:
        return  # the channel's id was stored under another message id: a duplicate, not a new message
    conversation.last_channel = event.channel.value
    conversation.last_message_at = max(conversation.last_message_at, event.received_at)
    added = ConversationMessageAdded(
        conversation_id=conversation.id,
        message_id=event.message_id,
        channel=event.channel,
        direction="inbound",
        sent_at=event.sent_at,
    )
    out.append((topics.CONVERSATION_EVENTS, str(conversation.id), _wrap(added, envelope)))
    await session.flush()
    await outbox.add_many(session, out)


async def record_assignment(session: AsyncSession, event: ConversationAssigned) -> None:
    await repository.mark_assigned(session, event.conversation_id, event.agent_id, event.assigned_at)


async def resolve(
    session: AsyncSession, outbox: Outbox, conversation: Conversation, at: datetime | None = None
) -> Conversation:
    if conversation.status == ConversationStatus.RESOLVED.value:
        raise ApiError(409, "conversation is already resolved", code="already_resolved")
    conversation.status = ConversationStatus.RESOLVED.value
    conversation.resolved_at = at or utcnow()
    await session.flush()
    resolved = ConversationResolved(
        conversation_id=conversation.id,
        agent_id=conversation.assigned_agent_id,
        resolved_at=conversation.resolved_at,
    )
    await outbox.add(
        session,
        topics.CONVERSATION_EVENTS,
        str(conversation.id),
        EventEnvelope.wrap(resolved, producer=PRODUCER),
    )
    return conversation


def _wrap(payload: ConversationOpened | ConversationMessageAdded, cause: EventEnvelope) -> EventEnvelope:
    return EventEnvelope.wrap(payload, producer=PRODUCER, causation=cause)
