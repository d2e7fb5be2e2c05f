"""What the router does with conversation events."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import ConversationOpened, ConversationResolved, EventEnvelope
from switchboard_router.routing import service

GROUP_ID = "router"


class RoutingEventHandler:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def __call__(self, session: AsyncSession, envelope: EventEnvelope) -> None:
        event = envelope.parse()
        if isinstance(event, ConversationOpened):
            await service.on_conversation_opened(session, self._outbox, envelope, event)
        elif isinstance(event, ConversationResolved):
            await service.on_conversation_resolved(session, self._outbox, event)
        # conversation.message_added needs no routing decision yet.
