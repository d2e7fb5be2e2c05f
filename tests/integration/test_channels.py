"""Provider channels end to end, on the real broker and database, with providers played by local fakes
that check requests the way the providers do: a signed webhook becomes a customer's message in the thread
(once, however often the provider retries it); an agent's reply leaves through the provider's API; the
provider's status callbacks come back into the thread as delivery status, in any order."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard_common import topics
from switchboard_common.events import EventEnvelope
from switchboard_devstack.ports import free_port
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
from tests.fakes.smtp import Running, mail_server
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

    # Messenger's delivery receipt names the page's message ids it covers.
    delivered = {
        "object": "page",
        "entry": [
            {
                "id": PAGE_ID,
                "time": now_ms + 2000,
                "messaging": [
                    {
                        "sender": {"id": "psid-42"},
                        "recipient": {"id": PAGE_ID},
                        "timestamp": now_ms + 2000,
                        "delivery": {"mids": [request.provider_id], "watermark": now_ms + 1500},
                    }
                ],
            }
        ],
    }
    body, headers = signed_meta(delivered, FB_SECRET)
    assert (await system.ingest.post("/webhooks/messenger", content=body, headers=headers)).status_code == 200
    await eventually(
        lambda: delivery_of(system, agent, thread["id"], sent["id"], "delivered"), what="delivered"
    )


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


async def test_a_call_leaves_a_voicemail_in_the_callers_thread(system: System) -> None:
    agent = await system.agent("ada@example.com", [])
    call = {
        "CallSid": "CA" + "1" * 32,
        "AccountSid": TW_SID,
        "From": CUSTOMER_PHONE,
        "To": TW_FROM,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    answer = await post_twilio(system, "/webhooks/twilio/voice", call)
    assert answer.status_code == 200, answer.text
    twiml = ElementTree.fromstring(answer.text)  # noqa: S314 - our own answer, in a test
    record = twiml.find("Record")
    assert record is not None and twiml.find("Say") is not None
    recording_url = record.attrib["recordingStatusCallback"]
    transcription_url = record.attrib["transcribeCallback"]
    assert recording_url.startswith(PUBLIC + "/webhooks/twilio/voice/recording?")

    recording = {
        "AccountSid": TW_SID,
        "CallSid": call["CallSid"],
        "RecordingSid": "RE" + "2" * 32,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{TW_SID}/Recordings/RE{'2' * 32}",
        "RecordingStatus": "completed",
        "RecordingDuration": "14",
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
    }
    transcription = {
        "AccountSid": TW_SID,
        "CallSid": call["CallSid"],
        "RecordingSid": recording["RecordingSid"],
        "RecordingUrl": recording["RecordingUrl"],
        "TranscriptionSid": "TR" + "3" * 32,
        "TranscriptionText": "Hi, please call me back about my order.",
        "TranscriptionStatus": "completed",
        "TranscriptionType": "fast",
    }
    for url, params in ((recording_url, recording), (transcription_url, transcription)):
        path = url.removeprefix(PUBLIC)
        response = await system.ingest.post(
            path,
            content=urlencode(params),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": twilio_signature(TW_TOKEN, url, params),
            },
        )
        assert response.status_code == 204, response.text

    async def three_items() -> dict[str, Any] | None:
        thread = await assigned_thread(system, agent)
        return thread if len(thread["messages"]) == 3 else None

    thread = await eventually(three_items, what="call, voicemail and transcription in the thread")
    items = sorted(thread["messages"], key=lambda m: m["content_kind"])
    assert [(m["channel"], m["content_kind"]) for m in items] == [
        ("voice", "call"),
        ("voice", "transcription"),
        ("voice", "voicemail"),
    ]
    assert items[1]["body"] == "Hi, please call me back about my order."
    assert items[2]["attachments"][0]["url"] == recording["RecordingUrl"]
    assert {"kind": "phone", "value": CUSTOMER_PHONE} in thread["customer"]["identities"]

    # A callback signed for another caller's URL cannot be replayed onto this one.
    forged = recording_url.replace("%2B14155550123", "%2B14155550999")
    response = await system.ingest.post(
        forged.removeprefix(PUBLIC),
        content=urlencode(recording),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(TW_TOKEN, recording_url, recording),
        },
    )
    assert response.status_code == 401


MAILGUN_KEY, MIME_TOKEN = "mailgun-signing-key-1", "mime-token-1"


def mailgun_form(message_id: str, sender: str, subject: str, body: str, **headers: str) -> dict[str, str]:
    """A Mailgun route's forward (urlencoded), signed as Mailgun signs: HMAC-SHA256(key, timestamp + token)."""
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    all_headers = [["Message-Id", f"<{message_id}>"], ["From", sender], ["Subject", subject]]
    all_headers += [[name.replace("_", "-"), value] for name, value in headers.items()]
    return {
        "recipient": "support@example.com",
        "sender": sender,
        "from": sender,
        "subject": subject,
        "body-plain": body,
        "Message-Id": f"<{message_id}>",
        "message-headers": json.dumps(all_headers),
        "timestamp": timestamp,
        "token": token,
        "signature": hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest(),
    }


