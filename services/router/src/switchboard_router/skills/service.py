"""The skills catalogue: the names agents' skills and routing rules' skills may use. Checked where they
are written (agents, rules); a conversation's own skills (the API channel's, a transfer's) come through
events and are not checked: one nobody holds simply waits."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.errors import Conflict, Invalid, NotFound
from switchboard_router.agents import repository as named
from switchboard_router.skills import repository
from switchboard_router.skills.models import Skill
from switchboard_router.skills.repository import CatalogueEntry

UNKNOWN_SKILL = "unknown_skill"
# What an operation whose body names skills declares in its document (OpenAPI cannot say "one of the rows of
# a table"): a schema-valid body may still be refused with 422 unknown_skill.
CATALOGUED = {"x-constraints": "every skill named is in the skills catalogue (/v1/skills)"}


async def require_known(session: AsyncSession, names: Iterable[str]) -> None:
    """Invalid (422 ``unknown_skill``, ``details.skills`` naming them) unless every skill is catalogued;
    those are then locked against deletion until the transaction ends."""
    wanted = sorted(set(names))
    if not wanted:
        return
    known = await repository.lock_known(session, wanted)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise Invalid(
            f"not in the skills catalogue: {', '.join(unknown)} (add with PUT /v1/skills/{{name}})",
            code=UNKNOWN_SKILL,
            details={"skills": unknown},
        )


async def get(session: AsyncSession, name: str) -> CatalogueEntry:
    entry = await repository.get(session, name)
    if entry is None:
        raise NotFound("skill not found")
    return entry


# A skill is a named row like a team or a queue: written and deleted by the same SQL (``named``).
async def put(session: AsyncSession, name: str, description: str) -> CatalogueEntry:
    await named.upsert_named(session, Skill, name, {"description": description})
    return await get(session, name)


async def delete(session: AsyncSession, name: str) -> None:
    """Remove a skill no agent holds and no routing rule uses; Conflict (``skill_in_use``) otherwise."""
    if not await repository.lock_for_delete(session, name):
        raise NotFound("skill not found")
    agents, rules = await repository.usage(session, name)
    if agents or rules:
        raise Conflict(
            f"skill {name!r} is held by {agents} agent(s) and used by {len(rules)} routing rule(s)",
            code="skill_in_use",
            details={"agents": agents, "rules": rules},
        )
    await named.delete_named(session, Skill, name)
