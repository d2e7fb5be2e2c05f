from __future__ import annotations

from pydantic import Field

from switchboard_common.settings import AgentAuthSettings


class MetricsSettings(AgentAuthSettings):
    """The metrics service's knobs: KPI targets, retention and the live stream, and where the other
    services are for the ops health view."""

    # Service level: the share of conversations answered (assigned) within this many seconds, per channel;
    # a channel not listed uses the default. For example {"webchat": 20, "email": 3600}.
    metrics_service_level_default_s: int = Field(default=20, ge=1)
    metrics_service_level_targets_s: dict[str, int] = {}
    # KPI rollups older than this are deleted (the raw facts too): "any range" reaches this far back.
    metrics_retention_days: int = Field(default=30, ge=1, le=3650)
    # How often the live stream (SSE) pushes a fresh snapshot to each connected client.
    metrics_stream_interval_s: float = Field(default=2.0, ge=0.2, le=60)
    # The services whose readiness the ops view shows: name -> base URL (e.g. http://ingest:8000).
    metrics_ops_services: dict[str, str] = {}
