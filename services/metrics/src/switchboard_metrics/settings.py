from __future__ import annotations

from switchboard_common.settings import AgentAuthSettings


class MetricsSettings(AgentAuthSettings):
    """The metrics service needs nothing beyond the shared settings and agent authentication yet."""
