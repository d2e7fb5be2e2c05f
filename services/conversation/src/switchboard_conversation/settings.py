from __future__ import annotations

from pydantic import Field

from switchboard_common.settings import AgentAuthSettings

DEFAULT_REOPEN_WINDOW_S = 86400


class ConversationSettings(AgentAuthSettings):
    # A customer who writes again within this many seconds of their conversation's resolution reopens it;
    # later, a new conversation starts. 0 disables reopening.
    conversation_reopen_window_s: int = Field(default=DEFAULT_REOPEN_WINDOW_S, ge=0)
    # How often due snoozes are woken (and so how late one can wake, at most).
    conversation_snooze_check_ms: int = Field(default=1000, ge=10, le=60_000)
