"""/health/live, /health/ready and /metrics, the same on every service."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switchboard_common.runtime import ServiceRuntime

router = APIRouter(tags=["health"])
_CHECK_TIMEOUT_S = 2.0


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


async def _probe(check: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(check(), _CHECK_TIMEOUT_S)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True}


@router.get("/health/ready", summary="Database, broker and consumers are usable")
async def ready(request: Request) -> JSONResponse:
    runtime: ServiceRuntime = request.app.state.runtime
    database, broker = await asyncio.gather(_probe(runtime.db.check), _probe(runtime.publisher.check))
    checks: dict[str, Any] = {"database": database, "broker": broker}
    max_lag = runtime.settings.health_max_consumer_lag
    for consumer in runtime.consumers:
        lag = consumer.total_lag()
        ok = consumer.running and (max_lag is None or lag <= max_lag)
        checks[f"consumer:{consumer.group_id}"] = {"ok": ok, "running": consumer.running, "lag": lag}
    for relay in runtime.relays:
        # A standby relay (another replica leads) is healthy: it takes over when the leader goes.
        checks["outbox_relay"] = {"ok": relay.running, "leader": relay.leader}
    healthy = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, 200 if healthy else 503
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
