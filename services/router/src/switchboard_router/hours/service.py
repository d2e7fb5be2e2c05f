"""Business hours: the teams' calendars, and what a customer left waiting is told (their estimated wait,
or when their team opens)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.errors import NotFound
from switchboard_router.hours import repository
from switchboard_router.hours.calendar import is_open, next_opening
from switchboard_router.hours.models import BusinessHoursRow
from switchboard_router.hours.schemas import BusinessHoursIn
from switchboard_router.models import Team
from switchboard_router.routing import estimate
from switchboard_router.routing.policy import Waiting


async def get(session: AsyncSession, team: str) -> BusinessHoursRow:
    row = await repository.get(session, team)
    if row is None:
        raise NotFound("no business hours for this team")
    return row


async def put(session: AsyncSession, team: str, body: BusinessHoursIn) -> BusinessHoursRow:
    if await session.get(Team, team) is None:
        raise NotFound("team not found")
    values = {
        "timezone": body.timezone,
        "weekly": [s.model_dump() for s in body.weekly],
        "country": body.holidays_country,
        "subdivision": body.holidays_subdivision,
    }
    return await repository.upsert(session, team, values)


async def delete(session: AsyncSession, team: str) -> None:
    if not await repository.delete(session, team):
        raise NotFound("no business hours for this team")


@dataclass(frozen=True, slots=True)
class Outlook:
    """What a waiting customer can be told."""

    position: int | None
    estimated_wait_s: int | None
    opens_at: datetime | None  # set only when the team is closed now
    timezone: str | None  # the team's, when it has hours


def tell(
    tasks: Sequence[Waiting], found: repository.Outlook, prior_handle_s: float, now: datetime
) -> dict[uuid.UUID, Outlook]:
    """Each task's position in its queue and estimated wait (``routing.estimate``), and when its team opens
    if closed."""
    out: dict[uuid.UUID, Outlook] = {}
    for task in tasks:
        position = found.positions.get(task.conversation_id)
        wait = (
            estimate.estimate_one(position, task.queue, found.slots, found.measured, prior_handle_s)
            if position is not None
            else None
        )
        hours = found.hours.get(task.queue)
        closed = hours is not None and not is_open(hours, now)
        out[task.conversation_id] = Outlook(
            position,
            wait.wait_seconds if wait is not None else None,
            next_opening(hours, now) if hours is not None and closed else None,
            hours.timezone if hours is not None else None,
        )
    return out


async def outlook(
    session: AsyncSession, tasks: Sequence[Waiting], sample: int, prior_handle_s: float, now: datetime
) -> dict[uuid.UUID, Outlook]:
    """``tell`` for tasks this transaction left waiting: one statement whatever their number."""
    if not tasks:
        return {}
    found = await repository.outlook(
        session, [t.conversation_id for t in tasks], [t.queue for t in tasks], sample
    )
    return tell(tasks, found, prior_handle_s, now)
