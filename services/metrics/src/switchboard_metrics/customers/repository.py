"""SQL of metrics' side of a customer merge."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import TIMES, UUIDS, statement

# Conversations per customer counts distinct customer ids over the facts: the source's conversations are
# the target's now.
_MOVE_CONVERSATIONS = statement(
    """
    UPDATE metrics.conversation_facts f SET customer_id = u.target
    FROM unnest(:sources, :targets) AS u(source, target)
    WHERE f.customer_id = u.source
    """,
    sources=UUIDS,
    targets=UUIDS,
)

# A conversation a merge closed is no longer open (``is_open`` follows ``last_resolved_at``), but it was
# not resolved: ``resolved_at``, which the KPI cells read, stays unset, so no resolution is counted.
_CLOSE = statement(
    """
    UPDATE metrics.conversation_facts f
    SET last_resolved_at = greatest(f.last_resolved_at, u.at)
    FROM unnest(:ids, :ats) AS u(id, at)
    WHERE f.conversation_id = u.id
    """,
    ids=UUIDS,
    ats=TIMES,
)


async def move_conversations(session: AsyncSession, targets: Mapping[uuid.UUID, uuid.UUID]) -> None:
    if targets:
        await session.execute(
            _MOVE_CONVERSATIONS, {"sources": list(targets), "targets": list(targets.values())}
        )


async def close_conversations(session: AsyncSession, closed: Mapping[uuid.UUID, datetime]) -> None:
    if closed:
        await session.execute(_CLOSE, {"ids": list(closed), "ats": list(closed.values())})
