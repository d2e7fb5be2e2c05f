"""The message path with all four services running in this process on the real broker and database:
ingest -> conversation -> router -> conversation/metrics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from switchboard_common import topics
from switchboard_common.events import EventEnvelope
from switchboard_common.kafka.producer import EventPublisher
from switchboard_conversation.app import create_app as conversation_app
from switchboard_ingest.app import create_app as ingest_app
from switchboard_metrics.app import create_app as metrics_app
from switchboard_router.app import create_app as router_app
from tests.conftest import ADMIN_KEY, INGEST_KEY, Settings
from tests.support import api_message, bearer, eventually, read_topic, serve

ADMIN = bearer(ADMIN_KEY)


@dataclass
class System:
    ingest: httpx.AsyncClient
    conversation: httpx.AsyncClient
    router: httpx.AsyncClient
    metrics: httpx.AsyncClient

    async def send(self, message_id: str, customer: str, email: str | None = None, **extra: Any) -> str:
        body = api_message(message_id, customer, **extra)
        if email:
            body["customer"]["email"] = email
        response = await self.ingest.post("/v1/messages", json=body, headers=bearer(INGEST_KEY))
        assert response.status_code == 202, response.text
        return str(response.json()["message_id"])

    async def agent(
        self, email: str, skills: list[str], capacity: int = 2, online: bool = True
    ) -> dict[str, Any]:
        response = await self.router.post(
            "/v1/agents",
            json={"name": email, "email": email, "skills": skills, "capacity": capacity},
            headers=ADMIN,
        )
        assert response.status_code == 201, response.text
        agent: dict[str, Any] = response.json()
        agent["auth"] = bearer(agent["token"]["access_token"])
        if online:
            await self.set_status(agent, "online")
        return agent

    async def set_status(self, agent: dict[str, Any], status: str) -> None:
        response = await self.router.put(
            f"/v1/agents/{agent['id']}/status", json={"status": status}, headers=agent["auth"]
        )
        assert response.status_code == 200, response.text

    async def conversations_of(self, agent: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self.conversation.get("/v1/conversations", headers=agent["auth"])
        assert response.status_code == 200
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[System]:
    """The four services in-process on ``settings``."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(serve(f(settings)))
            for f in (ingest_app, conversation_app, router_app, metrics_app)
        ]
        yield System(*clients)


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running(settings) as system:
        yield system


async def test_message_is_stored_and_assigned_to_a_skilled_online_agent(system: System) -> None:
    await system.agent("wrong-skill@example.com", ["sales"])
    ada = await system.agent("ada@example.com", ["billing", "sales"])
    message_id = await system.send("m-1", "cust-1", skills=["billing"])

    [conversation] = await eventually(lambda: system.conversations_of(ada), what="assignment")
    assert conversation["status"] == "assigned"
    assert conversation["assigned_agent_id"] == ada["id"]
    detail = (
        await system.conversation.get(f"/v1/conversations/{conversation['id']}", headers=ada["auth"])
    ).json()
    assert [m["id"] for m in detail["messages"]] == [message_id]
    assert detail["customer"]["identities"] == [{"kind": "api", "value": "cust-1"}]

    router_view = (await system.router.get(f"/v1/agents/{ada['id']}", headers=ada["auth"])).json()
    assert router_view["active_count"] == 1

    async def kpis() -> dict[str, Any] | None:
        body: dict[str, Any] = (await system.metrics.get("/v1/kpis", headers=ADMIN)).json()
        return body if body["volume"]["conversations_assigned"] == 1 else None

    snapshot = await eventually(kpis, what="metrics to count the assignment")
    assert snapshot["volume"]["messages_in"] == 1
    assert snapshot["volume"]["conversations_opened"] == 1
    assert snapshot["times"]["wait"]["count"] == 1
    assert [a["agent_id"] for a in snapshot["agents"] if a["active_conversations"] == 1] == [ada["id"]]
    assert snapshot["waiting_now"] == 0


async def test_one_thread_per_customer_across_messages_and_channels(system: System) -> None:
    ada = await system.agent("ada@example.com", [])
    await system.send("m-1", "cust-1", email="Bob@Example.com")
    await system.send("m-2", "cust-1")
    [conversation] = await eventually(lambda: system.conversations_of(ada), what="assignment")

    async def two_messages() -> list[Any] | None:
        detail = (
            await system.conversation.get(f"/v1/conversations/{conversation['id']}", headers=ada["auth"])
        ).json()
        return detail["messages"] if len(detail["messages"]) == 2 else None

    messages = await eventually(two_messages, what="second message in the same conversation")
    assert [m["body"] for m in messages] == ["hello from cust-1", "hello from cust-1"]


