from __future__ import annotations

from switchboard_common.settings import AgentAuthSettings


class ConversationSettings(AgentAuthSettings):
    """The conversation service needs nothing beyond the shared settings and agent authentication yet."""
