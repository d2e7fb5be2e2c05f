from __future__ import annotations

from pydantic import Field

from switchboard_common.settings import AgentAuthSettings


class RouterSettings(AgentAuthSettings):
    # The sweeper retries the queue head this often, so no conversation waits on a missed wake-up.
    router_sweep_interval_ms: int = Field(default=1000, ge=50)
    # Estimated waits use the mean handle time of this many most recently closed assignments: recent, so
    # estimates follow a change in the work, and enough that one long conversation does not swing them.
    router_handle_time_sample: int = Field(default=200, ge=1, le=10_000)
    # The handle time assumed until an assignment has closed (a new install): estimates then say "prior".
    router_default_handle_time_s: float = Field(default=300.0, gt=0, le=86_400)