async def test_waiting_conversation_is_assigned_when_an_agent_comes_online(system: System) -> None:
    ada = await system.agent("ada@example.com", ["billing"], online=False)
    await system.send("m-1", "cust-1", skills=["billing"])

    async def queued() -> dict[str, Any] | None:
        body: dict[str, Any] = (await system.router.get("/v1/queue", headers=ADMIN)).json()
        return body if body["length"] == 1 else None

    await eventually(queued, what="the conversation to wait in the queue")
    assert await system.conversations_of(ada) == []
    await system.set_status(ada, "online")
    [conversation] = await eventually(
        lambda: system.conversations_of(ada), what="assignment after coming online"
    )
    assert conversation["assigned_agent_id"] == ada["id"]


async def test_capacity_is_respected_and_resolving_frees_it(system: System) -> None:
    ada = await system.agent("ada@example.com", [], capacity=1)
    await system.send("m-1", "cust-1")
    await system.send("m-2", "cust-2")
    [first] = await eventually(lambda: system.conversations_of(ada), what="first assignment")

    async def queue_length() -> int | None:
        length = int((await system.router.get("/v1/queue", headers=ADMIN)).json()["length"])
        return length if length == 1 else None

    await eventually(queue_length, what="the second conversation to wait")
    resolved = await system.conversation.post(f"/v1/conversations/{first['id']}/resolve", headers=ada["auth"])
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"

    async def second() -> list[dict[str, Any]] | None:
        items = [c for c in await system.conversations_of(ada) if c["status"] == "assigned"]
        return items or None

    [conversation] = await eventually(second, what="the freed capacity to take the waiting conversation")
    assert conversation["id"] != first["id"]


async def test_agents_see_only_their_own_conversations(system: System) -> None:
    ada = await system.agent("ada@example.com", [], capacity=1)
    bob = await system.agent("bob@example.com", [], capacity=1, online=False)
    await system.send("m-1", "cust-1")
    [conversation] = await eventually(lambda: system.conversations_of(ada), what="assignment")

    assert await system.conversations_of(bob) == []
    peek = await system.conversation.get(f"/v1/conversations/{conversation['id']}", headers=bob["auth"])
    assert peek.status_code == 404
    steal = await system.conversation.post(
        f"/v1/conversations/{conversation['id']}/resolve", headers=bob["auth"]
    )
    assert steal.status_code == 404
    impersonate = await system.router.put(
        f"/v1/agents/{ada['id']}/status", json={"status": "offline"}, headers=bob["auth"]
    )
    # Another agent is invisible to bob: 404, as for a missing one, and nothing changes.
    assert impersonate.status_code == 404
    assert (await system.router.get(f"/v1/agents/{ada['id']}", headers=bob["auth"])).status_code == 404
    assert (await system.router.get(f"/v1/agents/{ada['id']}", headers=ada["auth"])).json()[
        "status"
    ] == "online"
    assert (await system.conversation.get("/v1/conversations")).status_code == 401
    assert (await system.router.post("/v1/agents", json={}, headers=bob["auth"])).status_code == 403
    admin_view = await system.conversation.get(f"/v1/conversations/{conversation['id']}", headers=ADMIN)
    assert admin_view.status_code == 200


async def test_redelivered_message_event_is_stored_once(system: System, settings: Settings) -> None:
    ada = await system.agent("ada@example.com", [])
    await system.send("m-1", "cust-1")
    [conversation] = await eventually(lambda: system.conversations_of(ada), what="assignment")
    [record] = await read_topic(settings, topics.MESSAGES_INBOUND, 1)
    # Replay the very same event, as a consumer restart or an ingest retry would.
    publisher = EventPublisher(settings, client_id="test-replay")
    await publisher.start()
    try:
        await publisher.publish(topics.MESSAGES_INBOUND, "api:cust-1", EventEnvelope.from_bytes(record.value))
        await system.send("m-2", "cust-1")  # a later, distinct message proves the replay was consumed
    finally:
        await publisher.stop()

    async def settled() -> list[Any] | None:
        detail = (
            await system.conversation.get(f"/v1/conversations/{conversation['id']}", headers=ada["auth"])
        ).json()
        return detail["messages"] if len(detail["messages"]) >= 2 else None

    messages = await eventually(settled, what="the later message")
    assert len(messages) == 2
    assert len({m["id"] for m in messages}) == 2


