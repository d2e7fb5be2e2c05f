"""The generic API channel: acknowledged only after the broker has the event, idempotent, and every bad
request is a clear 4xx JSON error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from switchboard_common import topics
from switchboard_common.events import EventEnvelope, MessageReceived
from switchboard_common.settings import Settings
from switchboard_ingest.app import create_app
from tests.conftest import INGEST_KEY
from tests.support import api_message, bearer, read_topic, serve

AUTH = bearer(INGEST_KEY)


async def test_accepted_message_is_on_the_topic_keyed_by_sender(settings: Settings) -> None:
    async with serve(create_app(settings)) as client:
        body = api_message("m-1", "cust-1", skills=["billing"])
        body["customer"]["phone"] = "+1 (415) 555-0100"
        response = await client.post("/v1/messages", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.headers["x-correlation-id"]
    [record] = await read_topic(settings, topics.MESSAGES_INBOUND, 1)
    assert record.key == b"api:cust-1"
    envelope = EventEnvelope.from_bytes(record.value)
    event = envelope.parse()
    assert isinstance(event, MessageReceived)
    assert str(event.message_id) == response.json()["message_id"]
    assert event.external_id == "m-1" and event.required_skills == ["billing"]
    assert [(i.kind, i.value) for i in event.identities] == [("phone", "+14155550100")]
    assert envelope.correlation_id == response.headers["x-correlation-id"]


async def test_retry_returns_the_first_answer_and_publishes_once(settings: Settings) -> None:
    async with serve(create_app(settings)) as client:
        first = await client.post("/v1/messages", json=api_message("m-2", "cust-2"), headers=AUTH)
        again = await client.post("/v1/messages", json=api_message("m-2", "cust-2"), headers=AUTH)
        other = await client.post("/v1/messages", json=api_message("m-3", "cust-2"), headers=AUTH)
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["status"] == "duplicate"
    assert again.json()["message_id"] == first.json()["message_id"]
    records = await read_topic(settings, topics.MESSAGES_INBOUND, 3, timeout=3)
    assert len(records) == 2


async def test_same_id_with_other_content_is_a_conflict(settings: Settings) -> None:
    async with serve(create_app(settings)) as client:
        await client.post("/v1/messages", json=api_message("m-4", "cust-4"), headers=AUTH)
        response = await client.post(
            "/v1/messages", json=api_message("m-4", "cust-4", text="something else"), headers=AUTH
        )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "id_reused"


@pytest.mark.parametrize(
    ("headers", "content", "status", "code"),
    [
        ({}, json.dumps(api_message("x", "c")), 401, "unauthorized"),
        (bearer("wrong-key"), json.dumps(api_message("x", "c")), 401, "unauthorized"),
        (AUTH, "{not json", 422, "validation_error"),
        (AUTH, json.dumps({"message_id": "x"}), 422, "validation_error"),
        (AUTH, json.dumps(api_message("x", "c", text="")), 422, "validation_error"),
        (AUTH, json.dumps(api_message("x", "c", unexpected=1)), 422, "validation_error"),
        (AUTH, json.dumps(api_message("x", "c", skills=["Not A Skill"])), 422, "validation_error"),
        (AUTH, json.dumps(api_message("x", "c", text="a" * 70_000)), 413, "payload_too_large"),
        (AUTH, "[]", 422, "validation_error"),
    ],
    ids=[
        "no-key",
        "wrong-key",
        "malformed",
        "missing-fields",
        "empty-text",
        "unknown-field",
        "bad-skill",
        "oversized",
        "not-an-object",
    ],
)
async def test_bad_requests_get_a_clear_4xx(
    settings: Settings, headers: dict[str, str], content: str, status: int, code: str
) -> None:
    async with serve(create_app(settings)) as client:
        response = await client.post(
            "/v1/messages", content=content, headers={**headers, "content-type": "application/json"}
        )
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        # Nothing bad was published, and the service still accepts good messages afterwards.
        ok = await client.post("/v1/messages", json=api_message("after", "c"), headers=AUTH)
        assert ok.status_code == 202
    records = await read_topic(settings, topics.MESSAGES_INBOUND, 2, timeout=2)
    assert [EventEnvelope.from_bytes(r.value).payload["external_id"] for r in records] == ["after"]


async def test_oversized_chunked_body_is_refused(settings: Settings) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    async with serve(create_app(settings)) as client:
        response = await client.post("/v1/messages", content=chunks(), headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_health_and_metrics(settings: Settings) -> None:
    async with serve(create_app(settings)) as client:
        assert (await client.get("/health/live")).json() == {"status": "ok"}
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"]["ok"] and ready.json()["checks"]["broker"]["ok"]
        await client.post("/v1/messages", json=api_message("m", "c"), headers=AUTH)
        metrics = (await client.get("/metrics")).text
    assert 'switchboard_http_requests_total{method="POST",route="/v1/messages",status="202"}' in metrics


async def test_unavailable_broker_is_a_503_not_an_acknowledgement(settings: Settings) -> None:
    app = create_app(settings)
    async with serve(app) as client:
        await app.state.runtime.publisher.stop()  # the broker is now unreachable for this app
        response = await client.post("/v1/messages", json=api_message("m-5", "cust-5"), headers=AUTH)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
