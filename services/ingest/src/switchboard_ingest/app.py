from __future__ import annotations

from fastapi import FastAPI

from switchboard_common.http.app import create_service_app
from switchboard_common.settings import Settings
from switchboard_ingest.messages.endpoints import router as messages_router


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        "ingest",
        settings or Settings(),
        [messages_router],
        description="Receives customers' messages from every channel, verifies and normalizes them, and "
        "publishes them to the event log.",
    )
