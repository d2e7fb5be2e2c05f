"""What the conversation service does with the events it consumes: one batch handler per payload type."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    AgentDeleted,
    ConversationAssigned,
    ConversationOfferDeclined,
    ConversationOffered,
    ConversationOfferTimedOut,
    ConversationQueued,
    ConversationRequeued,
    DeliveryStatusChanged,
    MessageReceived,
)
from switchboard_common.kafka.consumer import Delivery, Handlers
from switchboard_conversation import revoked
from switchboard_conversation.automation import service as automation
from switchboard_conversation.automation.autoreply import AckTemplates
from switchboard_conversation.conversations import service
from switchboard_conversation.stream import service as stream

GROUP_ID = "conversation"


def handlers(
    outbox: Outbox, reopen_window: timedelta = service.DEFAULT_REOPEN_WINDOW, acks: AckTemplates | None = None
) -> Handlers:
    """``acks``: the acknowledgement's texts; none sends no acknowledgement."""

    async def on_messages(session: AsyncSession, deliveries: Sequence[Delivery[MessageReceived]]) -> None:
        await service.record_inbound(
            session, outbox, [(d.envelope, d.payload) for d in deliveries], reopen_window
        )

    async def on_assigned(session: AsyncSession, deliveries: Sequence[Delivery[Any]]) -> None:
        await service.record_assignments(session, [d.payload for d in deliveries])

    async def on_requeued(
        session: AsyncSession, deliveries: Sequence[Delivery[ConversationRequeued]]
    ) -> None:
        await service.record_requeues(session, [d.payload for d in deliveries])

    async def on_delivery(
        session: AsyncSession, deliveries: Sequence[Delivery[DeliveryStatusChanged]]
    ) -> None:
        await service.record_delivery(session, [d.payload for d in deliveries])

    async def on_queued(session: AsyncSession, deliveries: Sequence[Delivery[ConversationQueued]]) -> None:
        await service.record_queued(session, [d.payload for d in deliveries])
        if acks is not None:
            # Only a conversation still waiting once its batch is recorded gets an acknowledgement.
            await automation.acknowledge(session, outbox, [(d.envelope, d.payload) for d in deliveries], acks)

    async def on_offers(session: AsyncSession, deliveries: Sequence[Delivery[Any]]) -> None:
        await stream.record_offers(session, [d.payload for d in deliveries])

    async def on_agent_deleted(session: AsyncSession, deliveries: Sequence[Delivery[AgentDeleted]]) -> None:
        await revoked.record(session, [d.payload for d in deliveries])

    return {
        MessageReceived: on_messages,
        # In causal order: left waiting, offered, the offer ended (or accepted: assigned), taken back,
        # assigned again (the runner cuts a poll that goes back).
        ConversationQueued: on_queued,
        ConversationOffered: on_offers,
        ConversationOfferDeclined: on_offers,
        ConversationOfferTimedOut: on_offers,
        ConversationAssigned: on_assigned,
        ConversationRequeued: on_requeued,
        DeliveryStatusChanged: on_delivery,
        AgentDeleted: on_agent_deleted,
    }
