from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SecretStr

from switchboard_common.settings import DEV_INGEST_API_KEY, CommonSettings

# Connections ingest uses beside its committers: the outbox relay's dedicated one and a /health/ready probe.
_SIDE_CONNECTIONS = 2


class IngestSettings(CommonSettings):
    DEV_SECRETS: ClassVar[dict[str, Any]] = {"ingest_api_keys": [SecretStr(DEV_INGEST_API_KEY)]}

    # Bearer keys accepted on the generic API channel (POST /v1/messages).
    ingest_api_keys: list[SecretStr] = Field(default_factory=list)
    # Group commit of POST /v1/messages: requests queue up while a commit runs, and the next free committer
    # takes up to this many of them into one transaction (receipts + outbox rows, one commit). There is no
    # linger: a lone request commits at once, batches only form under load.
    ingest_commit_max_batch: int = Field(default=500, ge=1, le=5000)
    # Transactions in flight at once, each on its own pooled connection. Two keep the database busy while
    # one batch commits and the next is written; more rarely help, since batches grow instead.
    ingest_commit_concurrency: int = Field(default=2, ge=1, le=32)
    # The longest a request waits for its message to be recorded before it answers 503 (retry with the same
    # message_id: the retry is answered as the message's state then is). Providers give up after ~10-15 s,
    # connect included, and would count a slow success as a failure anyway.
    ingest_accept_timeout_ms: int = Field(default=5000, ge=100, le=60_000)

    @property
    def ingest_pool_size(self) -> int:
        """Ingest's pool: one connection per committer, the relay's and a health probe's; nothing else
        takes a connection, so the pool never grows past it and no connection is opened and closed under
        load (ingest ignores ``db_pool_size`` / ``db_max_overflow``)."""
        return self.ingest_commit_concurrency + _SIDE_CONNECTIONS
