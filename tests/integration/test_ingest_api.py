"""The generic API channel: acknowledged once the message is durable (its receipt and its event committed
in ingest's outbox), published by the relay, idempotent under concurrency, and every bad request is a
clear 4xx JSON error."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_common import topics
from switchboard_common.events import EventEnvelope, MessageReceived
from switchboard_devstack.ports import free_port
from switchboard_ingest.app import create_app
from switchboard_ingest.messages import service
from tests.conftest import INGEST_KEY, Settings
from tests.support import api_message, bearer, eventually, read_topic, serve

AUTH = bearer(INGEST_KEY)


async def _outbox_rows(settings: Settings) -> list[Any]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(sa.text("SELECT topic, key, value FROM ingest.outbox ORDER BY id"))
            return list(result.all())
    finally:
        await engine.dispose()


def _external_ids(records: list[Any]) -> list[str]:
    return [EventEnvelope.from_bytes(r.value).payload["external_id"] for r in records]


async def test_accepted_message_is_on_the_topic_keyed_by_sender(settings: Settings) -> None:
    async with serve(create_app(settings)) as client:
        body = api_message("m-1", "cust-1", skills=["billing"])
        body["customer"]["phone"] = "+1 (415) 555-0100"
        body["customer"]["attributes"] = {"plan": "enterprise"}
        response = await client.post("/v1/messages", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "accepted"
        assert response.headers["x-correlation-id"]
        [record] = await read_topic(settings, topics.MESSAGES_INBOUND, 1)
    assert record.key == b"api:cust-1"
    envelope = EventEnvelope.from_bytes(record.value)
    event = envelope.parse()
    assert isinstance(event, MessageReceived)
    assert str(event.message_id) == response.json()["message_id"]
    assert event.external_id == "m-1" and event.required_skills == ["billing"]
    assert [(i.kind, i.value) for i in event.identities] == [("phone", "+14155550100")]
    assert event.customer_attributes == {"plan": "enterprise"}
    assert envelope.correlation_id == response.headers["x-correlation-id"]
    assert dict(record.headers)["correlation_id"] == response.headers["x-correlation-id"].encode()


async def test_retry_returns_the_first_answer_and_publishes_once(settings: Settings) -> None:
    async with serve(create_app(settings)) as client:
        first = await client.post("/v1/messages", json=api_message("m-2", "cust-2"), headers=AUTH)
        again = await client.post("/v1/messages", json=api_message("m-2", "cust-2"), headers=AUTH)
        other = await client.post("/v1/messages", json=api_message("m-3", "cust-2"), headers=AUTH)
        records = await read_topic(settings, topics.MESSAGES_INBOUND, 3, timeout=3)
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["status"] == "duplicate"
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.json()["received_at"] == first.json()["received_at"]
    # One sender's messages leave in the order they were accepted.
    assert _external_ids(records) == ["m-2", "m-3"]
    # The event's id is the message's: were it ever published again, consumers would see the same event.
    envelope = EventEnvelope.from_bytes(records[0].value)
    assert envelope.event_id == service.event_id_for(uuid.UUID(first.json()["message_id"]))


async def test_a_resend_differing_only_in_form_is_a_duplicate(settings: Settings) -> None:
    """Idempotency compares the normalized message, not the request's bytes."""
    first = api_message(
        "m-form",
        "cust-form",
        skills=["billing"],
        sent_at="2026-11-23T10:30:00+02:00",
    )
    first["customer"]["email"] = "Ann@Example.COM"
    resend = {
        "text": first["text"],
        "sent_at": "2026-11-23T08:30:00Z",  # the same instant
        "skills": ["billing", "billing"],
        "customer": {"email": "ann@example.com", "id": "cust-form"},
        "message_id": "m-form",
    }
    async with serve(create_app(settings)) as client:
        accepted = await client.post("/v1/messages", json=first, headers=AUTH)
        again = await client.post("/v1/messages", json=resend, headers=AUTH)
        changed = await client.post("/v1/messages", json={**resend, "skills": ["sales"]}, headers=AUTH)
    assert (accepted.status_code, again.status_code, changed.status_code) == (202, 200, 409), again.text
    assert again.json()["message_id"] == accepted.json()["message_id"]


