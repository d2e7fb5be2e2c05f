"""Typed settings, read from the environment with the SWITCHBOARD_ prefix.

One settings class serves every service: the values the services share (database, broker, the agent token
secret) must agree across them, and a single class keeps their names and defaults in one place.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only secrets. They are documented in the README so that `make run` works out of the box, and
# they are refused in every other environment.
DEV_INGEST_API_KEY = "dev-ingest-key"
DEV_ADMIN_API_KEY = "dev-admin-key"
DEV_AUTH_SECRET = "dev-auth-secret-not-for-production-use"  # noqa: S105
_DEV_SECRETS = {DEV_INGEST_API_KEY, DEV_ADMIN_API_KEY, DEV_AUTH_SECRET}


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore", frozen=True)

    environment: Environment = Environment.DEVELOPMENT

    # Infrastructure
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5433/switchboard"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    # Tansu (the embedded broker) implements neither idempotent producers nor transactions; a real Kafka
    # cluster should turn this on.
    kafka_enable_idempotence: bool = False
    producer_linger_ms: int = Field(default=2, ge=0)
    consumer_max_batch: int = Field(default=200, ge=1, le=5000)
    consumer_max_retries: int = Field(default=3, ge=0)
    consumer_retry_backoff_ms: int = Field(default=100, ge=0)
    # How long a fetch may wait for data; each hop of the message path can cost up to this much latency.
    consumer_fetch_max_wait_ms: int = Field(default=50, ge=1, le=5000)
    consumer_fetch_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    consumer_max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_interval_ms: int = Field(default=250, ge=10)
    # /health/ready reports consumer lag always; it fails on lag only when this is set.
    health_max_consumer_lag: int | None = Field(default=None, ge=0)

    # HTTP
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "INFO"

    # Secrets: required outside development (see _require_secrets).
    ingest_api_keys: list[SecretStr] = Field(default_factory=list)
    admin_api_key: SecretStr | None = None
    auth_secret: SecretStr | None = None
    agent_token_ttl_seconds: int = Field(default=12 * 3600, ge=60)

    # Router
    router_sweep_interval_ms: int = Field(default=2000, ge=50)

    @model_validator(mode="after")
    def _require_secrets(self) -> Self:
        if self.environment is Environment.DEVELOPMENT:
            # Frozen model: fill the documented development defaults in place.
            if not self.ingest_api_keys:
                object.__setattr__(self, "ingest_api_keys", [SecretStr(DEV_INGEST_API_KEY)])
            if self.admin_api_key is None:
                object.__setattr__(self, "admin_api_key", SecretStr(DEV_ADMIN_API_KEY))
            if self.auth_secret is None:
                object.__setattr__(self, "auth_secret", SecretStr(DEV_AUTH_SECRET))
            return self
        missing = [
            name
            for name, value in (
                ("SWITCHBOARD_INGEST_API_KEYS", self.ingest_api_keys),
                ("SWITCHBOARD_ADMIN_API_KEY", self.admin_api_key),
                ("SWITCHBOARD_AUTH_SECRET", self.auth_secret),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"required outside development: {', '.join(missing)}")
        secrets = [k.get_secret_value() for k in self.ingest_api_keys]
        secrets += [self.admin_api_key.get_secret_value(), self.auth_secret.get_secret_value()]  # type: ignore[union-attr]
        if any(s in _DEV_SECRETS for s in secrets):
            raise ValueError("development secrets are refused outside development")
        if len(self.auth_secret.get_secret_value()) < 32:  # type: ignore[union-attr]
            raise ValueError("SWITCHBOARD_AUTH_SECRET must be at least 32 characters")
        return self

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one (adds the deployment's prefix)."""
        return f"{self.topic_prefix}{name}"

    @property
    def admin_key(self) -> str:
        assert self.admin_api_key is not None  # set by the validator
        return self.admin_api_key.get_secret_value()

    @property
    def token_secret(self) -> str:
        assert self.auth_secret is not None  # set by the validator
        return self.auth_secret.get_secret_value()
