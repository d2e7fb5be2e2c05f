"""The FastAPI application every service is built on."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from switchboard_common.db.database import Database
from switchboard_common.gc_tuning import tune_gc
from switchboard_common.http.errors import install_error_handlers
from switchboard_common.http.health import router as health_router
from switchboard_common.http.middleware import RequestContextMiddleware
from switchboard_common.http.openapi import finish_document
from switchboard_common.instrumentation import instrument_kafka
from switchboard_common.kafka.producer import EventPublisher
from switchboard_common.runtime import ServiceRuntime
from switchboard_common.settings import CommonSettings

log = logging.getLogger(__name__)

Setup = Callable[[ServiceRuntime, FastAPI], Awaitable[None]]


def create_service_app(
    name: str,
    settings: CommonSettings,
    routers: Sequence[APIRouter],
    setup: Setup | None = None,
    description: str = "",
    body_limits: Sequence[tuple[str, int]] = (),
) -> FastAPI:
    """Build a service app: clients are created in the lifespan, ``setup`` adds the service's consumers,
    relays and background jobs, and everything is started after it and stopped in reverse on exit.
    ``body_limits`` are (path prefix, bytes) pairs overriding ``max_request_bytes`` under that prefix."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        instrument_kafka()
        db = Database.from_settings(settings)
        publisher = EventPublisher(settings, client_id=f"switchboard-{name}")
        await publisher.start()
        runtime = ServiceRuntime(name=name, settings=settings, db=db, publisher=publisher)
        app.state.runtime = runtime
        try:
            if setup is not None:
                await setup(runtime, app)
            for relay in runtime.relays:
                relay.start()
            for job in runtime.background:
                await job.start()
            for consumer in runtime.consumers:
                await consumer.start()
            if settings.gc_young_threshold:
                tune_gc(settings.gc_young_threshold)
            log.info("service started", extra={"consumers": [c.group_id for c in runtime.consumers]})
            yield
        finally:
            # Reverse order: stop taking work, finish what is in flight, then close the clients.
            for consumer in runtime.consumers:
                await consumer.stop()
            for job in runtime.background:
                await job.stop()
            for relay in runtime.relays:
                await relay.stop()
            await publisher.stop()
            await db.dispose()
            log.info("service stopped")

    # FastAPI's native OpenTelemetry checks the global providers on every request; off unless wanted.
    otel = settings.otel_enabled
    app = FastAPI(
        title=f"Switchboard {name}",
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        telemetry={"tracing": otel, "metrics": otel, "logs": otel},
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, max_bytes=settings.max_request_bytes, path_limits=body_limits
    )
    app.include_router(health_router)
    for router in routers:
        app.include_router(router)
    finish_document(app)
    return app