@pytest.fixture
async def mail_system(settings: Settings, fakes: FakeProviders) -> AsyncIterator[tuple[System, Running]]:
    with mail_server() as smtp:
        email_settings = channel_settings(
            settings,
            fakes,
            mailgun_signing_key=MAILGUN_KEY,
            email_mime_token=MIME_TOKEN,
            email_from_address="Support <support@example.com>",
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_starttls=False,
        )
        async with running(email_settings) as system:
            yield system, smtp


async def test_email_round_trip_threads_replies_both_ways(mail_system: tuple[System, Running]) -> None:
    system, smtp = mail_system
    agent = await system.agent("ada@example.com", [])
    body = "Where is my order 1234?\n\nThanks,\nJane\n\nOn Mon, Nov 2, 2026 at 9:00 AM Shop <shop@example.com> wrote:\n> Your order shipped."
    form = mailgun_form("c1@mail.example.org", "Jane <jane@example.org>", "Order 1234", body)
    first = await system.ingest.post("/webhooks/email/mailgun", data=form)
    assert first.status_code == 200, first.text
    assert (await system.ingest.post("/webhooks/email/mailgun", data=form)).status_code == 200  # a retry
    replayed = {**form, "body-plain": "Send the refund to my other account."}  # a captured signature reused
    refused = await system.ingest.post("/webhooks/email/mailgun", data=replayed)
    assert refused.status_code == 401, refused.text

    thread = await assigned_thread(system, agent)
    [message] = thread["messages"]
    assert (message["channel"], message["subject"]) == ("email", "Order 1234")
    assert "Where is my order 1234?" in message["body"] and "Your order shipped" not in message["body"]
    assert "Your order shipped" in message["original_text"]

    sent = await reply(system, agent, thread["id"], "It arrives tomorrow.")
    await eventually(lambda: delivery_of(system, agent, thread["id"], sent["id"], "sent"), what="sent")
    [mail] = smtp.handler.received
    assert mail.rcpt_tos == ["jane@example.org"]
    assert mail.message["Subject"] == "Re: Order 1234"
    assert mail.message["In-Reply-To"] == "<c1@mail.example.org>"
    ours = mail.message["Message-ID"].strip("<>")

    # A colleague answers our email from another address: it joins Jane's thread, through the MIME route.
    raw = (
        "From: Sam <sam@example.org>\r\nTo: support@example.com\r\nSubject: Re: Order 1234\r\n"
        f"Message-ID: <c2@mail.example.org>\r\nIn-Reply-To: <{ours}>\r\nReferences: <c1@mail.example.org> <{ours}>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nI can take the parcel for Jane.\r\n"
    ).encode()
    unauthorised = await system.ingest.post("/webhooks/email/mime", content=raw)
    assert unauthorised.status_code == 401
    posted = await system.ingest.post(
        "/webhooks/email/mime", content=raw, headers={"Authorization": f"Bearer {MIME_TOKEN}"}
    )
    assert posted.status_code == 200, posted.text

    async def two_inbound() -> list[dict[str, Any]] | None:
        response = await system.conversation.get(f"/v1/conversations/{thread['id']}", headers=agent["auth"])
        inbound = [m for m in response.json()["messages"] if m["direction"] == "inbound"]
        return inbound if len(inbound) == 2 else None

    inbound = await eventually(two_inbound, what="the colleague's email in Jane's thread")
    assert inbound[1]["body"].startswith("I can take the parcel")
    customer = (
        await system.conversation.get(f"/v1/conversations/{thread['id']}", headers=agent["auth"])
    ).json()
    assert {"kind": "email", "value": "sam@example.org"} in customer["customer"]["identities"]