async def test_agent_api_rejects_bad_input(system: System) -> None:
    bad = await system.router.post(
        "/v1/agents", json={"name": "x", "email": "not-an-email", "capacity": -1}, headers=ADMIN
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "validation_error"
    nul = await system.router.post(
        "/v1/agents", json={"name": "x", "email": "nul\u0000@example.com"}, headers=ADMIN
    )
    assert nul.status_code == 422, nul.text
    await system.agent("ada@example.com", [])
    dup = await system.router.post(
        "/v1/agents", json={"name": "Ada", "email": "ada@example.com"}, headers=ADMIN
    )
    assert dup.status_code == 409
    missing = await system.router.get(f"/v1/agents/{uuid.uuid4()}", headers=ADMIN)
    assert missing.status_code == 404
    bad_id = await system.conversation.get("/v1/conversations/not-a-uuid", headers=ADMIN)
    assert bad_id.status_code == 422
    # Query parameters are read as strictly as bodies: an instant that cannot be put in UTC, and a number
    # that pydantic would take for a Unix time, are both refused.
    for before in ("0001-01-01T00:00:00+14:00", "0.5"):
        cursor = await system.conversation.get("/v1/conversations", params={"before": before}, headers=ADMIN)
        assert cursor.status_code == 422, cursor.text
        assert cursor.json()["error"]["details"][0]["loc"] == ["query", "before"]


async def test_a_customer_writing_again_after_resolution_reopens_the_same_conversation(
    system: System,
) -> None:
    ada = await system.agent("ada@example.com", [], capacity=1)
    first = await system.send("m-1", "cust-1")
    [conversation] = await eventually(lambda: system.conversations_of(ada), what="assignment")
    resolved = await system.conversation.post(
        f"/v1/conversations/{conversation['id']}/resolve", headers=ada["auth"]
    )
    assert resolved.status_code == 200

    second = await system.send("m-2", "cust-1")

    async def reassigned() -> dict[str, Any] | None:
        detail: dict[str, Any] = (
            await system.conversation.get(f"/v1/conversations/{conversation['id']}", headers=ADMIN)
        ).json()
        # The customer's messages, around the satisfaction survey the resolution asked (automated).
        inbound = [m for m in detail["messages"] if m["direction"] == "inbound"]
        return detail if detail["status"] == "assigned" and len(inbound) == 2 else None

    detail = await eventually(reassigned, what="the conversation to reopen and be assigned again")
    assert detail["assigned_agent_id"] == ada["id"]
    assert [(m["id"], m["automated"]) for m in detail["messages"]] == [
        (first, False),
        (detail["messages"][1]["id"], True),
        (second, False),
    ]
    all_of_them = (await system.conversation.get("/v1/conversations", headers=ADMIN)).json()["items"]
    assert [c["id"] for c in all_of_them] == [conversation["id"]]
    router_view = (await system.router.get(f"/v1/agents/{ada['id']}", headers=ada["auth"])).json()
    assert router_view["active_count"] == 1

    async def kpis() -> dict[str, Any] | None:
        body: dict[str, Any] = (await system.metrics.get("/v1/kpis", headers=ADMIN)).json()
        volume = body["volume"]
        return body if volume["conversations_reopened"] == 1 and volume["messages_in"] == 2 else None

    snapshot = await eventually(kpis, what="metrics to count the reopen")
    assert snapshot["volume"]["conversations_opened"] == 1
    assert snapshot["volume"]["conversations_resolved"] == 1
    assert snapshot["rates"]["reopen_rate"] == 1.0
    assert snapshot["rates"]["first_contact_resolution"] == 0.0


async def test_with_reopening_switched_off_a_returning_customer_gets_a_new_conversation(
    settings: Settings,
) -> None:
    """SWITCHBOARD_CONVERSATION_REOPEN_WINDOW_S reaches the service: 0 means never reopen."""
    async with running(settings.model_copy(update={"conversation_reopen_window_s": 0})) as system:
        ada = await system.agent("ada@example.com", [], capacity=2)
        await system.send("m-1", "cust-1")
        [first] = await eventually(lambda: system.conversations_of(ada), what="assignment")
        resolved = await system.conversation.post(
            f"/v1/conversations/{first['id']}/resolve", headers=ada["auth"]
        )
        assert resolved.status_code == 200
        await system.send("m-2", "cust-1")

        async def two() -> list[dict[str, Any]] | None:
            items = await system.conversations_of(ada)
            return items if len(items) == 2 else None

        conversations = await eventually(two, what="a second conversation")
    assert {c["status"] for c in conversations} == {"resolved", "assigned"}
    assert first["id"] in {c["id"] for c in conversations}
