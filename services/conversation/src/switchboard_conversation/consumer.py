"""What the conversation service does with the events it consumes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import ConversationAssigned, EventEnvelope, MessageReceived
from switchboard_conversation.conversations import service

GROUP_ID = "conversation"


class ConversationEventHandler:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def __call__(self, session: AsyncSession, envelope: EventEnvelope) -> None:
        event = envelope.parse()
        if isinstance(event, MessageReceived):
            await service.record_inbound(session, self._outbox, envelope, event)
        elif isinstance(event, ConversationAssigned):
            await service.record_assignment(session, event)
        # Other routing events (conversation.queued) carry nothing this service stores.
