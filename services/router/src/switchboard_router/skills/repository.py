"""The skills catalogue's SQL. Agents counted are those not deleted; the GIN index on ``agents.skills``
answers "holds this skill"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import TEXTS, statement

_WITH_HOLDERS = """
    SELECT s.name, s.description, s.created_at,
           (SELECT count(*) FROM router.agents a
            WHERE a.deleted_at IS NULL AND a.skills @> ARRAY[s.name]) AS agents
    FROM router.skills s
"""
_LIST = statement(
    f"{_WITH_HOLDERS} ORDER BY s.name LIMIT :limit OFFSET :offset",
    limit=sa.Integer(),
    offset=sa.Integer(),
)
_ONE = statement(f"{_WITH_HOLDERS} WHERE s.name = :name", name=sa.Text())


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str
    description: str
    created_at: datetime
    agents: int  # agents (not deleted) holding it


async def list_skills(session: AsyncSession, limit: int, offset: int) -> list[CatalogueEntry]:
    rows = await session.execute(_LIST, {"limit": limit, "offset": offset})
    return [CatalogueEntry(r.name, r.description, r.created_at, int(r.agents)) for r in rows]


async def get(session: AsyncSession, name: str) -> CatalogueEntry | None:
    r = (await session.execute(_ONE, {"name": name})).one_or_none()
    return None if r is None else CatalogueEntry(r.name, r.description, r.created_at, int(r.agents))


# Skills locked FOR SHARE by whoever names them (an agent's or a rule's write), FOR UPDATE by a deletion:
# a deletion waits for writes naming the skill to commit, and sees them; a write waiting for a deletion
# finds the skill gone. Shared locks never block each other, so writes naming the same skill do not queue.
_KNOWN = statement(
    "SELECT name FROM router.skills WHERE name = ANY(:names) ORDER BY name FOR SHARE", names=TEXTS
)
_LOCK = statement("SELECT name FROM router.skills WHERE name = :name FOR UPDATE", name=sa.Text())


async def lock_known(session: AsyncSession, names: Sequence[str]) -> set[str]:
    """Those of ``names`` in the catalogue, locked against deletion until this transaction ends."""
    return set((await session.scalars(_KNOWN, {"names": list(names)})).all())


async def lock_for_delete(session: AsyncSession, name: str) -> bool:
    """Lock the skill against being named meanwhile; False when it is not catalogued."""
    return (await session.scalar(_LOCK, {"name": name})) is not None


_RULES_USING = statement(
    """
    SELECT name FROM router.routing_rules
    WHERE jsonb_exists(outcome -> 'required_skills', :name)
       OR jsonb_exists(outcome -> 'optional_skills', :name)
    ORDER BY position, id
    """,
    name=sa.Text(),
)
_HOLDERS = statement(
    "SELECT count(*) FROM router.agents WHERE deleted_at IS NULL AND skills @> ARRAY[CAST(:name AS text)]",
    name=sa.Text(),
)


async def usage(session: AsyncSession, name: str) -> tuple[int, list[str]]:
    """How many agents (not deleted) hold the skill, and the names of the routing rules that use it."""
    agents = int(await session.scalar(_HOLDERS, {"name": name}) or 0)
    rules = list((await session.scalars(_RULES_USING, {"name": name})).all())
    return agents, rules