async def test_same_id_with_other_content_is_a_conflict(settings: Settings) -> None:
    async with serve(create_app(settings)) as client:
        await client.post("/v1/messages", json=api_message("m-4", "cust-4"), headers=AUTH)
        response = await client.post(
            "/v1/messages", json=api_message("m-4", "cust-4", text="something else"), headers=AUTH
        )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "id_reused"


@pytest.mark.parametrize("max_batch", [500, 4], ids=["one-group", "concurrent-groups"])
async def test_concurrent_requests_and_duplicates_in_flight_accept_each_id_once(
    settings: Settings, max_batch: int
) -> None:
    """Every id three times, and every other group of ids once more with other content, all in flight at
    once. In one group they are resolved against each other; with small batches the copies of one id land
    in transactions that run at the same time (the second ones with the keys in reverse order)."""
    ids = [f"c-{i}" for i in range(40)]
    bodies: list[dict[str, Any]] = []
    for g in range(0, len(ids), 4):
        group = ids[g : g + 4]
        bodies += [api_message(i, f"cust-{g % 7}") for i in group]
        bodies += [api_message(i, f"cust-{g % 7}") for i in reversed(group)]
        if g % 8 == 0:
            bodies += [api_message(i, f"cust-{g % 7}", text="other content") for i in group]
        bodies += [api_message(i, f"cust-{g % 7}") for i in group]
    app = create_app(settings.model_copy(update={"ingest_commit_max_batch": max_batch}))
    transactions_before = REGISTRY.get_sample_value("switchboard_ingest_commit_batch_requests_count") or 0.0

    async with serve(app) as client:
        pool = app.state.runtime.db.engine.sync_engine.pool
        closed: list[object] = []
        sa.event.listen(pool, "close", lambda *_: closed.append(1))

        async def post(body: dict[str, Any]) -> httpx.Response:
            return await client.post("/v1/messages", json=body, headers=AUTH)

        responses = await asyncio.gather(*(post(b) for b in bodies))
        records = await read_topic(settings, topics.MESSAGES_INBOUND, len(ids) + 1, timeout=3)
        # The pool is sized to the work in flight: no connection was opened beyond it or closed under load.
        assert pool.size() == settings.ingest_pool_size and pool.overflow() <= 0 and not closed

    transactions = REGISTRY.get_sample_value("switchboard_ingest_commit_batch_requests_count")
    assert transactions is not None
    by_id: dict[str, list[tuple[dict[str, Any], httpx.Response]]] = {}
    for body, response in zip(bodies, responses, strict=True):
        by_id.setdefault(body["message_id"], []).append((body, response))
    assert sorted(by_id) == sorted(ids)
    for message_id, answers in by_id.items():
        statuses = Counter(r.status_code for _, r in answers)
        assert statuses[202] == 1, (message_id, statuses)
        assert set(statuses) <= {200, 202, 409}, (message_id, statuses)
        [(winner, accepted)] = [(b, r) for b, r in answers if r.status_code == 202]
        for body, response in answers:
            if response.status_code == 409:
                assert body["text"] != winner["text"]
                assert response.json()["error"]["code"] == "id_reused"
            else:
                assert body["text"] == winner["text"]
                assert response.json()["message_id"] == accepted.json()["message_id"]
                assert response.json()["received_at"] == accepted.json()["received_at"]
    assert sorted(_external_ids(records)) == sorted(ids)
    # Group commit: the requests were recorded in fewer transactions than there were requests.
    assert transactions - transactions_before < len(bodies)


