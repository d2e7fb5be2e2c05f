from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from switchboard_common.db.outbox import Outbox
from switchboard_common.http.app import create_service_app
from switchboard_common.runtime import ServiceRuntime
from switchboard_conversation.automation.autoreply import AckTemplates
from switchboard_conversation.automation.endpoints import router as automation_router
from switchboard_conversation.consumer import GROUP_ID, handlers
from switchboard_conversation.conversations.endpoints import customers_router, tags_router
from switchboard_conversation.conversations.endpoints import router as conversations_router
from switchboard_conversation.customers.endpoints import router as merges_router
from switchboard_conversation.models import outbox_table
from switchboard_conversation.revoked import RevokedAgents
from switchboard_conversation.settings import ConversationSettings
from switchboard_conversation.snoozes import snooze_waker
from switchboard_conversation.stream.endpoints import router as stream_router
from switchboard_conversation.stream.hub import FeedHub
from switchboard_conversation.stream.retention import feed_retention


def create_app(settings: ConversationSettings | None = None) -> FastAPI:
    settings = settings or ConversationSettings()
    reopen_window = timedelta(seconds=settings.conversation_reopen_window_s)

    async def setup(runtime: ServiceRuntime, app: FastAPI) -> None:
        outbox = Outbox(outbox_table, runtime.settings)
        runtime.use_outbox(outbox)
        acks = (
            AckTemplates(
                settings.conversation_auto_ack_template, settings.conversation_auto_ack_closed_template
            )
            if settings.conversation_auto_ack_enabled
            else None
        )
        runtime.add_consumer(GROUP_ID, handlers(outbox, reopen_window, acks))
        runtime.background.append(
            snooze_waker(runtime.db, outbox, settings.conversation_snooze_check_ms / 1000)
        )
        app.state.feed_hub = FeedHub(runtime.db, poll_s=settings.stream_poll_interval_ms / 1000)
        runtime.background.append(app.state.feed_hub)
        keep = timedelta(seconds=settings.stream_retention_s)
        runtime.background.append(feed_retention(runtime.db, keep, settings.stream_retention_interval_s))
        app.state.revoked_agents = RevokedAgents(runtime.db, settings.conversation_revocation_refresh_s)
        runtime.background.append(app.state.revoked_agents)

    return create_service_app(
        "conversation",
        settings,
        [
            conversations_router,
            customers_router,
            merges_router,
            tags_router,
            automation_router,
            stream_router,
        ],
        setup=setup,
        description="One thread per customer across every channel: customers, identities, conversations and "
        "messages, and the agent API to read and resolve them.",
    )
