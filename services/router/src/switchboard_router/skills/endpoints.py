"""The skills catalogue: anyone signed in reads it; only the admin credential changes it, as teams and
queues."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from switchboard_common.auth import AdminPrincipal
from switchboard_common.http.deps import SessionDep
from switchboard_common.http.openapi import errors
from switchboard_router.agents.endpoints import SettingName
from switchboard_router.principal import LivePrincipal
from switchboard_router.skills import repository, service
from switchboard_router.skills.schemas import SkillPublic, SkillUpsert

router = APIRouter(prefix="/v1", tags=["skills"])
SKILL = "/skills/{name}"


@router.get(
    "/skills",
    summary="The skills catalogue, by name, with how many agents hold each",
    responses=errors(401, 422, 503),
)
async def list_skills(
    _: LivePrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[SkillPublic]:
    return [SkillPublic.model_validate(e) for e in await repository.list_skills(session, limit, offset)]


@router.get(SKILL, summary="One catalogued skill", responses=errors(401, 404, 422, 503))
async def get_skill(name: SettingName, _: LivePrincipal, session: SessionDep) -> SkillPublic:
    return SkillPublic.model_validate(await service.get(session, name))


@router.put(
    SKILL,
    summary="Add a skill to the catalogue, or change its description",
    responses=errors(400, 401, 403, 413, 422, 503),
)
async def put_skill(
    name: SettingName, body: SkillUpsert, _: AdminPrincipal, session: SessionDep
) -> SkillPublic:
    return SkillPublic.model_validate(await service.put(session, name, body.description))


@router.delete(
    SKILL,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a skill no agent holds and no routing rule uses",
    responses=errors(
        401,
        403,
        404,
        409,
        422,
        503,
        described={
            409: "Agents hold the skill or routing rules use it (`skill_in_use`; `details` gives the "
            "number of agents and the rules' names)."
        },
    ),
)
async def delete_skill(name: SettingName, _: AdminPrincipal, session: SessionDep) -> None:
    await service.delete(session, name)
