"""Writing the feed from the service functions and the offer handlers, in the caller's transaction.

Items of the consumer's other batches (customers' messages, assignments, requeues, reopenings, delivery
reports) are written inside the statements that make those changes (``conversations/repository.py``), so
those batches keep their statement counts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import (
    ConversationOfferDeclined,
    ConversationOffered,
    ConversationOfferTimedOut,
)
from switchboard_conversation.stream import repository
from switchboard_conversation.stream.repository import NewItem
from switchboard_conversation.stream.schemas import FeedKind

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

OfferEvent = ConversationOffered | ConversationOfferDeclined | ConversationOfferTimedOut
OFFER_KINDS: dict[type[OfferEvent], FeedKind] = {
    ConversationOffered: FeedKind.OFFERED,
    ConversationOfferDeclined: FeedKind.OFFER_DECLINED,
    ConversationOfferTimedOut: FeedKind.OFFER_TIMED_OUT,
}


def item_key(conversation_id: uuid.UUID, at: datetime) -> str:
    """The key of an item that is one conversation's event at one instant (as ``sql.micros`` writes)."""
    return f"{conversation_id}:{(at - _EPOCH) // timedelta(microseconds=1)}"


def _offer_item(event: OfferEvent) -> NewItem:
    # An offer is the conversation offered to the agent at offered_at: its end shares the key in its kind.
    data = event.model_dump(mode="json", exclude={"conversation_id", "agent_id"})
    return NewItem(
        agent_id=event.agent_id,
        kind=OFFER_KINDS[type(event)].value,
        item_key=item_key(event.conversation_id, event.offered_at),
        conversation_id=event.conversation_id,
        data=json.dumps(data),
    )


async def record_offers(session: AsyncSession, events: Sequence[OfferEvent]) -> None:
    """Offers made to agents and their ends (declined, lapsed), each to the agent it names."""
    await repository.add_items(session, [_offer_item(e) for e in events])


async def message_added(session: AsyncSession, message_id: uuid.UUID) -> None:
    """An agent's reply or note, to the conversation's assigned agent (other desks of the same agent, or
    the new owner of a conversation noted after it moved)."""
    await repository.add_message(session, message_id)


async def resolved(
    session: AsyncSession, conversation_id: uuid.UUID, agent_id: uuid.UUID | None, at: datetime
) -> None:
    """The conversation was resolved; its assigned agent, if any, is told."""
    if agent_id is not None:
        item = NewItem(
            agent_id=agent_id,
            kind=FeedKind.RESOLVED.value,
            item_key=item_key(conversation_id, at),
            conversation_id=conversation_id,
            data=json.dumps({"resolved_at": at.isoformat()}),
        )
        await repository.add_items(session, [item])
