from __future__ import annotations

from fastapi import FastAPI

from switchboard_common.db.outbox import Outbox
from switchboard_common.http.app import create_service_app
from switchboard_common.runtime import ServiceRuntime
from switchboard_conversation.consumer import GROUP_ID, handlers
from switchboard_conversation.conversations.endpoints import router as conversations_router
from switchboard_conversation.models import outbox_table
from switchboard_conversation.settings import ConversationSettings


async def _setup(runtime: ServiceRuntime, app: FastAPI) -> None:
    outbox = Outbox(outbox_table, runtime.settings)
    runtime.use_outbox(outbox)
    runtime.add_consumer(GROUP_ID, handlers(outbox))


def create_app(settings: ConversationSettings | None = None) -> FastAPI:
    return create_service_app(
        "conversation",
        settings or ConversationSettings(),
        [conversations_router],
        setup=_setup,
        description="One thread per customer across every channel: customers, identities, conversations and "
        "messages, and the agent API to read and resolve them.",
    )
