"""Provider channels end to end, on the real broker and database, with providers played by local fakes
that check requests the way the providers do: a signed webhook becomes a customer's message in the thread
(once, however often the provider retries it); an agent's reply leaves through the provider's API; the
provider's status callbacks come back into the thread as delivery status, in any order."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_common import topics
from switchboard_common.events import EventEnvelope
from tests.conftest import Settings
from tests.fakes.providers import FakeProviders
from tests.fakes.signing import (
    messenger_text_payload,
    meta_signature,
    twilio_signature,
    twilio_sms_params,
    twilio_status_params,
    whatsapp_status_payload,
    whatsapp_text_payload,
)
from tests.integration.test_message_path import System, running
from tests.support import eventually, read_topic

WA_SECRET, WA_VERIFY, WA_TOKEN, WA_NUMBER_ID = (
    "wa-app-secret-1",
    "wa-verify-1",
    "wa-token-1",
    "106540352242922",
)
FB_SECRET, FB_VERIFY, FB_TOKEN, PAGE_ID = "fb-app-secret-1", "fb-verify-1", "fb-token-1", "1234567890"
TW_SID, TW_TOKEN, TW_FROM = "AC" + "0" * 32, "twilio-auth-token-1", "+15005550006"
PUBLIC = "https://hooks.example.com"
CUSTOMER_PHONE = "+14155550123"


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeProviders]:
    with FakeProviders(
        whatsapp_token=WA_TOKEN,
        whatsapp_phone_number_id=WA_NUMBER_ID,
        messenger_token=FB_TOKEN,
        twilio_account_sid=TW_SID,
        twilio_auth_token=TW_TOKEN,
    ) as providers:
        yield providers


def channel_settings(settings: Settings, fakes: FakeProviders, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "public_base_url": PUBLIC,
        "graph_api_base": f"{fakes.base_url}/v21.0",
        "whatsapp_app_secret": WA_SECRET,
        "whatsapp_verify_token": WA_VERIFY,
        "whatsapp_access_token": WA_TOKEN,
        "whatsapp_phone_number_id": WA_NUMBER_ID,
        "messenger_app_secret": FB_SECRET,
        "messenger_verify_token": FB_VERIFY,
        "messenger_page_access_token": FB_TOKEN,
        "twilio_api_base": fakes.base_url,
        "twilio_account_sid": TW_SID,
        "twilio_auth_token": TW_TOKEN,
        "twilio_from_number": TW_FROM,
        "dispatch_backoff_initial_ms": 50,
        "dispatch_backoff_max_ms": 200,
        "dispatch_poll_interval_ms": 50,
        "dispatch_fetch_max_wait_ms": 20,
        **overrides,
    }
    return Settings.model_validate({**settings.model_dump(), **values})


@pytest.fixture
async def system(settings: Settings, fakes: FakeProviders) -> AsyncIterator[System]:
    fakes.reset()
    async with running(channel_settings(settings, fakes)) as system:
        yield system


def signed_meta(payload: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(secret, body)}


async def post_whatsapp(system: System, payload: dict[str, Any]) -> httpx.Response:
    body, headers = signed_meta(payload, WA_SECRET)
    return await system.ingest.post("/webhooks/whatsapp", content=body, headers=headers)


async def post_twilio(system: System, path: str, params: dict[str, str]) -> httpx.Response:
    signature = twilio_signature(TW_TOKEN, PUBLIC + path, params)
    return await system.ingest.post(
        path,
        content=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )


async def assigned_thread(system: System, agent: dict[str, Any]) -> dict[str, Any]:
    [conversation] = await eventually(lambda: system.conversations_of(agent), what="assignment")
    response = await system.conversation.get(f"/v1/conversations/{conversation['id']}", headers=agent["auth"])
    thread: dict[str, Any] = response.json()
    return thread


async def reply(system: System, agent: dict[str, Any], cid: str, text: str) -> dict[str, Any]:
    response = await system.conversation.post(
        f"/v1/conversations/{cid}/replies",
        json={"text": text, "idempotency_key": uuid.uuid4().hex},
        headers=agent["auth"],
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def delivery_of(system: System, agent: dict[str, Any], cid: str, message_id: str, status: str) -> bool:
    response = await system.conversation.get(f"/v1/conversations/{cid}", headers=agent["auth"])
    [message] = [m for m in response.json()["messages"] if m["id"] == message_id]
    return bool(message["delivery_status"] == status)


async def test_whatsapp_round_trip(system: System, fakes: FakeProviders, settings: Settings) -> None:
    agent = await system.agent("ada@example.com", [])
    now = int(time.time())
    inbound = whatsapp_text_payload(WA_NUMBER_ID, CUSTOMER_PHONE[1:], "Grace", "wamid.IN1", "My order?", now)
    first = await post_whatsapp(system, inbound)
    assert first.status_code == 200, first.text
    assert (await post_whatsapp(system, inbound)).status_code == 200  # Meta's retry of the same POST

    thread = await assigned_thread(system, agent)
    assert [(m["channel"], m["direction"], m["body"]) for m in thread["messages"]] == [
        ("whatsapp", "inbound", "My order?")
    ]
    assert thread["customer"]["display_name"] == "Grace"
    assert {"kind": "phone", "value": CUSTOMER_PHONE} in thread["customer"]["identities"]

    sent = await reply(system, agent, thread["id"], "On its way!")
    [request] = await fakes.wait_for("whatsapp", 1)
    assert request.headers["authorization"] == f"Bearer {WA_TOKEN}"
    assert request.json["to"].lstrip("+") == CUSTOMER_PHONE[1:]
    assert request.json["text"]["body"] == "On its way!"
    await eventually(lambda: delivery_of(system, agent, thread["id"], sent["id"], "sent"), what="sent")

    # The provider's callbacks, out of order and repeated: read before delivered never moves back.
    wamid = request.provider_id
    assert wamid is not None
    for status in ("read", "delivered", "read"):
        callback = whatsapp_status_payload(WA_NUMBER_ID, wamid, status, CUSTOMER_PHONE[1:], now + 5)
        assert (await post_whatsapp(system, callback)).status_code == 200
    await eventually(lambda: delivery_of(system, agent, thread["id"], sent["id"], "read"), what="read")
    statuses = await read_topic(settings, topics.DELIVERY_EVENTS, 3)
    # One event per (message, status): the sent report, delivered and read; the repeated read is one.
    assert sorted(EventEnvelope.from_bytes(r.value).payload["status"] for r in statuses) == [
        "delivered",
        "read",
        "sent",
    ]


async def test_whatsapp_rejects_bad_signatures_and_answers_the_handshake(
    system: System, settings: Settings
) -> None:
    payload = whatsapp_text_payload(WA_NUMBER_ID, "14155550124", "Eve", "wamid.X", "hi", int(time.time()))
    body, headers = signed_meta(payload, "not-the-secret")
    assert (await system.ingest.post("/webhooks/whatsapp", content=body, headers=headers)).status_code == 401
    body, headers = signed_meta(payload, WA_SECRET)
    tampered = body.replace(b'"hi"', b'"ho"')
    response = await system.ingest.post("/webhooks/whatsapp", content=tampered, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    garbage, headers = b"{not json", {"X-Hub-Signature-256": meta_signature(WA_SECRET, b"{not json")}
    response = await system.ingest.post("/webhooks/whatsapp", content=garbage, headers=headers)
    assert response.status_code == 400, response.text

    query = {"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY, "hub.challenge": "1158201444"}
    answer = await system.ingest.get("/webhooks/whatsapp", params=query)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    wrong = await system.ingest.get("/webhooks/whatsapp", params={**query, "hub.verify_token": "guess"})
    assert wrong.status_code == 403
    # Nothing of the refused requests was stored.
    assert await read_topic(settings, topics.MESSAGES_INBOUND, 1, timeout=1) == []


async def test_twilio_sms_round_trip(system: System, fakes: FakeProviders) -> None:
    agent = await system.agent("ada@example.com", [])
    params = twilio_sms_params(TW_SID, "SM" + "a" * 32, CUSTOMER_PHONE, TW_FROM, "Hello by SMS")
    response = await post_twilio(system, "/webhooks/twilio/sms", params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    forged = await system.ingest.post(
        "/webhooks/twilio/sms",
        content=urlencode({**params, "Body": "forged"}),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(TW_TOKEN, PUBLIC + "/webhooks/twilio/sms", params),
        },
    )
    assert forged.status_code == 401

    thread = await assigned_thread(system, agent)
    assert [(m["channel"], m["body"]) for m in thread["messages"]] == [("sms", "Hello by SMS")]
    sent = await reply(system, agent, thread["id"], "Hi back")
    [request] = await fakes.wait_for("twilio", 1)
    assert request.form is not None
    assert (request.form["To"], request.form["From"], request.form["Body"]) == (
        CUSTOMER_PHONE,
        TW_FROM,
        "Hi back",
    )
    assert request.form["StatusCallback"] == PUBLIC + "/webhooks/twilio/sms/status"
    assert request.provider_id is not None

    callback = twilio_status_params(TW_SID, request.provider_id, "delivered")
    assert (await post_twilio(system, "/webhooks/twilio/sms/status", callback)).status_code == 204
    await eventually(
        lambda: delivery_of(system, agent, thread["id"], sent["id"], "delivered"), what="delivered"
    )


async def test_messenger_round_trip_and_echoes(system: System, fakes: FakeProviders) -> None:
    agent = await system.agent("ada@example.com", [])
    now_ms = int(time.time() * 1000)
    payload = messenger_text_payload(PAGE_ID, "psid-42", "m_in_1", "Hi page", now_ms)
    echo = messenger_text_payload(PAGE_ID, PAGE_ID, "m_echo_1", "our own reply", now_ms)
    echo["entry"][0]["messaging"][0]["message"]["is_echo"] = True
    for each in (payload, echo):
        body, headers = signed_meta(each, FB_SECRET)
        response = await system.ingest.post("/webhooks/messenger", content=body, headers=headers)
        assert response.status_code == 200, response.text

    thread = await assigned_thread(system, agent)
    assert [(m["channel"], m["body"]) for m in thread["messages"]] == [("messenger", "Hi page")]  # no echo
    sent = await reply(system, agent, thread["id"], "Hello from the page")
    [request] = await fakes.wait_for("messenger", 1)
    assert request.json["recipient"] == {"id": "psid-42"}
    assert request.json["message"] == {"text": "Hello from the page"}
    await eventually(lambda: delivery_of(system, agent, thread["id"], sent["id"], "sent"), what="sent")


async def whatsapp_conversation(system: System, agent: dict[str, Any], wamid: str, phone: str) -> str:
    payload = whatsapp_text_payload(WA_NUMBER_ID, phone[1:], "Customer", wamid, "help", int(time.time()))
    assert (await post_whatsapp(system, payload)).status_code == 200
    thread = await assigned_thread(system, agent)
    return str(thread["id"])


async def test_a_throttled_reply_is_retried_and_a_refused_one_fails(
    system: System, fakes: FakeProviders
) -> None:
    agent = await system.agent("ada@example.com", [], capacity=5)
    cid = await whatsapp_conversation(system, agent, "wamid.R1", CUSTOMER_PHONE)
    fakes.fail_next("whatsapp", 429, times=2, retry_after="0")
    retried = await reply(system, agent, cid, "after two 429s")
    await eventually(
        lambda: delivery_of(system, agent, cid, retried["id"], "sent"), what="sent after retries"
    )
    attempts = [
        r for r in fakes.requests("whatsapp") if r.json and r.json["text"]["body"] == "after two 429s"
    ]
    assert [r.status for r in attempts] == [429, 429, 200]

    fakes.fail_next("whatsapp", 400)  # Graph's 131026 "Message undeliverable": final
    refused = await reply(system, agent, cid, "undeliverable")
    await eventually(lambda: delivery_of(system, agent, cid, refused["id"], "failed"), what="failed")
    thread = (await system.conversation.get(f"/v1/conversations/{cid}", headers=agent["auth"])).json()
    [failed] = [m for m in thread["messages"] if m["id"] == refused["id"]]
    assert "131026" in failed["delivery_error"]
    assert (
        len([r for r in fakes.requests("whatsapp") if r.json and r.json["text"]["body"] == "undeliverable"])
        == 1
    )


async def test_a_reply_out_of_attempts_is_dead_lettered(settings: Settings, fakes: FakeProviders) -> None:
    fakes.reset()
    async with running(channel_settings(settings, fakes, dispatch_max_attempts=2)) as system:
        agent = await system.agent("ada@example.com", [])
        cid = await whatsapp_conversation(system, agent, "wamid.D1", CUSTOMER_PHONE)
        fakes.fail_next("whatsapp", 503, times=5)
        dead = await reply(system, agent, cid, "never arrives")
        await eventually(lambda: delivery_of(system, agent, cid, dead["id"], "failed"), what="given up")
        thread = (await system.conversation.get(f"/v1/conversations/{cid}", headers=agent["auth"])).json()
        [failed] = [m for m in thread["messages"] if m["id"] == dead["id"]]
        assert failed["delivery_error"].startswith("gave up after 2 attempts")
        [record] = await read_topic(settings, topics.dlq(topics.MESSAGES_OUTBOUND), 1)
        assert EventEnvelope.from_bytes(record.value).payload["message_id"] == dead["id"]


async def test_a_stalled_provider_does_not_hold_up_other_channels(
    system: System, fakes: FakeProviders, settings: Settings
) -> None:
    agent = await system.agent("ada@example.com", [], capacity=5)
    sms = twilio_sms_params(TW_SID, "SM" + "b" * 32, "+14155550999", TW_FROM, "by sms")
    assert (await post_twilio(system, "/webhooks/twilio/sms", sms)).status_code == 200
    [sms_conversation] = await eventually(lambda: system.conversations_of(agent), what="sms assignment")
    fakes.delay_next("twilio", 30)  # Twilio hangs on the next send (until the dispatcher's 10 s timeout)
    await reply(system, agent, sms_conversation["id"], "stuck at twilio")
    await eventually(lambda: _claimed(settings, "sms"), what="the twilio send to start")

    wa = whatsapp_text_payload(WA_NUMBER_ID, "14155550998", "W", "wamid.S1", "by whatsapp", int(time.time()))
    assert (await post_whatsapp(system, wa)).status_code == 200
    conversations = await eventually(
        lambda: _at_least(system.conversations_of(agent), 2), what="whatsapp assignment"
    )
    [wa_conversation] = [c for c in conversations if c["id"] != sms_conversation["id"]]
    await reply(system, agent, wa_conversation["id"], "not stuck")
    await fakes.wait_for("whatsapp", 1)
    # The WhatsApp reply went out while the Twilio send was still hanging, on its first attempt.
    assert not fakes.sent("twilio")
    assert await _claimed(settings, "sms")


async def _claimed(settings: Settings, channel: str) -> bool:
    """The channel's one reply is being sent: claimed once, and neither sent nor given up."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT state, attempts FROM ingest.outbound_deliveries WHERE channel = :channel"),
                {"channel": channel},
            )
            return [tuple(r) for r in rows] == [("pending", 1)]
    finally:
        await engine.dispose()


async def _at_least(pending: Any, count: int) -> list[dict[str, Any]] | None:
    items: list[dict[str, Any]] = await pending
    return items if len(items) >= count else None


async def test_unconfigured_channels_are_not_served(settings: Settings) -> None:
    async with running(settings) as system:
        response = await system.ingest.post("/webhooks/whatsapp", content=b"{}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "channel_not_configured"
        assert (await system.ingest.post("/webhooks/twilio/sms", content=b"")).status_code == 404
