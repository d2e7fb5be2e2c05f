"""Satisfaction surveys: asked through the customer's channel when a conversation is resolved, answered
there by the customer's next message when it is a score (recorded by the inbound batch, see
``conversations.service.record_inbound``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import topics
from switchboard_common.db.outbox import Outbox
from switchboard_common.errors import Conflict
from switchboard_common.events import Channel, EventEnvelope, MessageOutbound, outbound_event_id, utcnow
from switchboard_conversation.automation import repository as automated
from switchboard_conversation.conversations.service import PRODUCER, email_threading, recipient_of
from switchboard_conversation.models import Conversation, Survey
from switchboard_conversation.surveys import repository
from switchboard_conversation.surveys.policy import SCALES, SurveyConfig

# Asking on voice would be a phone call back to the customer: no survey there.
SILENT_CHANNELS = frozenset({Channel.VOICE})


async def ask(
    session: AsyncSession,
    outbox: Outbox,
    conversation: Conversation,
    config: SurveyConfig,
    now: datetime | None = None,
) -> Survey | None:
    """Ask the customer of a just-resolved conversation the survey's question, as an automated message on the
    channel they last wrote on. None when they cannot be reached there (no error: the resolution stands)."""
    channel = Channel(conversation.last_channel)
    if channel in SILENT_CHANNELS:
        return None
    try:
        recipient = await recipient_of(session, conversation.customer_id, channel)
    except Conflict:
        return None
    now = now or utcnow()
    survey = Survey(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        customer_id=conversation.customer_id,
        kind=config.kind.value,
        channel=channel.value,
        agent_id=conversation.assigned_agent_id,
        asked_at=now,
        expires_at=now + config.window,
    )
    await repository.add(session, survey)
    question = SCALES[config.kind].question
    message_id = uuid.uuid5(survey.id, "question")
    await automated.add_automated(
        session,
        [
            automated.NewAutomated(
                message_id, conversation.id, channel.value, question, now, f"survey:{survey.id}"
            )
        ],
    )
    threading = await email_threading(session, conversation.id) if channel is Channel.EMAIL else {}
    outbound = MessageOutbound(
        message_id=message_id,
        conversation_id=conversation.id,
        customer_id=conversation.customer_id,
        channel=channel,
        agent_id=None,
        text=question,
        sent_at=now,
        recipient=recipient,
        automated=True,
        **threading,
    )
    envelope = EventEnvelope.wrap(outbound, producer=PRODUCER, event_id=outbound_event_id(message_id))
    await outbox.add_many(session, [(topics.MESSAGES_OUTBOUND, str(conversation.id), envelope)])
    return survey
