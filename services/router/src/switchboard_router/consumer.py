"""What the router does with conversation events: one batch handler per payload type, in causal order."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import (
    ConversationOpened,
    ConversationReopened,
    ConversationResolved,
    ConversationTransferRequested,
    CustomerMerged,
    MessageOutbound,
    Payload,
)
from switchboard_common.kafka.consumer import BatchHandler, Delivery, Handlers
from switchboard_router.customers import service as customers
from switchboard_router.routing import service

GROUP_ID = "router"


def handlers(outbox: Outbox, config: service.RoutingConfig) -> Handlers:
    async def on_opened(session: AsyncSession, deliveries: Sequence[Delivery[ConversationOpened]]) -> None:
        await service.on_opened(session, outbox, [(d.envelope, d.payload) for d in deliveries], config)

    async def on_resolved(
        session: AsyncSession, deliveries: Sequence[Delivery[ConversationResolved]]
    ) -> None:
        await service.on_resolved(session, outbox, [d.payload for d in deliveries])

    async def on_reopened(
        session: AsyncSession, deliveries: Sequence[Delivery[ConversationReopened]]
    ) -> None:
        await service.on_reopened(session, outbox, [(d.envelope, d.payload) for d in deliveries], config)

    async def on_transfer(
        session: AsyncSession, deliveries: Sequence[Delivery[ConversationTransferRequested]]
    ) -> None:
        await service.on_transfer_requested(session, outbox, [d.payload for d in deliveries])

    async def on_merged(session: AsyncSession, deliveries: Sequence[Delivery[CustomerMerged]]) -> None:
        await customers.on_customer_merged(session, outbox, [d.payload for d in deliveries])

    async def on_replied(session: AsyncSession, deliveries: Sequence[Delivery[MessageOutbound]]) -> None:
        await service.on_replied(session, [d.payload for d in deliveries])

    # In causal order: a conversation opened, resolved and reopened within one poll is queued, closed,
    # then queued again (the runner cuts a poll where one conversation would go back in this order).
    # Replies are read only when unanswered assignments are requeued: otherwise the router does not
    # subscribe to messages.outbound at all.
    mapping: dict[type[Payload], BatchHandler] = {
        ConversationOpened: on_opened,
        ConversationResolved: on_resolved,
        ConversationReopened: on_reopened,
        ConversationTransferRequested: on_transfer,
        # After the openings of the poll: a conversation opened just before a merge closed it is closed.
        CustomerMerged: on_merged,
    }
    if config.no_answer_timeout:
        mapping[MessageOutbound] = on_replied
    return mapping
