from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SecretStr

from switchboard_common.settings import DEV_INGEST_API_KEY, DEV_WEBCHAT_TOKEN_SECRET, CommonSettings

# Connections ingest uses beside its committers: the outbox relay's dedicated one, a /health/ready probe, a
# /metrics scrape (the outbox backlog query), the dispatcher's consumer and its claim / record transactions,
# and web chat's (the hub's LISTEN connection and its two working connections).
_SIDE_CONNECTIONS = 9


class IngestSettings(CommonSettings):
    DEV_SECRETS: ClassVar[dict[str, Any]] = {
        "ingest_api_keys": [SecretStr(DEV_INGEST_API_KEY)],
        "webchat_token_secret": SecretStr(DEV_WEBCHAT_TOKEN_SECRET),
    }

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

    # --- channels: each is served only once its secrets are set (else its webhook answers 404) -----------
    # The base URL providers call, as they see it (e.g. "https://hooks.example.com"), when ingest runs
    # behind a proxy: Twilio signs the URL it called, so it is rebuilt from this, not from what ingest sees.
    public_base_url: str | None = None
    # Meta Graph API, for the WhatsApp Cloud API and the Messenger/Instagram send API.
    graph_api_base: str = "https://graph.facebook.com/v21.0"
    whatsapp_app_secret: SecretStr | None = None  # signs webhooks (X-Hub-Signature-256)
    whatsapp_verify_token: SecretStr | None = None  # the GET handshake's hub.verify_token
    whatsapp_access_token: SecretStr | None = None  # sends messages
    whatsapp_phone_number_id: str | None = None  # the business number messages are sent from
    messenger_app_secret: SecretStr | None = None
    messenger_verify_token: SecretStr | None = None
    messenger_page_access_token: SecretStr | None = None
    twilio_api_base: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None  # signs webhooks (X-Twilio-Signature) and authenticates sends
    twilio_from_number: str | None = None  # the E.164 number SMS replies are sent from
    # Replies on the generic API channel are POSTed to this URL, signed with the secret (docs/channels.md).
    api_reply_url: str | None = None
    api_reply_secret: SecretStr | None = None

    # Request body limits of providers' webhooks (the API channel keeps max_request_bytes): Meta and Twilio
    # batch several updates per POST; an email carries its attachments (Mailgun accepts 25 MB messages).
    webhook_max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    email_max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)

    # --- email -------------------------------------------------------------------------------------------
    # Mailgun inbound routes (POST /webhooks/email/mailgun): the HTTP webhook signing key, and how old a
    # signed timestamp may be.
    mailgun_signing_key: SecretStr | None = None
    mailgun_max_age_s: int = Field(default=300, ge=1, le=3600)
    # Raw RFC 5322 messages (POST /webhooks/email/mime) from your own MTA: a Bearer token; and/or SES through
    # SNS, from these topic ARNs only (the SNS signature is verified against the certificate SNS names,
    # fetched only from an SNS host).
    email_mime_token: SecretStr | None = None
    email_sns_topic_arns: list[str] = Field(default_factory=list)
    # Replies by email: over SMTP from this address; Message-IDs of our replies use its domain.
    email_from_address: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Or through Mailgun's messages API (used instead of SMTP when both are set): an API key of the account,
    # its sending domain, and the region's API base (https://api.eu.mailgun.net for an EU domain).
    mailgun_api_key: SecretStr | None = None
    mailgun_domain: str | None = None
    mailgun_api_base: str = "https://api.mailgun.net"

    # --- voice (Twilio) -------------------------------------------------------------------------------------
    # Inbound calls reach POST /webhooks/twilio/voice with the Twilio account above; callbacks need
    # public_base_url. Greeting and voicemail limits:
    voice_max_recording_s: int = Field(default=120, ge=5, le=3600)
    # The greeting states the expected wait of ``voice_queue`` (the queue routing rules put calls in), as
    # the router estimates it: its base URL (e.g. "http://router:8000") and one of the router's
    # SWITCHBOARD_ROUTER_SERVICE_KEYS. Unset: the greeting gives no figure. The router gets at most
    # voice_wait_timeout_ms in all (Twilio waits 15 s for the TwiML, the caller hears silence meanwhile).
    router_url: str | None = None
    router_service_key: SecretStr | None = None
    voice_queue: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    voice_wait_timeout_ms: int = Field(default=500, ge=10, le=5000)

    # --- web chat -------------------------------------------------------------------------------------------
    # Signs visitors' session tokens (required outside development).
    webchat_token_secret: SecretStr | None = None
    # Sites that verify their signed-in users: user_hash = hex(HMAC-SHA256(this, user_id)). Unset: every
    # visitor is anonymous (identified by their session).
    webchat_identity_secret: SecretStr | None = None
    webchat_session_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    # Replies kept for visitors' streams to resume from (see retention.py).
    webchat_history_days: int = Field(default=7, ge=1, le=3650)
    # Origins allowed to embed the widget and call the visitor API (CORS); empty: same origin only.
    webchat_allowed_origins: list[str] = Field(default_factory=list)
    # Rate limits of the visitor API, counted in PostgreSQL so that every replica shares them (a window
    # opens at a key's first hit; over the limit the answer is 429 with Retry-After). Messages per session
    # token and per client address in each message window; new sessions per client address in each
    # session window. An address is the peer's, or X-Forwarded-For's from forwarded_allow_ips' proxies:
    # visitors behind one NAT share its allowance, hence its larger figure.
    webchat_rate_window_s: int = Field(default=60, ge=1, le=86_400)
    webchat_session_messages_per_window: int = Field(default=30, ge=1)
    webchat_address_messages_per_window: int = Field(default=300, ge=1)
    webchat_session_rate_window_s: int = Field(default=600, ge=1, le=86_400)
    webchat_address_sessions_per_window: int = Field(default=30, ge=1)

    # --- retention (retention.py) -------------------------------------------------------------------------
    # Dedup keys of providers' retries; replies the dispatcher is done with; how often the purge runs.
    ingest_receipt_retention_days: int = Field(default=30, ge=1, le=3650)
    ingest_delivery_retention_days: int = Field(default=7, ge=1, le=3650)
    ingest_retention_interval_s: float = Field(default=3600.0, gt=0)

    # --- outbound dispatcher ------------------------------------------------------------------------------
    # Sends in flight at once, across channels, and per channel (a slow provider fills only its own share).
    dispatch_concurrency: int = Field(default=32, ge=1, le=1000)
    dispatch_channel_concurrency: int = Field(default=16, ge=1, le=1000)
    # One provider call's bound (connect included).
    dispatch_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    # A reply is retried after 429 (no sooner than Retry-After), 408 and 5xx: first after the initial delay,
    # doubling up to the maximum; after this many attempts it is dead-lettered and reported failed.
    dispatch_max_attempts: int = Field(default=8, ge=1, le=100)
    dispatch_backoff_initial_ms: int = Field(default=1000, ge=1)
    dispatch_backoff_max_ms: int = Field(default=300_000, ge=1)
    # The dispatcher's consumer of message.outbound waits up to this long per fetch: replies are not the hot
    # path, and an idle consumer then costs a few fetches a second instead of fifty.
    dispatch_fetch_max_wait_ms: int = Field(default=200, ge=1, le=5000)
    # Due retries are looked for this often (new replies wake the dispatcher at once).
    dispatch_poll_interval_ms: int = Field(default=500, ge=10)

    @property
    def ingest_pool_size(self) -> int:
        """Ingest's pool: one connection per committer, plus the side connections above; nothing else
        takes a connection, so the pool never grows past it and no connection is opened and closed under
        load (ingest ignores ``db_pool_size`` / ``db_max_overflow``)."""
        return self.ingest_commit_concurrency + _SIDE_CONNECTIONS
