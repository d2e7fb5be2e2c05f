from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from switchboard_common.settings import AgentAuthSettings
from switchboard_conversation.automation import templates
from switchboard_conversation.surveys.policy import SurveyConfig, SurveyKind

DEFAULT_REOPEN_WINDOW_S = 86400
DEFAULT_ACK_TEMPLATE = (
    "Thanks for your message{% if customer.first_name %}, {{ customer.first_name }}{% endif %}! "
    "{% if wait_minutes %}An agent will answer you in about {{ wait_minutes }} "
    "minute{{ 's' if wait_minutes > 1 }}.{% else %}"
    "An agent will answer you as soon as one is free.{% endif %}"
)
DEFAULT_CLOSED_TEMPLATE = (
    "Thanks for your message{% if customer.first_name %}, {{ customer.first_name }}{% endif %}! "
    "We're closed right now; we answer from {{ opens_at }}."
)


class ConversationSettings(AgentAuthSettings):
    # A customer who writes again within this many seconds of their conversation's resolution reopens it;
    # later, a new conversation starts. 0 disables reopening.
    conversation_reopen_window_s: int = Field(default=DEFAULT_REOPEN_WINDOW_S, ge=0)
    # How often due snoozes are woken (and so how late one can wake, at most).
    conversation_snooze_check_ms: int = Field(default=1000, ge=10, le=60_000)

    # The acknowledgement sent once when a conversation (re)opens and is left waiting (conversation.queued):
    # jinja2 sandboxed templates (automation.templates; variables in docs/automation.md). ``..._template``
    # states the expected wait, ``..._closed_template`` when the team is out of its business hours.
    conversation_auto_ack_enabled: bool = True
    conversation_auto_ack_template: str = DEFAULT_ACK_TEMPLATE
    conversation_auto_ack_closed_template: str = DEFAULT_CLOSED_TEMPLATE

    @field_validator("conversation_auto_ack_template", "conversation_auto_ack_closed_template")
    @classmethod
    def _renders(cls, value: str) -> str:
        return templates.check(value)  # a broken template stops startup, not the first acknowledgement

    # The satisfaction survey asked when an agent resolves a conversation, through the customer's channel:
    # csat (1-5), nps (0-10), ces (1-7), or none. An answer is taken within the window.
    conversation_survey: Literal["csat", "nps", "ces", "none"] = "csat"
    conversation_survey_window_s: int = Field(default=86400, ge=60, le=30 * 86400)

    @cached_property
    def survey(self) -> SurveyConfig | None:
        """The survey asked on resolution, or None when switched off."""
        if self.conversation_survey == "none":
            return None
        return SurveyConfig(
            SurveyKind(self.conversation_survey), timedelta(seconds=self.conversation_survey_window_s)
        )

    # Agents' realtime stream (/v1/stream): how often an open stream looks for new items when no
    # notification came (a lost one only delays by this much), the keep-alive comment interval that keeps
    # proxies from closing an idle stream, and how long items are kept for reconnecting clients.
    stream_poll_interval_ms: int = Field(default=1000, ge=10)
    # How often each replica reloads the agents deleted at the router, whose tokens it refuses (revoked.py).
    conversation_revocation_refresh_s: float = Field(default=2.0, gt=0, le=300)
    stream_heartbeat_s: int = Field(default=15, ge=1)
    stream_retention_s: int = Field(default=86400, ge=60)
    stream_retention_interval_s: int = Field(default=300, ge=1)
