"""SQL of the router's side of a customer merge."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import UUIDS, statement

# Sticky routing prefers a customer's previous agent by the tasks' customer id: the source's history
# becomes the target's. Re-applying it changes nothing.
_MOVE_TASKS = statement(
    """
    UPDATE router.tasks t SET customer_id = u.target
    FROM unnest(:sources, :targets) AS u(source, target)
    WHERE t.customer_id = u.source
    """,
    sources=UUIDS,
    targets=UUIDS,
)


async def move_tasks(session: AsyncSession, targets: Mapping[uuid.UUID, uuid.UUID]) -> None:
    """Give every task of each source customer to its target (source -> target), in one statement."""
    if targets:
        await session.execute(_MOVE_TASKS, {"sources": list(targets), "targets": list(targets.values())})