async def test_email_replies_go_through_the_mailgun_api_when_it_is_configured(
    settings: Settings, fakes: FakeProviders
) -> None:
    """Mailgun's API is preferred to SMTP (whose server here is nowhere): the reply is threaded to the
    customer's email, a 429 and a 503 are retried, a 400 is final with Mailgun's message in the thread."""
    fakes.reset()
    email_settings = channel_settings(
        settings,
        fakes,
        mailgun_signing_key=MAILGUN_KEY,
        email_from_address="Support <support@example.com>",
        mailgun_api_key=fakes.mailgun_api_key,
        mailgun_domain=fakes.mailgun_domain,
        mailgun_api_base=fakes.base_url,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
    )
    async with running(email_settings) as system:
        agent = await system.agent("ada@example.com", [], capacity=5)
        form = mailgun_form("m1@mail.example.org", "Jane <jane@example.org>", "Order 1234", "Where is it?")
        assert (await system.ingest.post("/webhooks/email/mailgun", data=form)).status_code == 200
        thread = await assigned_thread(system, agent)

        fakes.fail_next("mailgun", 429, retry_after="0")
        fakes.fail_next("mailgun", 503)
        sent = await reply(system, agent, thread["id"], "It arrives tomorrow.")
        await eventually(lambda: delivery_of(system, agent, thread["id"], sent["id"], "sent"), what="sent")
        attempts = fakes.requests("mailgun")
        assert [r.status for r in attempts] == [429, 503, 200]
        mail = attempts[-1].form
        assert mail is not None
        assert (mail["from"], mail["to"], mail["subject"]) == (
            "Support <support@example.com>",
            "jane@example.org",
            "Re: Order 1234",
        )
        assert mail["text"] == "It arrives tomorrow."
        assert mail["h:In-Reply-To"] == "<m1@mail.example.org>"
        assert mail["h:Message-ID"] == f"<{sent['id']}@example.com>"

        fakes.fail_next("mailgun", 400)
        refused = await reply(system, agent, thread["id"], "Refused.")
        await eventually(
            lambda: delivery_of(system, agent, thread["id"], refused["id"], "failed"), what="failed"
        )
        detail = await system.conversation.get(f"/v1/conversations/{thread['id']}", headers=agent["auth"])
        [failed] = [m for m in detail.json()["messages"] if m["id"] == refused["id"]]
        assert "not a valid address" in failed["delivery_error"]
        assert len(fakes.requests("mailgun")) == 4  # a final refusal is not retried


async def test_an_agent_calls_the_customer_back_and_the_call_status_comes_back(
    system: System, fakes: FakeProviders
) -> None:
    agent = await system.agent("ada@example.com", [])
    call = {
        "CallSid": "CA" + "4" * 32,
        "AccountSid": TW_SID,
        "From": CUSTOMER_PHONE,
        "To": TW_FROM,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    assert (await post_twilio(system, "/webhooks/twilio/voice", call)).status_code == 200
    thread = await assigned_thread(system, agent)
    sent = await reply(system, agent, thread["id"], "Hello, this is Ada returning your call.")  # on voice
    [request] = await fakes.wait_for("twilio-calls", 1)
    assert request.form is not None
    assert (request.form["To"], request.form["From"]) == (CUSTOMER_PHONE, TW_FROM)
    assert "Ada returning your call" in ElementTree.fromstring(request.form["Twiml"]).findtext("Say", "")  # noqa: S314
    status_url = request.form["StatusCallback"]
    assert status_url == PUBLIC + "/webhooks/twilio/voice/status"
    await eventually(lambda: delivery_of(system, agent, thread["id"], sent["id"], "sent"), what="call placed")

    completed = {
        "CallSid": request.provider_id or "",
        "AccountSid": TW_SID,
        "CallStatus": "completed",
        "From": TW_FROM,
        "To": CUSTOMER_PHONE,
        "Direction": "outbound-api",
        "CallDuration": "42",
    }
    assert (await post_twilio(system, "/webhooks/twilio/voice/status", completed)).status_code == 204
    await eventually(
        lambda: delivery_of(system, agent, thread["id"], sent["id"], "delivered"), what="answered"
    )


async def test_an_email_larger_than_an_api_request_is_taken_whole(
    mail_system: tuple[System, Running],
) -> None:
    system, _ = mail_system
    agent = await system.agent("ada@example.com", [])
    body = "A log line the customer pasted\n" * 8000  # ~250 KB: the API channel's limit is 64 KiB
    form = mailgun_form("big@mail.example.org", "Jane <jane@example.org>", "Logs", body)
    response = await system.ingest.post("/webhooks/email/mailgun", data=form)
    assert response.status_code == 200, response.text
    [message] = (await assigned_thread(system, agent))["messages"]
    assert message["original_text"].count("A log line") == 8000
