from __future__ import annotations

import httpx
from fastapi import FastAPI

from switchboard_common.db.outbox import Outbox
from switchboard_common.events import Channel
from switchboard_common.http.app import create_service_app
from switchboard_common.runtime import ServiceRuntime
from switchboard_ingest.channels.endpoints import router as webhooks_router
from switchboard_ingest.channels.registry import configure
from switchboard_ingest.messages.committer import GroupCommitter
from switchboard_ingest.messages.endpoints import router as messages_router
from switchboard_ingest.models import outbox_table
from switchboard_ingest.outbound import consumer as dispatch_consumer
from switchboard_ingest.outbound.dispatcher import Dispatcher
from switchboard_ingest.retention import retention_job
from switchboard_ingest.settings import IngestSettings
from switchboard_ingest.waits import QueueWaits
from switchboard_ingest.webchat.endpoints import WebchatCors
from switchboard_ingest.webchat.endpoints import router as webchat_router
from switchboard_ingest.webchat.sender import WebchatSender
from switchboard_ingest.webchat.stream import WebchatHub


class _Closing:
    """Closes an HTTP client when the service stops."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._client.aclose()


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    # The pool is sized to the work in flight (see IngestSettings.ingest_pool_size), with no overflow:
    # connections are opened once and reused, never churned under load.
    settings = settings.model_copy(update={"db_pool_size": settings.ingest_pool_size, "db_max_overflow": 0})

    async def setup(runtime: ServiceRuntime, app: FastAPI) -> None:
        outbox = Outbox(outbox_table, settings)
        runtime.use_outbox(outbox)
        committer = GroupCommitter(runtime.db, outbox, settings)
        runtime.background.append(committer)
        app.state.committer = committer
        runtime.background.append(retention_job(runtime.db, settings))
        # The webhooks' own fetches (SNS certificates and subscription confirmations) share one client.
        fetches = httpx.AsyncClient(timeout=10.0)
        runtime.background.append(_Closing(fetches))
        channels = configure(settings, fetches)
        app.state.channels = channels
        app.state.queue_waits = None
        if settings.router_url and settings.router_service_key:
            timeout_s = settings.voice_wait_timeout_ms / 1000
            router = httpx.AsyncClient(base_url=settings.router_url, timeout=timeout_s)
            runtime.background.append(_Closing(router))
            app.state.queue_waits = QueueWaits(
                router, settings.router_service_key.get_secret_value(), timeout_s
            )
        # Web chat: one LISTEN connection fans replies out to the visitors' streams.
        hub = WebchatHub(runtime.db)
        runtime.background.append(hub)
        app.state.webchat_hub = hub
        senders = {**channels.outbound(), Channel.WEBCHAT: WebchatSender(hub)}
        dispatcher = Dispatcher(runtime.db, outbox, senders, settings)
        runtime.background.append(dispatcher)
        runtime.add_consumer(
            dispatch_consumer.GROUP_ID,
            dispatch_consumer.handlers(dispatcher),
            fetch_max_wait_ms=settings.dispatch_fetch_max_wait_ms,
            advisory=True,
        )

    app = create_service_app(
        "ingest",
        settings,
        [messages_router, webhooks_router, webchat_router],
        setup=setup,
        # Longest prefix first: the first that matches decides.
        body_limits=[
            ("/webhooks/email/", settings.email_max_request_bytes),
            ("/webhooks/", settings.webhook_max_request_bytes),
        ],
        description="Receives customers' messages from every channel (the generic API and providers' "
        "webhooks), verifies and normalizes them, and records them durably; the outbox relay publishes them "
        "to the event log. Sends agents' replies through each channel's provider, with retries, and serves "
        "the web chat widget and its visitors' API.",
    )
    app.add_middleware(WebchatCors, allowed_origins=settings.webchat_allowed_origins)
    return app
