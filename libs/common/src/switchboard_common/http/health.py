"""/health/live, /health/ready and /metrics, the same on every service."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switchboard_common.kafka.consumer import ConsumerRunner
from switchboard_common.runtime import ServiceRuntime

router = APIRouter(tags=["health"])
_CHECK_TIMEOUT_S = 2.0
# A scrape waits at most this long for the outbox backlog (Prometheus' default scrape timeout is 10 s).
_BACKLOG_TIMEOUT_S = 1.0


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


async def _probe(check: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(check(), _CHECK_TIMEOUT_S)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def consumer_check(consumer: ConsumerRunner, max_lag: int | None) -> dict[str, Any]:
    """One consumer's readiness: running, and making progress (see ``ConsumerRunner.progress``)."""
    report = consumer.progress()
    problems = report.problems
    if not consumer.running:
        problems.insert(0, "not running")
    if max_lag is not None and report.lag > max_lag:
        problems.append(f"lag above {max_lag}")
    return {
        "ok": not problems,
        "running": consumer.running,
        "lag": report.lag,
        "problems": problems,
        "beyond_log_end": {
            f"{tp.topic}/{tp.partition}": {"position": p.position, "log_end": p.log_end}
            for tp, p in sorted(report.beyond_log_end.items())
        },
        "stalled_s": {f"{tp.topic}/{tp.partition}": _seconds(s) for tp, s in sorted(report.stalled.items())},
        "poll_running_s": _seconds(report.poll_running_for),
        "commit_failures": report.commit_failures,
        "commit_failing_s": _seconds(report.commit_failing_for),
        "since_commit_s": _seconds(report.since_commit),
    }


async def readiness(runtime: ServiceRuntime) -> tuple[bool, dict[str, Any]]:
    """Whether the service is ready, and the body ``/health/ready`` answers (the metrics service's ops
    view reads its own readiness through this, in process)."""
    database, broker = await asyncio.gather(_probe(runtime.db.check), _probe(runtime.publisher.check))
    checks: dict[str, Any] = {"database": database, "broker": broker}
    max_lag = runtime.settings.health_max_consumer_lag
    deciding: list[bool] = []
    for consumer in runtime.consumers:
        check = consumer_check(consumer, max_lag)
        if consumer.group_id in runtime.advisory_groups:
            check["advisory"] = True
        else:
            deciding.append(check["ok"])
        checks[f"consumer:{consumer.group_id}"] = check
    for relay in runtime.relays:
        # A standby relay (another replica leads) is healthy: it takes over when the leader goes.
        checks["outbox_relay"] = {"ok": relay.running, "leader": relay.leader}
        deciding.append(relay.running)
    healthy = database["ok"] and broker["ok"] and all(deciding)
    return healthy, {"status": "ok" if healthy else "unavailable", "checks": checks}


@router.get("/health/ready", summary="Database, broker and consumers are usable")
async def ready(request: Request) -> JSONResponse:
    healthy, body = await readiness(request.app.state.runtime)
    return JSONResponse(body, 200 if healthy else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    runtime: ServiceRuntime | None = getattr(request.app.state, "runtime", None)
    # The stall gauges depend on the time: judge now, even while a consumer's loop waits (on a retry
    # backoff, a slow poll) and cannot refresh them itself.
    for consumer in runtime.consumers if runtime is not None else ():
        consumer.progress()
    # The outbox backlog is read from its table, one short query per outbox; a failure keeps the last values.
    if runtime is not None and runtime.relays:
        await asyncio.gather(*(relay.observe_backlog(_BACKLOG_TIMEOUT_S) for relay in runtime.relays))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
