"""The feed's SQL: items written by service functions and the offer handlers, streams' reads, retention.

Order: ``seq`` is drawn when a row is inserted, but transactions commit in any order, so a stream reading
"after the last seq it sent" could skip a row committed late with a smaller seq. Rows carry their
writing transaction's id (``tx``) instead, and a read returns only rows of transactions older than every
transaction still running (the snapshot's ``xmin``), in ``(tx, seq)`` order: every row a later read can
see then sorts after everything already sent. A row waits at most for the writing transactions that
started before its own to end.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import TEXTS, UUIDS, statement
from switchboard_conversation.stream.sql import INSERT, message_data

# A position in the stream: (tx, seq) of the last row sent.
Position = tuple[int, int]
START: Position = (0, 0)

_ADD_ITEMS = statement(
    f"""
    {INSERT}
    SELECT agent_id, kind, item_key, conversation_id, data::jsonb
    FROM unnest(:agents, :kinds, :keys, :conversations, :data) AS u(agent_id, kind, item_key,
        conversation_id, data)
    ON CONFLICT DO NOTHING
    """,  # noqa: S608 - the fragments are ours, not input
    agents=UUIDS,
    kinds=TEXTS,
    keys=TEXTS,
    conversations=UUIDS,
    data=TEXTS,
)

# The conversation's assigned agent at this moment is the item's recipient; none, no item.
_ADD_MESSAGE = statement(
    f"""
    {INSERT}
    SELECT c.assigned_agent_id, 'message', m.id::text, m.conversation_id, {message_data("m")}
    FROM conversation.messages m JOIN conversation.conversations c ON c.id = m.conversation_id
    WHERE m.id = :id AND c.assigned_agent_id IS NOT NULL
    ON CONFLICT DO NOTHING
    """,  # noqa: S608 - the fragments are ours, not input
    id=sa.Uuid(),
)

_HORIZON = "(pg_snapshot_xmin(pg_current_snapshot()))::text::bigint"
_COLUMNS = "seq, tx, agent_id, kind, conversation_id, data, at"
_READ_AGENT = statement(
    f"""
    SELECT {_COLUMNS} FROM conversation.agent_feed
    WHERE agent_id = :agent AND (tx, seq) > (:tx, :seq) AND tx < {_HORIZON}
    ORDER BY tx, seq LIMIT :limit
    """,  # noqa: S608 - the fragments are ours, not input
    agent=sa.Uuid(),
    tx=sa.BigInteger(),
    seq=sa.BigInteger(),
    limit=sa.Integer(),
)
_READ_ALL = statement(
    f"""
    SELECT {_COLUMNS} FROM conversation.agent_feed
    WHERE (tx, seq) > (:tx, :seq) AND tx < {_HORIZON}
    ORDER BY tx, seq LIMIT :limit
    """,  # noqa: S608 - the fragments are ours, not input
    tx=sa.BigInteger(),
    seq=sa.BigInteger(),
    limit=sa.Integer(),
)
_POSITION_OF = statement("SELECT tx FROM conversation.agent_feed WHERE seq = :seq", seq=sa.BigInteger())
_NOW = sa.text(f"SELECT {_HORIZON}")
_PURGE = statement("DELETE FROM conversation.agent_feed WHERE at < now() - :keep", keep=sa.Interval())


@dataclass(frozen=True, slots=True)
class NewItem:
    agent_id: uuid.UUID
    kind: str
    item_key: str
    conversation_id: uuid.UUID
    data: str  # a JSON object


@dataclass(frozen=True, slots=True)
class FeedItem:
    seq: int
    tx: int
    agent_id: uuid.UUID
    kind: str
    conversation_id: uuid.UUID
    data: dict[str, Any]
    at: datetime

    @property
    def position(self) -> Position:
        return (self.tx, self.seq)


async def add_items(session: AsyncSession, items: Sequence[NewItem]) -> None:
    """Insert items, one statement whatever their number; an item already there is left alone."""
    if items:
        await session.execute(
            _ADD_ITEMS,
            {
                "agents": [i.agent_id for i in items],
                "kinds": [i.kind for i in items],
                "keys": [i.item_key for i in items],
                "conversations": [i.conversation_id for i in items],
                "data": [i.data for i in items],
            },
        )


async def add_message(session: AsyncSession, message_id: uuid.UUID) -> None:
    """A ``message`` item for the stored message, to its conversation's assigned agent if any."""
    await session.execute(_ADD_MESSAGE, {"id": message_id})


async def read(
    session: AsyncSession, agent_id: uuid.UUID | None, after: Position, limit: int
) -> list[FeedItem]:
    """Up to ``limit`` items after ``after`` in stream order, of ``agent_id`` (every agent's for None)."""
    params: dict[str, Any] = {"tx": after[0], "seq": after[1], "limit": limit}
    if agent_id is None:
        rows = await session.execute(_READ_ALL, params)
    else:
        rows = await session.execute(_READ_AGENT, {**params, "agent": agent_id})
    return [FeedItem(*row) for row in rows]


async def position_after(session: AsyncSession, seq: int | None) -> Position:
    """Where a stream resumes: after the row ``seq`` names; from now when there is none; from the start
    of what is kept when the row is gone (past retention) or was never sent (the client missed rows, or
    never had any: it gets everything kept rather than a gap)."""
    if seq is None:
        # Every row of a transaction older than the horizon is committed now: from here on is "new".
        return (int((await session.execute(_NOW)).scalar_one()) - 1, 2**63 - 1)
    tx = (await session.execute(_POSITION_OF, {"seq": seq})).scalar_one_or_none()
    return START if tx is None else (int(tx), seq)


async def purge(session: AsyncSession, keep: timedelta) -> int:
    """Delete the items older than ``keep``, in one statement; returns how many."""
    result = await session.execute(_PURGE, {"keep": keep})
    return int(getattr(result, "rowcount", 0) or 0)
