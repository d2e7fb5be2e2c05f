"""GET /v1/ops/health on the metrics service: the readiness of every configured service, asked over HTTP
(conversation served by uvicorn on a real port, against the real database and broker), the metrics
service's own read in process, and services that cannot be asked reported as such rather than failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from switchboard_conversation.app import create_app as conversation_app
from switchboard_devstack.ports import free_port
from switchboard_metrics.app import create_app as metrics_app
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, eventually, serve


@asynccontextmanager
async def serve_on_port(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` (its lifespan included) with uvicorn on a free local port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5)
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # startup failed: raise its error
            raise AssertionError("the server stopped during startup")
        return server.started

    try:
        await eventually(started, what="the service to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_ops_health_reports_a_ready_service_ok_and_the_others_as_they_are(settings: Settings) -> None:
    async with serve_on_port(conversation_app(settings)) as conversation_url:
        nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        services = {
            "conversation": conversation_url,
            "gone": nobody,
            "misrouted": f"{conversation_url}/not-here",  # answers, but 404: not a readiness
            "metrics": "http://metrics.invalid",  # this service itself: read in process, never fetched
        }
        metrics = metrics_app(settings.model_copy(update={"metrics_ops_services": services}))
        async with serve(metrics) as client:
            assert (await client.get("/v1/ops/health")).status_code == 401

            async def conversation_ready() -> dict[str, Any] | None:
                response = await client.get("/v1/ops/health", headers=bearer(ADMIN_KEY))
                assert response.status_code == 200
                body: dict[str, Any] = response.json()
                by_name = {s["name"]: s for s in body["services"]}
                ready = by_name["conversation"]["status"] == "ok" and by_name["metrics"]["status"] == "ok"
                return body if ready else None

            # Ready once its consumer has joined its group (seconds on the embedded broker).
            body = await eventually(conversation_ready, what="conversation ready in the ops view")

    by_name = {s["name"]: s for s in body["services"]}
    assert sorted(by_name) == ["conversation", "gone", "metrics", "misrouted"]
    assert body["status"] == "degraded"  # not every service is ok
    assert body["checked_at"]

    conversation = by_name["conversation"]
    assert (conversation["url"], conversation["http_status"], conversation["error"]) == (
        conversation_url,
        200,
        None,
    )
    assert conversation["latency_ms"] >= 0
    checks = conversation["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"]
    assert [(c["group"], c["ok"], c["problems"]) for c in checks["consumers"]] == [("conversation", True, [])]
    assert isinstance(checks["consumers"][0]["lag"], int)
    assert checks["outbox_relay"]["ok"]

    gone = by_name["gone"]
    assert (gone["status"], gone["http_status"], gone["checks"]) == ("unreachable", None, None)
    assert gone["url"] == nobody and "Connect" in gone["error"]

    misrouted = by_name["misrouted"]
    assert (misrouted["status"], misrouted["http_status"]) == ("unavailable", 404)
    assert misrouted["error"] == "HTTP 404: not a readiness answer"

    own = by_name["metrics"]
    assert own["url"] == "http://test"  # the base URL it was asked on, not the configured one
    assert own["checks"]["database"]["ok"] and own["checks"]["broker"]["ok"]
    assert [(c["group"], c["ok"]) for c in own["checks"]["consumers"]] == [("metrics", True)]
