"""Web chat end to end on the real broker and database: a visitor's session (anonymous or a verified site
user), their messages into the agent's thread (once, however often the widget retries), the agent's reply
out on the visitor's Server-Sent Events stream, a reconnect that resumes after the last event id without
gaps or repeats, read reports back into the thread, and refused tokens.

Ingest is served by uvicorn on a real port (httpx's ASGI transport buffers whole responses, so it cannot
carry a stream); conversation and router run in-process as in test_message_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_common.db.database import Database
from switchboard_common.events import Channel
from switchboard_conversation.app import create_app as conversation_app
from switchboard_devstack.ports import free_port
from switchboard_ingest.app import create_app as ingest_app
from switchboard_ingest.channels.base import OutboundMessage, SendResult
from switchboard_ingest.webchat.sender import WebchatSender
from switchboard_ingest.webchat.stream import WebchatHub
from switchboard_router.app import create_app as router_app
from tests.conftest import WEBCHAT_SECRET, Settings
from tests.integration.test_channels import delivery_of, reply
from tests.integration.test_message_path import System
from tests.support import bearer, eventually, serve

IDENTITY_SECRET = "site-identity-secret-0123456789"
SITE = "https://shop.example.com"


def site_hash(user_id: str) -> str:
    """What the site's server computes to vouch for its user (independently of the code under test)."""
    return hmac.new(IDENTITY_SECRET.encode(), user_id.encode(), hashlib.sha256).hexdigest()


# --- ingest with web chat wired ----------------------------------------------------------------------------