async def test_broker_outage_still_acknowledges_and_delivers_later(settings: Settings) -> None:
    app = create_app(settings)
    async with serve(app) as client:
        await app.state.runtime.publisher.stop()  # the broker is now unreachable for this app
        response = await client.post("/v1/messages", json=api_message("m-5", "cust-5"), headers=AUTH)
        assert response.status_code == 202, response.text
        # Acknowledged because it is committed: the event waits in ingest's outbox.
        [row] = await _outbox_rows(settings)
        assert row.topic == settings.topic(topics.MESSAGES_INBOUND) and row.key == "api:cust-5"
        assert await read_topic(settings, topics.MESSAGES_INBOUND, 1, timeout=1) == []
    # The broker is reachable again (the service restarted, or another replica): the relay delivers it.
    async with serve(create_app(settings)) as client:
        [record] = await read_topic(settings, topics.MESSAGES_INBOUND, 1)
        event = EventEnvelope.from_bytes(record.value).parse()
        assert isinstance(event, MessageReceived) and str(event.message_id) == response.json()["message_id"]

        async def outbox_empty() -> bool:
            return not await _outbox_rows(settings)

        await eventually(outbox_empty, what="the relay to delete the published row")
        again = await client.post("/v1/messages", json=api_message("m-5", "cust-5"), headers=AUTH)
    assert again.status_code == 200


async def test_unavailable_database_is_a_503_with_retry_after(settings: Settings) -> None:
    closed = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/switchboard"
    async with serve(create_app(settings.model_copy(update={"database_url": closed}))) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/messages", json=api_message(f"m-{i}", "c"), headers=AUTH) for i in range(3))
        )
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
        assert response.headers["retry-after"]
    # Nothing was acknowledged, so nothing was recorded: the retry is a first attempt.
    async with serve(create_app(settings)) as client:
        retry = await client.post("/v1/messages", json=api_message("m-0", "c"), headers=AUTH)
    assert retry.status_code == 202


async def test_a_database_that_does_not_answer_is_a_503_within_the_accept_bound(settings: Settings) -> None:
    """A database that accepts connections but never answers (a hung server, a dropped network) must not
    hold the provider's request until it gives up: the request answers 503 after the configured bound,
    long before the driver's own connect timeout (60 s)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client goes
        writer.close()

    blackhole = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = blackhole.sockets[0].getsockname()[1]
    hung = settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{port}/switchboard",
            "ingest_accept_timeout_ms": 300,
            "db_connect_timeout_ms": 1000,
        }
    )
    try:
        async with serve(create_app(hung)) as client:
            client.timeout = httpx.Timeout(30)
            response = await client.post("/v1/messages", json=api_message("m-hung", "c"), headers=AUTH)
    finally:
        blackhole.close()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable"
    assert response.headers["retry-after"]
    assert "same message_id" in response.json()["error"]["message"]


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
        # PostgreSQL cannot store NUL in text: refused here, not acknowledged and lost (or a 500) later.
        (AUTH, json.dumps(api_message("x", "c\u0000d")), 422, "validation_error"),
        (AUTH, json.dumps(api_message("x", "c", text="nul \u0000 inside")), 422, "validation_error"),
        (
            AUTH,
            json.dumps({**api_message("x", "c"), "customer": {"id": "c", "name": "A\u0000"}}),
            422,
            "validation_error",
        ),
        # A phone links customers: one that is no number at all must not join strangers into one thread.
        (
            AUTH,
            json.dumps({**api_message("x", "c"), "customer": {"id": "c", "phone": "((((("}}),
            422,
            "validation_error",
        ),
        (
            AUTH,
            json.dumps({**api_message("x", "c"), "customer": {"id": "c", "phone": "020 7946 0958"}}),
            422,
            "validation_error",
        ),
        (
            AUTH,
            json.dumps(api_message("x", "c", sent_at="0001-01-01T00:00:00+14:00")),
            422,
            "validation_error",
        ),
        (AUTH, json.dumps(api_message("x", "c", sent_at=1700000000)), 422, "validation_error"),
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
        "nul-in-customer-id",
        "nul-in-text",
        "nul-in-name",
        "phone-without-digits",
        "national-phone",
        "sent-at-before-year-1-in-utc",
        "sent-at-as-a-number",
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
    assert _external_ids(records) == ["after"]


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
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["database"]["ok"] and checks["broker"]["ok"] and checks["outbox_relay"]["ok"]
        await client.post("/v1/messages", json=api_message("m", "c"), headers=AUTH)
        metrics = (await client.get("/metrics")).text
    assert 'switchboard_http_requests_total{method="POST",route="/v1/messages",status="202"}' in metrics
    assert "switchboard_ingest_commit_batch_requests_count" in metrics
