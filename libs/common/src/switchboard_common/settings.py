"""Typed settings, read from the environment with the SWITCHBOARD_ prefix.

``CommonSettings`` holds what every service shares (database, broker, consumers, HTTP limits). Each service
has its own class on top of it that adds only its own secrets and knobs (``IngestSettings`` in ingest,
``AgentAuthSettings`` for the services that serve agents and supervisors), so a service never asks for a
secret it does not use.

Secrets are declared per class in ``DEV_SECRETS``: in the ``development`` environment a missing secret takes
its documented development value (so ``make run`` works with no configuration); every other environment
refuses to start without it, and refuses the development values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only secrets. They are documented in the README so that `make run` works out of the box, and
# they are refused in every other environment.
DEV_INGEST_API_KEY = "dev-ingest-key"
DEV_ADMIN_API_KEY = "dev-admin-key"
DEV_AUTH_SECRET = "dev-auth-secret-not-for-production-use"  # noqa: S105
DEV_WEBCHAT_TOKEN_SECRET = "dev-webchat-secret-not-for-production-use"  # noqa: S105
_DEV_VALUES = {DEV_INGEST_API_KEY, DEV_ADMIN_API_KEY, DEV_AUTH_SECRET, DEV_WEBCHAT_TOKEN_SECRET}


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _secret_values(value: Any) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, list):
        return [v.get_secret_value() for v in value]
    return []


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore", frozen=True)

    # field name -> its development value; subclasses extend it with their own secrets.
    DEV_SECRETS: ClassVar[dict[str, Any]] = {}

    environment: Environment = Environment.DEVELOPMENT

    # Infrastructure
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5433/switchboard"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    # Opening a connection, and waiting for a free one in the pool, give up after this long: a database
    # that does not answer then fails fast (HTTP 503, consumers retry) instead of holding work for the
    # driver's 60 s default.
    db_connect_timeout_ms: int = Field(default=5000, ge=100, le=120_000)
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    # Tansu (the embedded broker) implements neither idempotent producers nor transactions; a real Kafka
    # cluster should turn this on.
    kafka_enable_idempotence: bool = False
    producer_linger_ms: int = Field(default=2, ge=0)
    # Records per poll, across all partitions: one database transaction and one offset commit each.
    consumer_max_batch: int = Field(default=500, ge=1, le=5000)
    consumer_max_retries: int = Field(default=3, ge=0)
    consumer_retry_backoff_ms: int = Field(default=100, ge=0)
    # How long a fetch may wait for data; each hop of the message path can cost up to this much latency.
    consumer_fetch_max_wait_ms: int = Field(default=20, ge=1, le=5000)
    consumer_fetch_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    consumer_max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    outbox_batch_size: int = Field(default=500, ge=1)
    # The relay is woken by commits (in-process and through LISTEN/NOTIFY); this is only its fallback poll.
    outbox_poll_interval_ms: int = Field(default=1000, ge=10)
    # /health/ready reports consumer lag always; it fails on lag only when this is set.
    health_max_consumer_lag: int | None = Field(default=None, ge=0)
    # A consumer is reported stalled (/health/ready fails, switchboard_consumer_stalled is 1) when records
    # wait on a partition whose position has not moved for this long, or its offset commits have been
    # failing this long. A single poll that takes longer than this counts as a stall too.
    consumer_stall_seconds: float = Field(default=120.0, gt=0)

    # The garbage collector's young-generation threshold, set once the service has started, when start-up's
    # objects are frozen (see ``gc_tuning``); 0 leaves the collector as Python sets it (700, nothing frozen).
    gc_young_threshold: int = Field(default=50_000, ge=0)

    # HTTP
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "INFO"
    http_access_log: bool = False
    # Proxies whose X-Forwarded-* headers are trusted (uvicorn's forwarded_allow_ips); empty: none.
    forwarded_allow_ips: str = ""
    # FastAPI's native OpenTelemetry instrumentation, for deployments that configure OTel providers.
    otel_enabled: bool = False

    @model_validator(mode="after")
    def _require_secrets(self) -> Self:
        if self.environment is Environment.DEVELOPMENT:
            for name, dev_value in self.DEV_SECRETS.items():
                if not getattr(self, name):
                    # Frozen model: fill the documented development default in place.
                    object.__setattr__(self, name, dev_value)
            return self
        missing = [f"SWITCHBOARD_{name.upper()}" for name in self.DEV_SECRETS if not getattr(self, name)]
        if missing:
            raise ValueError(f"required outside development: {', '.join(missing)}")
        if any(v in _DEV_VALUES for name in self.DEV_SECRETS for v in _secret_values(getattr(self, name))):
            raise ValueError("development secrets are refused outside development")
        return self

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one (adds the deployment's prefix)."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """The broker's consumer group id for a logical group name (adds the deployment's prefix): two
        deployments on one cluster must not share a group, or each one's joins rebalance the other's
        members, and a member that vanished holds the other's joins for its rebalance timeout."""
        return f"{self.topic_prefix}{name}"


class AgentAuthSettings(CommonSettings):
    """Services that serve agents (signed tokens) and supervisors or ops (the admin key)."""

    DEV_SECRETS: ClassVar[dict[str, Any]] = {
        "admin_api_key": SecretStr(DEV_ADMIN_API_KEY),
        "auth_secret": SecretStr(DEV_AUTH_SECRET),
    }

    admin_api_key: SecretStr | None = None
    auth_secret: SecretStr | None = None
    agent_token_ttl_seconds: int = Field(default=12 * 3600, ge=60)

    @model_validator(mode="after")
    def _strong_auth_secret(self) -> Self:
        secret = self.auth_secret
        if self.environment is not Environment.DEVELOPMENT and secret and len(secret.get_secret_value()) < 32:
            raise ValueError("SWITCHBOARD_AUTH_SECRET must be at least 32 characters")
        return self

    @property
    def admin_key(self) -> str:
        assert self.admin_api_key is not None  # set by the validator
        return self.admin_api_key.get_secret_value()

    @property
    def token_secret(self) -> str:
        assert self.auth_secret is not None  # set by the validator
        return self.auth_secret.get_secret_value()
