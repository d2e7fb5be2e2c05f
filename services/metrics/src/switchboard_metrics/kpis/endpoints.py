from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from switchboard_common.auth import AdminPrincipal
from switchboard_common.events import (
    ConversationAssigned,
    ConversationOpened,
    ConversationResolved,
    MessageReceived,
)
from switchboard_common.http.app import runtime_of
from switchboard_common.runtime import ServiceRuntime
from switchboard_metrics.kpis import repository
from switchboard_metrics.kpis.schemas import KpiSnapshot, WaitStats

router = APIRouter(prefix="/v1", tags=["kpis"])


def _seconds(value: object) -> float | None:
    return None if value is None else round(float(value), 4)  # type: ignore[arg-type]


@router.get("/kpis", summary="Live KPIs: volumes, queue and time to assignment")
async def kpis(_: AdminPrincipal, runtime: Annotated[ServiceRuntime, Depends(runtime_of)]) -> KpiSnapshot:
    async with runtime.db.unit_of_work() as session:
        counts = await repository.counts(session)
        waits = await repository.wait_stats(session)
        waiting = await repository.waiting_now(session)
    return KpiSnapshot(
        messages_received=counts.get(MessageReceived.event_type, 0),
        conversations_opened=counts.get(ConversationOpened.event_type, 0),
        conversations_assigned=counts.get(ConversationAssigned.event_type, 0),
        conversations_resolved=counts.get(ConversationResolved.event_type, 0),
        waiting_now=int(waiting["waiting"]),
        longest_wait_seconds=_seconds(waiting["longest"]),
        time_to_assign_seconds=WaitStats(
            count=int(waits["assigned"]),
            **{k: _seconds(waits[k]) for k in ("avg", "p50", "p90", "p99", "max")},
        ),
        events_by_type=counts,
    )
