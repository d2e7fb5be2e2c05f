from __future__ import annotations

from fastapi import FastAPI

from switchboard_common import topics
from switchboard_common.http.app import create_service_app
from switchboard_common.runtime import ServiceRuntime
from switchboard_common.settings import Settings
from switchboard_metrics.kpis import service
from switchboard_metrics.kpis.endpoints import router as kpis_router

GROUP_ID = "metrics"


async def _setup(runtime: ServiceRuntime, app: FastAPI) -> None:
    runtime.add_consumer(GROUP_ID, list(topics.ALL), service.record_batch)


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        "metrics",
        settings or Settings(),
        [kpis_router],
        setup=_setup,
        description="Consumes every event and serves live KPIs.",
    )
