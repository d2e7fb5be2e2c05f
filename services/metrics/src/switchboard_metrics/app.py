from __future__ import annotations

from fastapi import FastAPI

from switchboard_common.http.app import create_service_app
from switchboard_common.runtime import ServiceRuntime
from switchboard_metrics.kpis import service
from switchboard_metrics.kpis.endpoints import router as kpis_router
from switchboard_metrics.kpis.facts import counted_types
from switchboard_metrics.settings import MetricsSettings

GROUP_ID = "metrics"


async def _setup(runtime: ServiceRuntime, app: FastAPI) -> None:
    # Every event type, one batch handler: a poll is one call, and the group reads only topics with events.
    runtime.add_consumer(GROUP_ID, dict.fromkeys(counted_types(), service.record_batch))


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    return create_service_app(
        "metrics",
        settings or MetricsSettings(),
        [kpis_router],
        setup=_setup,
        description="Consumes every event and serves live KPIs.",
    )
