from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from switchboard_common.settings import AgentAuthSettings
from switchboard_router.rules.language import parse_languages


class RouterSettings(AgentAuthSettings):
    # The sweeper retries the queue head this often, so no conversation waits on a missed wake-up; it also
    # ends lapsed offers and notices silent agents at this pace.
    router_sweep_interval_ms: int = Field(default=1000, ge=50)
    # Estimated waits use the mean handle time of this many most recently closed assignments: recent, so
    # estimates follow a change in the work, and enough that one long conversation does not swing them.
    router_handle_time_sample: int = Field(default=200, ge=1, le=10_000)
    # The handle time assumed until an assignment has closed (a new install): estimates then say "prior".
    router_default_handle_time_s: float = Field(default=300.0, gt=0, le=86_400)
    # Sticky routing: a customer's conversation goes to the agent who last had them, if assigned within
    # this window and eligible now. 0 turns it off.
    router_sticky_window_s: int = Field(default=86_400, ge=0, le=90 * 86_400)
    # An agent not heard from (heartbeat or presence change) for this long goes offline: their offers
    # return to the queue at once. 0 turns the check off (presence then changes only through the API).
    router_presence_timeout_s: int = Field(default=90, ge=0, le=86_400)
    # An offline agent's assigned conversations wait this long for them to come back, then are requeued.
    router_offline_grace_s: int = Field(default=120, ge=0, le=86_400)
    # An assigned conversation whose agent has not replied within this time goes to someone else. 0 turns it
    # off (and the router then does not read messages.outbound at all).
    router_no_answer_timeout_s: int = Field(default=0, ge=0, le=7 * 86_400)
    # The languages rules' language conditions detect among (ISO 639-1 codes).
    router_detect_languages: str = "en,es,fr,de,pt,it,nl"
    # lingua's low-accuracy models (trigrams: ~10 MB, built in ~0.1 s) rather than the full ones (~240 MB
    # per process for the default languages, ~1.5 s to build), which tell short texts apart better.
    router_language_low_accuracy: bool = True
    # Bearer keys of other services (ingest, to tell callers the expected wait): they may read queue
    # estimates (GET /v1/queues/{name}/estimate) and nothing else.
    router_service_keys: list[SecretStr] = Field(default_factory=list)
    # Routing reads the enabled rules at most this often (a change reaches routing within it).
    router_rules_refresh_s: float = Field(default=5.0, ge=0, le=3600)

    @field_validator("router_detect_languages")
    @classmethod
    def _detectable(cls, value: str) -> str:
        parse_languages(value)  # a bad code stops startup, not the first detection
        return value
