from __future__ import annotations

from pydantic import Field

from switchboard_common.settings import AgentAuthSettings


class RouterSettings(AgentAuthSettings):
    # The sweeper retries the queue head this often, so no conversation waits on a missed wake-up.
    router_sweep_interval_ms: int = Field(default=1000, ge=50)
