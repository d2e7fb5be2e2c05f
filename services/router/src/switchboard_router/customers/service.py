"""The router follows ``customer.merged``: the conversation a merge closed frees its agent, and the source
customer's tasks become the target's (sticky routing reads them)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import CustomerMerged, merged_targets
from switchboard_router.customers import repository
from switchboard_router.routing import repository as routing
from switchboard_router.routing.service import assign_queued


async def on_customer_merged(session: AsyncSession, outbox: Outbox, merges: Sequence[CustomerMerged]) -> None:
    """Close the tasks of the conversations the merges closed (as a resolution does: capacity freed once,
    those agents refilled) and move the sources' tasks to their targets. Idempotent: a closed task stays
    closed, a moved task has no source id left."""
    freed = await routing.close_tasks(
        session, {m.closed_conversation_id: m.merged_at for m in merges if m.closed_conversation_id}
    )
    await repository.move_tasks(session, merged_targets(merges))
    if freed:
        await routing.release(session, freed)
        await assign_queued(session, outbox, list(freed))
