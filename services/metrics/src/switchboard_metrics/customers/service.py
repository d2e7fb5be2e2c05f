"""Metrics follows ``customer.merged``: the facts of the source's conversations name the target, and the
conversation a merge closed leaves the open ones. Idempotent: applied again it changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import CustomerMerged, merged_targets
from switchboard_common.kafka.consumer import Delivery
from switchboard_metrics.customers import repository


async def on_customer_merged(session: AsyncSession, deliveries: Sequence[Delivery[CustomerMerged]]) -> None:
    merges = [d.payload for d in deliveries]
    await repository.move_conversations(session, merged_targets(merges))
    await repository.close_conversations(
        session, {m.closed_conversation_id: m.merged_at for m in merges if m.closed_conversation_id}
    )
