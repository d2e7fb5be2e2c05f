"""Agents deleted at the router, whose tokens this service refuses.

A token stays validly signed until it expires (``SWITCHBOARD_AGENT_TOKEN_TTL_SECONDS``), so signature
checks alone would let a deleted agent keep reading their team's queue. The router announces a deletion
(``agent.deleted``); the consumer records it, and every replica keeps the set of deleted agents in memory,
reloaded every ``SWITCHBOARD_CONVERSATION_REVOCATION_REFRESH_S`` (2 s): a request costs no extra query,
and a deleted agent's token is refused by every replica within that time of the event's arrival.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.background import Periodic
from switchboard_common.db.database import Database
from switchboard_common.db.sql import TIMES, UUIDS, statement
from switchboard_common.events import AgentDeleted

_RECORD = statement(
    """
    INSERT INTO conversation.revoked_agents (agent_id, revoked_at) SELECT * FROM unnest(:ids, :ats)
    ON CONFLICT (agent_id) DO NOTHING
    """,
    ids=UUIDS,
    ats=TIMES,
)
_ALL = sa.text("SELECT agent_id FROM conversation.revoked_agents")


async def record(session: AsyncSession, events: Sequence[AgentDeleted]) -> None:
    """One statement for the batch; a redelivered deletion changes nothing."""
    await session.execute(
        _RECORD, {"ids": [e.agent_id for e in events], "ats": [e.deleted_at for e in events]}
    )


class RevokedAgents(Periodic):
    """The deleted agents, as a container the authentication consults (``agent_id in revoked``)."""

    def __init__(self, db: Database, refresh_s: float) -> None:
        super().__init__("revoked-agents", self.reload, refresh_s, first_delay_s=0)
        self._db = db
        self._ids: frozenset[uuid.UUID] = frozenset()

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._ids

    async def reload(self) -> None:
        async with self._db.unit_of_work() as session:
            self._ids = frozenset((await session.scalars(_ALL)).all())
