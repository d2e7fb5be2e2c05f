from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from switchboard_common.events import CustomerMerged, SurveyAnswered
from switchboard_common.http.app import create_service_app
from switchboard_common.kafka.consumer import Handlers
from switchboard_common.runtime import ServiceRuntime
from switchboard_metrics.customers import service as customers
from switchboard_metrics.dashboard.endpoints import router as dashboard_router
from switchboard_metrics.kpis import service
from switchboard_metrics.kpis.endpoints import router as kpis_router
from switchboard_metrics.kpis.facts import counted_types
from switchboard_metrics.kpis.retention import retention_job
from switchboard_metrics.ops.endpoints import router as ops_router
from switchboard_metrics.ops.probe import install_ops
from switchboard_metrics.settings import MetricsSettings

GROUP_ID = "metrics"
RETENTION_INTERVAL = timedelta(hours=1)


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()

    async def setup(runtime: ServiceRuntime, app: FastAPI) -> None:
        # Every event type, one batch handler: a poll is one call, and the group reads only topics with
        # events.
        handlers: Handlers = {
            **dict.fromkeys(counted_types(), service.record_batch),
            CustomerMerged: customers.on_customer_merged,
            SurveyAnswered: service.record_surveys,
        }
        runtime.add_consumer(GROUP_ID, handlers)
        runtime.background.append(
            retention_job(runtime.db, timedelta(days=settings.metrics_retention_days), RETENTION_INTERVAL)
        )
        install_ops(runtime, app)

    return create_service_app(
        "metrics",
        settings,
        [kpis_router, ops_router, dashboard_router],
        setup=setup,
        description="Consumes every event and serves live KPIs, the ops health view and the ops dashboard.",
    )