@asynccontextmanager
async def serve_on_port(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` (its lifespan included) with uvicorn on a free local port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5)
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # startup failed: raise its error
            raise AssertionError("the server stopped during startup")
        return server.started

    try:
        await eventually(started, what="ingest to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def webchat_settings(settings: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webchat_identity_secret": IDENTITY_SECRET,
        "webchat_allowed_origins": [SITE],
        "dispatch_poll_interval_ms": 50,
        "dispatch_fetch_max_wait_ms": 20,
        **overrides,
    }
    return Settings.model_validate({**settings.model_dump(), **values})


@asynccontextmanager
async def running_webchat(settings: Settings) -> AsyncIterator[System]:
    """Ingest on a real port (``system.ingest`` talks to it over TCP), conversation and router in-process."""
    async with AsyncExitStack() as stack:
        base_url = await stack.enter_async_context(serve_on_port(ingest_app(settings)))
        ingest = await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=10))
        conversation = await stack.enter_async_context(serve(conversation_app(settings)))
        router = await stack.enter_async_context(serve(router_app(settings)))
        # Metrics plays no part here; System's slot for it points nowhere and is never called.
        metrics = await stack.enter_async_context(httpx.AsyncClient(base_url="http://metrics.invalid"))
        yield System(ingest, conversation, router, metrics)


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_webchat(webchat_settings(settings)) as system:
        yield system


# --- the visitor's side ----------------------------------------------------------------------------------


async def start_session(system: System, **body: str) -> dict[str, Any]:
    response = await system.ingest.post("/webchat/sessions", json=body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def post_message(system: System, token: str, client_id: str, text: str) -> httpx.Response:
    return await system.ingest.post(
        "/webchat/messages", json={"client_message_id": client_id, "text": text}, headers=bearer(token)
    )


@dataclass(frozen=True)
class Event:
    id: str | None
    data: str


class Stream:
    """A visitor's open stream, read event by event (keep-alive comments and the retry hint skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 20.0) -> Event:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Event:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line:
                name, _, value = line.partition(":")
                if name:  # a line starting with ':' is a comment (keep-alive)
                    fields[name] = value.removeprefix(" ")
            elif "data" in fields:
                return Event(fields.get("id"), fields["data"])
            else:
                fields = {}
        raise AssertionError("the stream ended")


@asynccontextmanager
async def open_stream(
    system: System, token: str, last_event_id: int | None = None, header: str | None = None
) -> AsyncIterator[Stream]:
    params: dict[str, str | int] = {"token": token}
    if last_event_id is not None:
        params["last_event_id"] = last_event_id
    headers = {"Last-Event-ID": header} if header is not None else {}
    async with system.ingest.stream(
        "GET", "/webchat/stream", params=params, headers=headers, timeout=httpx.Timeout(10, read=None)
    ) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


# --- the agent's side ------------------------------------------------------------------------------------


async def assigned_thread(system: System, agent: dict[str, Any], messages: int = 1) -> dict[str, Any]:
    [conversation] = await eventually(lambda: system.conversations_of(agent), what="assignment")

    async def thread() -> dict[str, Any] | None:
        response = await system.conversation.get(
            f"/v1/conversations/{conversation['id']}", headers=agent["auth"]
        )
        body: dict[str, Any] = response.json()
        return body if len(body["messages"]) >= messages else None

    return await eventually(thread, what=f"{messages} message(s) in the thread")


# --- tests -----------------------------------------------------------------------------------------------


async def test_visitor_message_reaches_the_thread_once_and_the_reply_streams_back(
    system: System, settings: Settings
) -> None:
    agent = await system.agent("ada@example.com", [])
    session = await start_session(
        system, user_id="42", user_hash=site_hash("42"), name="Grace", email="Grace@Example.com"
    )
    assert session["verified"] is True
    token = session["token"]

    first = await post_message(system, token, "c-1", "Where is my order?")
    assert first.status_code == 202, first.text
    again = await post_message(system, token, "c-1", "Where is my order?")  # the widget's retry
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert again.json()["message_id"] == first.json()["message_id"]
    reused = await post_message(system, token, "c-1", "Something else")
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "id_reused")

    thread = await assigned_thread(system, agent)
    assert [(m["id"], m["channel"], m["body"]) for m in thread["messages"]] == [
        (first.json()["message_id"], "webchat", "Where is my order?")
    ]
    assert thread["customer"]["display_name"] == "Grace"
    identities = thread["customer"]["identities"]
    assert {"kind": "webchat", "value": "user:42"} in identities
    assert {"kind": "email", "value": "grace@example.com"} in identities

    async with open_stream(system, token) as stream:
        sent = await reply(system, agent, thread["id"], "On its way!")
        event = await stream.next()
    assert event.id is not None
    body = json.loads(event.data)
    assert (body["message_id"], body["text"]) == (sent["id"], "On its way!")
    assert datetime.fromisoformat(body["sent_at"]).tzinfo is not None
    await eventually(lambda: delivery_of(system, agent, thread["id"], sent["id"], "sent"), what="sent")

    # The widget reports it read; the thread shows it. Someone else's reply cannot be reported.
    read = await system.ingest.post("/webchat/read", json={"event_id": int(event.id)}, headers=bearer(token))
    assert read.status_code == 204, read.text
    await eventually(lambda: delivery_of(system, agent, thread["id"], sent["id"], "read"), what="read")
    stranger = (await start_session(system))["token"]
    refused = await system.ingest.post(
        "/webchat/read", json={"event_id": int(event.id)}, headers=bearer(stranger)
    )
    assert refused.status_code == 404

    # The session was recorded as issued.
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT identity, display_name FROM ingest.webchat_sessions WHERE session_id = :id"
                    ),
                    {"id": uuid.UUID(session["session_id"])},
                )
            ).one()
    finally:
        await engine.dispose()
    assert tuple(row) == ("user:42", "Grace")


async def test_a_reconnect_resumes_after_the_last_event_without_gaps_or_repeats(system: System) -> None:
    agent = await system.agent("ada@example.com", [])
    session = await start_session(system, name="Anonymous visitor")
    token = session["token"]
    assert session["verified"] is False
    assert (await post_message(system, token, "c-1", "Hello?")).status_code == 202
    thread = await assigned_thread(system, agent)
    assert {"kind": "webchat", "value": f"visitor:{session['session_id']}"} in thread["customer"][
        "identities"
    ]

    async with open_stream(system, token) as stream:
        first = await reply(system, agent, thread["id"], "one")
        event_1 = await stream.next()
        assert json.loads(event_1.data)["message_id"] == first["id"]
    # Disconnected: two replies are sent meanwhile.
    second = await reply(system, agent, thread["id"], "two")
    third = await reply(system, agent, thread["id"], "three")
    await eventually(lambda: delivery_of(system, agent, thread["id"], third["id"], "sent"), what="third sent")

    assert event_1.id is not None
    # The browser's reconnect: Last-Event-ID as a header (it wins over the page's first last_event_id).
    async with open_stream(system, token, last_event_id=0, header=event_1.id) as stream:
        event_2, event_3 = await stream.next(), await stream.next()
        assert [json.loads(e.data)["text"] for e in (event_2, event_3)] == ["two", "three"]
        assert json.loads(event_2.data)["message_id"] == second["id"]
        # Live again after the catch-up, and nothing repeated before it.
        fourth = await reply(system, agent, thread["id"], "four")
        event_4 = await stream.next()
    assert json.loads(event_4.data)["message_id"] == fourth["id"]
    ids = [int(e.id or 0) for e in (event_1, event_2, event_3, event_4)]
    assert ids == sorted(set(ids))

    # A page load resumes from its stored id with the query parameter: only what came after.
    async with open_stream(system, token, last_event_id=int(event_3.id or 0)) as stream:
        assert json.loads((await stream.next()).data)["text"] == "four"

    # "²" as latin-1, as the server decodes headers: a digit to str.isdigit, not an event id.
    for bad_id in (b"x", b"-1", "²".encode("latin-1"), str(2**63).encode()):
        bad = await system.ingest.get(
            "/webchat/stream", params={"token": token}, headers={b"Last-Event-ID": bad_id}
        )
        assert bad.status_code == 400, bad_id


async def test_identity_verification_and_refused_tokens(system: System) -> None:
    wrong = await system.ingest.post("/webchat/sessions", json={"user_id": "42", "user_hash": "0" * 64})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_identity")
    missing = await system.ingest.post("/webchat/sessions", json={"user_id": "42"})
    assert missing.status_code == 401
    other_user = await system.ingest.post(
        "/webchat/sessions", json={"user_id": "43", "user_hash": site_hash("42")}
    )
    assert other_user.status_code == 401
    claimed = await system.ingest.post("/webchat/sessions", json={"email": "ceo@example.com"})
    assert (claimed.status_code, claimed.json()["error"]["code"]) == (403, "email_requires_verified_user")
    orphan_hash = await system.ingest.post("/webchat/sessions", json={"user_hash": site_hash("42")})
    assert orphan_hash.status_code == 401

    session = await start_session(system, user_id="42", user_hash=site_hash("42"))
    claims = jwt.decode(session["token"], WEBCHAT_SECRET, algorithms=["HS256"], audience="webchat")
    now = int(datetime.now(UTC).timestamp())
    forged = jwt.encode(
        {**claims, "idn": "user:1"}, "not-the-secret-0123456789-0123456789", algorithm="HS256"
    )
    expired = jwt.encode({**claims, "iat": now - 120, "exp": now - 60}, WEBCHAT_SECRET, algorithm="HS256")
    for token, code in (
        (forged, "invalid_token"),
        (expired, "session_expired"),
        ("garbage", "invalid_token"),
    ):
        posted = await post_message(system, token, "c-1", "hi")
        assert (posted.status_code, posted.json()["error"]["code"]) == (401, code), token
        streamed = await system.ingest.get("/webchat/stream", params={"token": token})
        assert (streamed.status_code, streamed.json()["error"]["code"]) == (401, code)
        refreshed = await system.ingest.post("/webchat/sessions/refresh", headers=bearer(token))
        assert refreshed.status_code == 401
    assert (
        await system.ingest.post("/webchat/messages", json={"client_message_id": "c", "text": "x"})
    ).status_code == 401

    # A valid session refreshes into a later expiry, same session and identity.
    refreshed = await system.ingest.post("/webchat/sessions/refresh", headers=bearer(session["token"]))
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["session_id"] == session["session_id"]
    renewed = jwt.decode(refreshed.json()["token"], WEBCHAT_SECRET, algorithms=["HS256"], audience="webchat")
    assert renewed["idn"] == "user:42"
    assert renewed["exp"] >= claims["exp"]


async def test_invalid_messages_are_refused_with_json_errors(settings: Settings) -> None:
    invalid: list[dict[str, Any]] = [
        {"client_message_id": "c-1", "text": "nul \x00 inside"},
        {"client_message_id": "c-1", "text": "   "},
        {"client_message_id": "c-1", "text": "x" * 4097},
        {"client_message_id": "has space", "text": "hi"},
        {"client_message_id": "c-1"},
        {"client_message_id": "c-1", "text": "hi", "extra": 1},
    ]
    # No stream here: the in-process client is enough, and quicker.
    async with serve(ingest_app(webchat_settings(settings))) as ingest:
        token = (await ingest.post("/webchat/sessions", json={})).json()["token"]
        for body in invalid:
            response = await ingest.post("/webchat/messages", json=body, headers=bearer(token))
            assert response.status_code == 422, (body, response.text)
            assert response.json()["error"]["code"] == "validation_error"
        not_json = await ingest.post("/webchat/messages", content=b"{", headers=bearer(token))
        assert not_json.status_code == 422


async def test_cors_is_open_to_allowed_origins_on_webchat_only(settings: Settings) -> None:
    async with serve(ingest_app(webchat_settings(settings))) as ingest:
        preflight = await ingest.options(
            "/webchat/messages",
            headers={
                "Origin": SITE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == SITE
        refused = await ingest.post("/webchat/messages", json={}, headers={"Origin": SITE})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == SITE  # a page can read why
        stranger = await ingest.post("/webchat/sessions", json={}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
        api = await ingest.post("/v1/messages", json={}, headers={"Origin": SITE})
        assert "access-control-allow-origin" not in api.headers
        page = await ingest.get("/webchat/widget")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert f"frame-ancestors 'self' {SITE}" in policy
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.text
    assert "{{nonce}}" not in page.text


async def test_the_sender_stores_a_reply_once_and_another_replica_streams_it(settings: Settings) -> None:
    """Two hubs on two pools play two replicas: the reply stored through one wakes the other's stream by
    LISTEN/NOTIFY alone (its poll is far longer than the test waits)."""
    one, two = Database.from_settings(settings), Database.from_settings(settings)
    hub_one, hub_two = WebchatHub(one), WebchatHub(two, idle_poll_s=600)
    await hub_one.start()
    await hub_two.start()
    try:
        await eventually(lambda: _true(hub_one.listening and hub_two.listening), what="both hubs to listen")
        sender = WebchatSender(hub_one)
        until = datetime.now(UTC) + timedelta(minutes=5)
        other = OutboundMessage(uuid.uuid4(), Channel.WEBCHAT, "user:other", "not yours")
        assert (await sender.send(other)).result is SendResult.SENT

        events = hub_two.events("user:7", 0, until)
        assert (await anext(events)).retry is not None
        waiting = asyncio.ensure_future(anext(events))
        await eventually(lambda: _true(hub_two.streams == 1), what="the stream to subscribe")

        reply = OutboundMessage(uuid.uuid4(), Channel.WEBCHAT, "user:7", "hello there")
        outcome = await sender.send(reply)
        again = await sender.send(reply)  # the dispatcher's lease ran out mid-send: sent again
        assert outcome.result is again.result is SendResult.SENT
        assert outcome.external_id == again.external_id
        assert outcome.external_id is not None
        event = await asyncio.wait_for(waiting, 20)
        assert f"webchat:{event.id}" == outcome.external_id
        assert json.loads(str(event.data))["text"] == "hello there"
        await events.aclose()

        unsendable = await sender.send(OutboundMessage(uuid.uuid4(), Channel.WEBCHAT, "+14155550100", "x"))
        assert (unsendable.result, unsendable.error_code) == (SendResult.FAILED, "unsendable")
        async with one.unit_of_work() as session:
            rows = (
                await session.execute(sa.text("SELECT identity FROM ingest.webchat_outbox ORDER BY seq"))
            ).all()
        assert [r.identity for r in rows] == ["user:other", "user:7"]
    finally:
        await hub_two.stop()
        await hub_one.stop()
        await one.dispose()
        await two.dispose()


async def test_a_stream_ends_when_its_token_expires_and_when_the_hub_stops(settings: Settings) -> None:
    db = Database.from_settings(settings)
    hub = WebchatHub(db)
    await hub.start()
    try:
        expired = hub.events("user:1", 0, datetime.now(UTC) - timedelta(seconds=1))
        assert [e.retry for e in [event async for event in expired]] == [2000]
        live = hub.events("user:1", 0, datetime.now(UTC) + timedelta(hours=1))
        await anext(live)
        ended = asyncio.ensure_future(anext(live))
        await eventually(lambda: _true(hub.streams == 1), what="the stream to subscribe")
        await hub.stop()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(ended, 20)
    finally:
        with contextlib.suppress(Exception):
            await hub.stop()
        await db.dispose()


async def _true(value: bool) -> bool:
    return value
