"""Teams' business hours (admin credential): out of them, a waiting customer is told when the team opens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from switchboard_common.auth import AdminPrincipal
from switchboard_common.events import utcnow
from switchboard_common.http.deps import SessionDep
from switchboard_common.http.openapi import errors
from switchboard_router.hours import service
from switchboard_router.hours.calendar import is_open, next_opening
from switchboard_router.hours.models import BusinessHoursRow
from switchboard_router.hours.repository import to_hours
from switchboard_router.hours.schemas import BusinessHoursIn, BusinessHoursPublic, OpeningSpan

router = APIRouter(prefix="/v1", tags=["teams"])
HOURS = "/teams/{name}/hours"
TeamName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
# OpenAPI cannot list them usefully (hundreds of zones, a subdivision depends on its country): a request
# that names an unknown one is answered 422 with the reason.
_CONSTRAINTS = {
    "x-constraints": "timezone is an IANA time zone; holidays_country a country the holidays "
    "library knows; holidays_subdivision one of that country's subdivisions, and only with it"
}


def _public(row: BusinessHoursRow) -> BusinessHoursPublic:
    hours, now = to_hours(row), utcnow()
    return BusinessHoursPublic(
        team=row.team,
        timezone=row.timezone,
        weekly=[OpeningSpan.model_validate(s) for s in row.weekly],
        holidays_country=row.country,
        holidays_subdivision=row.subdivision,
        open_now=is_open(hours, now),
        next_opening=next_opening(hours, now),
        updated_at=row.updated_at,
    )


@router.get(HOURS, summary="A team's business hours", responses=errors(401, 403, 404, 422, 503))
async def get_hours(name: TeamName, _: AdminPrincipal, session: SessionDep) -> BusinessHoursPublic:
    return _public(await service.get(session, name))


@router.put(
    HOURS,
    summary="Set a team's business hours: time zone, weekly spans, public holidays",
    responses=errors(400, 401, 403, 404, 413, 422, 503),
    openapi_extra=_CONSTRAINTS,
)
async def put_hours(
    name: TeamName, body: BusinessHoursIn, _: AdminPrincipal, session: SessionDep
) -> BusinessHoursPublic:
    return _public(await service.put(session, name, body))


@router.delete(
    HOURS,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a team's business hours (it is then always open)",
    responses=errors(401, 403, 404, 422, 503),
)
async def delete_hours(name: TeamName, _: AdminPrincipal, session: SessionDep) -> None:
    await service.delete(session, name)
