from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from switchboard_common.auth import AdminPrincipal
from switchboard_common.events import Channel, utcnow
from switchboard_common.http.deps import RuntimeDep, SessionDep
from switchboard_common.http.errors import ApiError
from switchboard_common.http.openapi import errors
from switchboard_common.validation import StorableDatetime, StorableText
from switchboard_metrics.kpis import report, service
from switchboard_metrics.kpis.schemas import Filters, KpiReport, RebuildReport, Window, WindowName
from switchboard_metrics.settings import MetricsSettings

router = APIRouter(prefix="/v1", tags=["kpis"])
PING_S = 15


class KpiQuery:
    """The query of a KPI read: a window and optional filters."""

    def __init__(
        self,
        window: Annotated[WindowName, Query(description="live (15 min), hour, today (UTC), or range")] = (
            WindowName.LIVE
        ),
        start: Annotated[
            StorableDatetime | None, Query(description="Range start (ISO 8601, with a zone).")
        ] = None,
        end: Annotated[StorableDatetime | None, Query(description="Range end, exclusive.")] = None,
        channel: Channel | None = None,
        queue: Annotated[StorableText | None, Query(max_length=100)] = None,
        agent_id: uuid.UUID | None = None,
        tag: Annotated[StorableText | None, Query(max_length=100)] = None,
    ) -> None:
        self.name = window
        self.start = start
        self.end = end
        self.filters = Filters(
            channel=None if channel is None else channel.value, queue=queue, agent_id=agent_id, tag=tag
        )

    def window(self, now: datetime, retention_days: int) -> Window:
        if self.name is not WindowName.RANGE:
            if self.start is not None or self.end is not None:
                raise ApiError(422, "start and end are only for window=range")
            return report.window(self.name, now, None, None)
        if self.start is None or self.end is None:
            raise ApiError(422, "window=range needs start and end")
        if self.end <= self.start:
            raise ApiError(422, "end must be after start")
        if self.start < now - timedelta(days=retention_days):
            raise ApiError(422, f"start is beyond the retention of {retention_days} days")
        return report.window(self.name, now, self.start, self.end)


def _settings(request: Request) -> MetricsSettings:
    settings: MetricsSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[MetricsSettings, Depends(_settings)]
# OpenAPI cannot express these: a request that breaks one is answered 422 with the reason.
_CONSTRAINTS = {
    "x-constraints": "start and end only with window=range, which needs both, with a time zone; "
    "end after start; start within SWITCHBOARD_METRICS_RETENTION_DAYS"
}
KpiQueryDep = Annotated[KpiQuery, Depends()]


def _level(settings: MetricsSettings) -> report.ServiceLevel:
    return report.ServiceLevel(
        settings.metrics_service_level_default_s, settings.metrics_service_level_targets_s
    )


@router.get(
    "/kpis",
    summary="KPIs of a window: volumes, times (p50/p90/p99), rates, per queue and agent, a time series",
    responses=errors(401, 403, 422, 503),
    openapi_extra=_CONSTRAINTS,
)
async def kpis(
    _: AdminPrincipal, query: KpiQueryDep, session: SessionDep, settings: SettingsDep
) -> KpiReport:
    now = utcnow()
    w = query.window(now, settings.metrics_retention_days)
    return await service.kpi_report(session, w, query.filters, _level(settings), now)


@router.get(
    "/kpis/stream",
    summary="The same KPIs as Server-Sent Events (event 'kpis'), a fresh report every few seconds",
    responses={
        200: {
            "description": "Server-Sent Events: `event` is `kpis`, `id` the report's number in this stream, "
            "`data` the same JSON object as `GET /v1/kpis` answers; keep-alive comments between.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **errors(401, 403, 422, 503),
    },
    response_class=EventSourceResponse,
    openapi_extra=_CONSTRAINTS,
)
async def kpis_stream(
    _: AdminPrincipal, query: KpiQueryDep, runtime: RuntimeDep, settings: SettingsDep
) -> EventSourceResponse:
    """A report now, then one every ``SWITCHBOARD_METRICS_STREAM_INTERVAL_S``; a live window moves with
    the clock. Each report is complete, so a client that reconnects has nothing to catch up on."""
    query.window(utcnow(), settings.metrics_retention_days)  # reject a bad query before streaming

    async def reports() -> AsyncIterator[ServerSentEvent]:
        n = 0
        while True:
            now = utcnow()
            async with runtime.db.unit_of_work() as session:
                body = await service.kpi_report(
                    session,
                    query.window(now, settings.metrics_retention_days),
                    query.filters,
                    _level(settings),
                    now,
                )
            n += 1
            yield ServerSentEvent(data=body.model_dump_json(), event="kpis", id=str(n))
            await asyncio.sleep(settings.metrics_stream_interval_s)

    return EventSourceResponse(reports(), ping=PING_S)


@router.post(
    "/kpis/rebuild",
    summary="Recompute every KPI rollup from the stored facts (after a definition changes)",
    responses=errors(401, 403, 503),
)
async def rebuild(_: AdminPrincipal, session: SessionDep) -> RebuildReport:
    """One transaction over all facts within the retention: the consumer's writes to the rollups wait
    for it, so run it when a pause of that length is acceptable."""
    return await service.rebuild_rollups(session)
