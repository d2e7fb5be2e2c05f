"""Turning readiness answers into the ops summary: pure functions, no I/O.

The answer of ``/health/ready`` (``switchboard_common.http.health.readiness``) is read defensively: it comes
over the network from another process, maybe of another version, or from something else entirely at a
misconfigured URL, and a strange answer must show as an unavailable service, never fail the view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from switchboard_metrics.ops.schemas import (
    ConsumerCheck,
    DependencyCheck,
    OpsHealth,
    RelayCheck,
    ServiceChecks,
    ServiceHealth,
    ServiceStatus,
    SystemStatus,
)

_CONSUMER_PREFIX = "consumer:"
_ERROR_CHARS = 300


def summarize(name: str, url: str, http_status: int, body: object, latency_ms: float) -> ServiceHealth:
    """One service's health from what its ``/health/ready`` answered (``body``: the decoded JSON, or None
    when the answer was not JSON)."""
    latency = round(latency_ms, 1)
    raw_checks = body.get("checks") if isinstance(body, Mapping) else None
    if not isinstance(raw_checks, Mapping):
        return ServiceHealth(
            name=name,
            url=url,
            status=ServiceStatus.UNAVAILABLE,
            http_status=http_status,
            latency_ms=latency,
            error=f"HTTP {http_status}: not a readiness answer",
        )
    checks = parse_checks(raw_checks)
    ready = http_status == 200 and isinstance(body, Mapping) and body.get("status") == "ok"
    problems = _problems(checks)
    error = None
    if not ready:
        error = "; ".join(problems) if problems else f"HTTP {http_status}: not ready"
    return ServiceHealth(
        name=name,
        url=url,
        status=ServiceStatus.OK if ready else ServiceStatus.UNAVAILABLE,
        http_status=http_status,
        latency_ms=latency,
        checks=checks,
        error=error,
    )


def unreachable(name: str, url: str, error: str, latency_ms: float | None = None) -> ServiceHealth:
    """A service that gave no answer: refused, timed out, unknown host."""
    return ServiceHealth(
        name=name,
        url=url,
        status=ServiceStatus.UNREACHABLE,
        latency_ms=None if latency_ms is None else round(latency_ms, 1),
        error=error[:_ERROR_CHARS] or "no answer",
    )


def overall(services: Sequence[ServiceHealth], checked_at: datetime) -> OpsHealth:
    """The system is ok only when every service is."""
    healthy = all(s.status is ServiceStatus.OK for s in services)
    return OpsHealth(
        status=SystemStatus.OK if healthy else SystemStatus.DEGRADED,
        checked_at=checked_at,
        services=sorted(services, key=lambda s: s.name),
    )


def parse_checks(raw: Mapping[str, Any]) -> ServiceChecks:
    """The readiness checks: database, broker, one entry per consumer group, the outbox relay."""
    consumers = [
        _consumer(key.removeprefix(_CONSUMER_PREFIX), value)
        for key, value in sorted(raw.items())
        if isinstance(key, str) and key.startswith(_CONSUMER_PREFIX) and isinstance(value, Mapping)
    ]
    relay = raw.get("outbox_relay")
    return ServiceChecks(
        database=_dependency(raw.get("database")),
        broker=_dependency(raw.get("broker")),
        consumers=consumers,
        outbox_relay=(
            RelayCheck(ok=relay.get("ok") is True, leader=_bool(relay.get("leader")))
            if isinstance(relay, Mapping)
            else None
        ),
    )


def _dependency(raw: object) -> DependencyCheck | None:
    if not isinstance(raw, Mapping):
        return None
    error = raw.get("error")
    return DependencyCheck(ok=raw.get("ok") is True, error=str(error)[:_ERROR_CHARS] if error else None)


def _consumer(group: str, raw: Mapping[str, Any]) -> ConsumerCheck:
    lag = raw.get("lag")
    problems = raw.get("problems")
    return ConsumerCheck(
        group=group,
        ok=raw.get("ok") is True,
        running=_bool(raw.get("running")),
        lag=lag if isinstance(lag, int) and not isinstance(lag, bool) else None,
        problems=[str(p) for p in problems] if isinstance(problems, list) else [],
        advisory=raw.get("advisory") is True,
    )


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _problems(checks: ServiceChecks) -> list[str]:
    """What is wrong, in words, for the service's ``error``."""
    out = []
    for label, dependency in (("database", checks.database), ("broker", checks.broker)):
        if dependency is not None and not dependency.ok:
            out.append(f"{label}: {dependency.error or 'down'}")
    for consumer in checks.consumers:
        if not consumer.ok:
            what = ", ".join(consumer.problems) or "not ok"
            out.append(f"consumer {consumer.group}{' (advisory)' if consumer.advisory else ''}: {what}")
    if checks.outbox_relay is not None and not checks.outbox_relay.ok:
        out.append("outbox relay not running")
    return out
