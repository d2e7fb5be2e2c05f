from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class ServiceStatus(StrEnum):
    OK = "ok"  # /health/ready answered 200 with status "ok"
    UNAVAILABLE = "unavailable"  # it answered, but not ready (503, or an answer that is not a readiness)
    UNREACHABLE = "unreachable"  # no answer: refused, timed out, not resolvable


class SystemStatus(StrEnum):
    OK = "ok"  # every service ok
    DEGRADED = "degraded"  # at least one service unavailable or unreachable


class DependencyCheck(BaseModel):
    """The database or the broker, as the service's readiness probe saw it."""

    ok: bool
    error: str | None = None


class ConsumerCheck(BaseModel):
    """One consumer group of the service (``problems`` as /health/ready words them, e.g. "lag above 1000",
    "no progress while records wait")."""

    group: str
    ok: bool
    running: bool | None = None
    lag: int | None = Field(None, description="Records behind the end of the partitions it holds")
    problems: list[str] = []
    advisory: bool = Field(False, description="Reported, but does not decide the service's readiness")


class RelayCheck(BaseModel):
    ok: bool
    leader: bool | None = Field(None, description="This replica's relay publishes (others stand by)")


class ServiceChecks(BaseModel):
    database: DependencyCheck | None = None
    broker: DependencyCheck | None = None
    consumers: list[ConsumerCheck] = []
    outbox_relay: RelayCheck | None = None


class ServiceHealth(BaseModel):
    name: str
    url: str
    status: ServiceStatus
    http_status: int | None = Field(None, description="What /health/ready answered; none when unreachable")
    latency_ms: float | None = Field(None, description="Time to the readiness answer")
    checks: ServiceChecks | None = Field(None, description="The parsed readiness checks, when it answered")
    error: str | None = Field(None, description="Why it is unreachable, or why its answer is not a readiness")


class OpsHealth(BaseModel):
    status: SystemStatus
    checked_at: datetime
    services: list[ServiceHealth]
