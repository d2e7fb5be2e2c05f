"""The voice greeting states the router's estimate of the voice queue's wait: with the real router on a
real port (ingest asks it over HTTP with its service key), and with a local server playing a router that
hangs, refuses or answers nonsense, or no router at all, when the greeting goes without a figure and the
call is still answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from switchboard_devstack.ports import free_port
from switchboard_ingest.app import create_app as ingest_app
from switchboard_router.app import create_app as router_app
from tests.conftest import ADMIN_KEY, Settings
from tests.fakes.signing import twilio_signature
from tests.integration.test_webchat import serve_on_port
from tests.support import bearer, serve

TW_SID, TW_TOKEN, TW_FROM = "AC" + "0" * 32, "twilio-auth-token-1", "+15005550006"
PUBLIC = "https://hooks.example.com"
SERVICE_KEY = "ingest-service-key-0123456789"
NO_FIGURE = "We will get back to you as soon as we can."


def voice_settings(settings: Settings, router_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "public_base_url": PUBLIC,
        "twilio_account_sid": TW_SID,
        "twilio_auth_token": TW_TOKEN,
        "twilio_from_number": TW_FROM,
        "router_url": router_url,
        "router_service_key": SERVICE_KEY,
        "router_service_keys": [SecretStr(SERVICE_KEY)],
        "voice_queue": "voice",
        **overrides,
    }
    return Settings.model_validate({**settings.model_dump(), **values})


async def call(ingest: httpx.AsyncClient) -> str:
    """A signed inbound call; returns what the greeting says."""
    params = {
        "CallSid": "CA" + "2" * 32,
        "AccountSid": TW_SID,
        "From": "+14155550123",
        "To": TW_FROM,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    path = "/webhooks/twilio/voice"
    response = await ingest.post(
        path,
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(TW_TOKEN, PUBLIC + path, params),
        },
    )
    assert response.status_code == 200, response.text
    twiml = ElementTree.fromstring(response.text)  # noqa: S314 - our own answer, in a test
    assert twiml.find("Record") is not None  # the voicemail follows the greeting either way
    greeting = twiml.find("Say")
    assert greeting is not None and greeting.text is not None
    return greeting.text


async def test_the_greeting_states_the_routers_estimate(settings: Settings) -> None:
    """An online agent with a free slot and nobody waiting in the voice queue: no wait, said as the
    shortest figure the greeting gives. With nobody online the router has no estimate: no figure."""
    configured = voice_settings(settings, "", voice_wait_timeout_ms=5000)
    async with serve_on_port(router_app(configured)) as router_url:
        configured = configured.model_copy(update={"router_url": router_url})
        async with httpx.AsyncClient(base_url=router_url) as router, serve(ingest_app(configured)) as ingest:
            assert NO_FIGURE in await call(ingest)

            admin = bearer(ADMIN_KEY)
            created = await router.post(
                "/v1/agents",
                json={"name": "Ada", "email": "ada@example.com", "skills": [], "capacity": 1},
                headers=admin,
            )
            assert created.status_code == 201, created.text
            online = await router.put(
                f"/v1/agents/{created.json()['id']}/status", json={"status": "online"}, headers=admin
            )
            assert online.status_code == 200, online.text

            assert "Our expected wait is about 1 minute." in await call(ingest)


class FakeRouter:
    """Plays the router's estimate endpoint, recording each request; ``behaviour`` picks the answer."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.requests: list[tuple[str, str | None]] = []
        self.release = asyncio.Event()  # ends a hanging answer, so the server can stop
        self.app = FastAPI(routes=[Route("/v1/queues/{name}/estimate", self._estimate)])

    async def _estimate(self, request: Request) -> Response:
        self.requests.append((request.url.path, request.headers.get("authorization")))
        if request.headers.get("authorization") != f"Bearer {SERVICE_KEY}":
            return JSONResponse({"error": {"code": "unauthorized"}}, status_code=401)
        if self.behaviour == "hang":
            await self.release.wait()
        if self.behaviour == "refuse":
            return JSONResponse({"error": {"code": "unavailable"}}, status_code=503)
        if self.behaviour == "nonsense":
            return PlainTextResponse("<html>proxy error</html>")
        if self.behaviour == "negative":
            return JSONResponse({"estimated_wait_seconds": -5})
        return JSONResponse({"queue": "voice", "estimated_wait_seconds": 1800})


@asynccontextmanager
async def fake_router(behaviour: str) -> AsyncIterator[tuple[FakeRouter, str]]:
    fake = FakeRouter(behaviour)
    async with serve_on_port(fake.app) as url:
        try:
            yield fake, url
        finally:
            fake.release.set()


async def test_the_greeting_asks_with_the_service_key_for_the_configured_queue(settings: Settings) -> None:
    async with (
        fake_router("answer") as (fake, url),
        serve(ingest_app(voice_settings(settings, url, voice_wait_timeout_ms=5000))) as ingest,
    ):
        assert "Our expected wait is about 30 minutes." in await call(ingest)
    assert fake.requests == [("/v1/queues/voice/estimate", f"Bearer {SERVICE_KEY}")]


@pytest.mark.parametrize("behaviour", ["hang", "refuse", "nonsense", "negative"])
async def test_a_router_that_does_not_answer_well_leaves_the_greeting_without_a_figure(
    settings: Settings, behaviour: str
) -> None:
    async with (
        fake_router(behaviour) as (fake, url),
        serve(ingest_app(voice_settings(settings, url, voice_wait_timeout_ms=200))) as ingest,
    ):
        assert NO_FIGURE in await call(ingest)
    assert len(fake.requests) == 1


async def test_no_router_listening_leaves_the_greeting_without_a_figure(settings: Settings) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with serve(ingest_app(voice_settings(settings, nowhere, voice_wait_timeout_ms=2000))) as ingest:
        assert NO_FIGURE in await call(ingest)
