"""All SQL of business hours: the teams' calendars, and what the routing hot path needs to tell a
waiting customer (its estimate and its team's hours) in one statement for the whole batch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.db.sql import TEXTS, UUIDS, statement
from switchboard_router.hours.calendar import BusinessHours, Opening
from switchboard_router.hours.models import BusinessHoursRow
from switchboard_router.routing.estimate import HandleTimes, Slots
from switchboard_router.routing.repository import (
    HANDLE_TIMES_SQL,
    QUEUE_NEEDS_SQL,
    QUEUE_SLOTS_SQL,
    QUEUED_IN_SQL,
    RECENT_HANDLE_SQL,
    handle_times_of,
    slots_of,
)


def to_hours(row: BusinessHoursRow | Any) -> BusinessHours:
    return BusinessHours(
        row.timezone,
        tuple(
            Opening(int(s["weekday"]), time.fromisoformat(s["opens"]), time.fromisoformat(s["closes"]))
            for s in row.weekly
        ),
        row.country,
        row.subdivision,
    )


async def get(session: AsyncSession, team: str) -> BusinessHoursRow | None:
    return await session.get(BusinessHoursRow, team, populate_existing=True)


async def upsert(session: AsyncSession, team: str, values: dict[str, Any]) -> BusinessHoursRow:
    stmt = (
        insert(BusinessHoursRow)
        .values(team=team, **values)
        .on_conflict_do_update(
            index_elements=[BusinessHoursRow.team], set_={**values, "updated_at": sa.func.now()}
        )
        .returning(BusinessHoursRow)
    )
    return (await session.execute(stmt, execution_options={"populate_existing": True})).scalar_one()


async def delete(session: AsyncSession, team: str) -> bool:
    stmt = sa.delete(BusinessHoursRow).where(BusinessHoursRow.team == team).returning(BusinessHoursRow.team)
    return (await session.execute(stmt)).scalar_one_or_none() is not None


# Everything the announcement of conversations left waiting needs, as one row of JSON whatever the batch:
# - their positions in their queues (``policy.queue_order``), numbered over the queued tasks of the
#   batch's queues only, once (not a count per task);
# - the slots serving those queues and the recent handle times, as the queue view reads them; the
#   requirements waiting in those queues come from the same scan of their queued tasks (``queued``) as
#   the positions, so a batch scans them once, not twice;
# - per queue of the batch, the business hours of its team, else of the default queue's team.
_OUTLOOK = statement(
    f"""
    WITH queued AS MATERIALIZED ({QUEUED_IN_SQL}
    ), ranked AS (
        SELECT t.conversation_id,
               row_number() OVER (PARTITION BY t.queue
                                  ORDER BY t.priority DESC, t.enqueued_at, t.conversation_id) AS position
        FROM queued t
    ), needs AS ({QUEUE_NEEDS_SQL}
    ), slots AS ({QUEUE_SLOTS_SQL}
    ), recent AS ({RECENT_HANDLE_SQL}
    ), handle AS ({HANDLE_TIMES_SQL}
    ), hours AS (
        SELECT q.name AS queue, h.timezone, h.weekly, h.country, h.subdivision
        FROM unnest(:queues) AS q(name)
        LEFT JOIN router.queues own ON own.name = q.name
        LEFT JOIN router.queues dflt ON dflt.name = 'default'
        JOIN router.business_hours h ON h.team = coalesce(own.team, dflt.team)
    )
    SELECT
        (SELECT coalesce(jsonb_object_agg(conversation_id, position), '{{}}')
         FROM ranked WHERE conversation_id = ANY(:ids)) AS positions,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(queue, capacity, free)), '[]') FROM slots) AS slots,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(overall, queue, n, mean_seconds)), '[]')
         FROM handle) AS handle,
        (SELECT coalesce(jsonb_agg(to_jsonb(hours)), '[]') FROM hours) AS hours
    """,  # noqa: S608 - the fragments are the queue view's SQL, not input
    ids=UUIDS,
    queues=TEXTS,
    sample=sa.Integer(),
)


@dataclass(frozen=True, slots=True)
class Outlook:
    positions: dict[uuid.UUID, int]
    slots: dict[str, Slots]  # queue -> the slots serving it (queues no online agent can serve left out)
    measured: HandleTimes
    hours: dict[str, BusinessHours]  # queue -> its team's hours (queues without any are left out)


@dataclass(frozen=True, slots=True)
class _Hours:
    timezone: str
    weekly: list[dict[str, Any]]
    country: str | None
    subdivision: str | None


async def outlook(
    session: AsyncSession, conversation_ids: Sequence[uuid.UUID], queues: Sequence[str], sample: int
) -> Outlook:
    row = (
        await session.execute(
            _OUTLOOK, {"ids": list(conversation_ids), "queues": sorted(set(queues)), "sample": sample}
        )
    ).one()

    def loaded(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return Outlook(
        positions={uuid.UUID(k): int(v) for k, v in loaded(row.positions).items()},
        slots=slots_of(tuple(s) for s in loaded(row.slots)),
        measured=handle_times_of(tuple(h) for h in loaded(row.handle)),
        hours={
            h["queue"]: to_hours(_Hours(h["timezone"], h["weekly"], h["country"], h["subdivision"]))
            for h in loaded(row.hours)
        },
    )
