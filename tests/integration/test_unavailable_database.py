"""Every service answers 503 with Retry-After, never 500, while PostgreSQL refuses connections or does not
answer at all: a client that treats 500 as final would drop what it was sending."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from switchboard_conversation.app import create_app as conversation_app
from switchboard_devstack.ports import free_port
from switchboard_metrics.app import create_app as metrics_app
from switchboard_router.app import create_app as router_app
from tests.conftest import ADMIN_KEY, Settings
from tests.support import bearer, serve

ADMIN = bearer(ADMIN_KEY)
SOME_ID = uuid.uuid4()

# (app factory, method, path, JSON body): admin calls, so authorization passes and the database is reached.
CALLS: list[tuple[Callable[[Any], FastAPI], str, str, dict[str, Any] | None]] = [
    (conversation_app, "GET", "/v1/conversations", None),
    (conversation_app, "GET", f"/v1/conversations/{SOME_ID}", None),
    (conversation_app, "POST", f"/v1/conversations/{SOME_ID}/resolve", None),
    (router_app, "GET", "/v1/agents", None),
    (router_app, "POST", "/v1/agents", {"name": "Ada", "email": "ada@example.com", "capacity": 1}),
    (router_app, "GET", "/v1/queue", None),
    (metrics_app, "GET", "/v1/kpis", None),
]


@asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers: a hung database, or a dropped network."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.mark.parametrize("database", ["refusing", "silent"])
async def test_every_service_answers_503_while_the_database_is_unavailable(
    settings: Settings, database: str
) -> None:
    async with _silent_server() as silent_port:
        port = free_port() if database == "refusing" else silent_port
        down = settings.model_copy(
            update={
                "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{port}/switchboard",
                "db_connect_timeout_ms": 300,
            }
        )
        failures = []
        for factory in dict.fromkeys(f for f, *_ in CALLS):
            async with serve(factory(down)) as client:
                client.timeout = httpx.Timeout(30)
                for f, method, path, body in CALLS:
                    if f is not factory:
                        continue
                    response = await client.request(method, path, json=body, headers=ADMIN)
                    error = response.json().get("error", {})
                    if (response.status_code, error.get("code")) != (503, "unavailable") or not (
                        response.headers.get("retry-after")
                    ):
                        failures.append((method, path, response.status_code, response.text[:200]))
                ready = await client.get("/health/ready")
                if ready.status_code != 503 or ready.json()["checks"]["database"]["ok"]:
                    failures.append(("GET", "/health/ready", ready.status_code, ready.text[:200]))
    assert not failures
