from __future__ import annotations

from pydantic import Field

from switchboard_common.settings import AgentAuthSettings

DEFAULT_REOPEN_WINDOW_S = 86400


class ConversationSettings(AgentAuthSettings):
    # A customer who writes again within this many seconds of their conversation's resolution reopens it;
    # later, a new conversation starts. 0 disables reopening.
    conversation_reopen_window_s: int = Field(default=DEFAULT_REOPEN_WINDOW_S, ge=0)
    # Agents' realtime stream (/v1/stream): how often an open stream looks for new items when no
    # notification came (a lost one only delays by this much), the keep-alive comment interval that keeps
    # proxies from closing an idle stream, and how long items are kept for reconnecting clients.
    stream_poll_interval_ms: int = Field(default=1000, ge=10)
    stream_heartbeat_s: int = Field(default=15, ge=1)
    stream_retention_s: int = Field(default=86400, ge=60)
    stream_retention_interval_s: int = Field(default=300, ge=1)
