"""The Messenger / Instagram adapter against the payloads of Meta's documentation.

Samples: Messenger Platform "Webhook Events Reference" pages at developers.facebook.com/documentation/
business-messaging/messenger-platform/webhooks/webhook-events/: ``messages`` (text with quick reply,
attachments, sticker transition), ``message_echoes`` (example 1), ``messaging_postbacks``,
``message_deliveries`` and ``message_reads``; the Instagram Platform "Webhook Notification Examples"
(``object: instagram``, messaging payload). Placeholders (<PSID>, <PAGE_ID>, ...) are filled in; the
postback sample's dashboard ``field``/``value`` wrapper is unwrapped into ``entry[].messaging[]`` with a
PSID sender, as real deliveries carry it. Signatures are computed here with hmac, independently of the adapter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from switchboard_common.events import Attachment, AttachmentKind, Channel, DeliveryState, IdentityKind
from switchboard_ingest.channels.base import (
    OutboundMessage,
    PayloadInvalid,
    SendResult,
    SignatureInvalid,
    WebhookRequest,
)
from switchboard_ingest.channels.messenger import MessengerChannel

APP_SECRET = "fb-app-secret"
VERIFY_TOKEN = "fb-verify-token"
PAGE_TOKEN = "EAAB-page-access-token"
API_BASE = "https://graph.facebook.test/v21.0"
PSID = "1254459154682919"
PAGE_ID = "682498302938465"


@pytest.fixture
def channel() -> MessengerChannel:
    return MessengerChannel(
        app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, page_access_token=PAGE_TOKEN, api_base=API_BASE
    )


def signed(body: bytes, secret: str = APP_SECRET) -> WebhookRequest:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(
        body=body,
        headers={"x-hub-signature-256": f"sha256={signature}"},
        url="https://switchboard.example/webhooks/messenger",
    )


def webhook(*events: dict[str, Any], obj: str = "page", entries: int = 1) -> bytes:
    entry = [{"id": PAGE_ID, "time": 1518479195594, "messaging": list(events)} for _ in range(entries)]
    return json.dumps({"object": obj, "entry": entry}).encode()


def event(**content: Any) -> dict[str, Any]:
    return {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": 1458692752478, **content}


# --- signature and handshake ------------------------------------------------------------------------------


def test_documented_text_message_is_verified_and_parsed(channel: MessengerChannel) -> None:
    request = signed(
        webhook(
            event(
                message={
                    "mid": "mid.1457764197618:41d102a3e1ae206a38",
                    "text": "hello, world!",
                    "quick_reply": {"payload": "<DEVELOPER_DEFINED_PAYLOAD>"},
                }
            )
        )
    )
    channel.verify(request)
    parsed = channel.parse(request)
    [message] = parsed.messages
    assert message.channel is Channel.MESSENGER
    assert message.external_id == "mid.1457764197618:41d102a3e1ae206a38"
    assert message.sender.kind is IdentityKind.MESSENGER
    assert message.sender.value == PSID
    assert message.text == "hello, world!"
    assert message.sent_at == datetime.fromtimestamp(1458692752.478, UTC)
    assert message.content_kind is None
    assert parsed.statuses == ()


def test_signature_with_another_secret_is_refused(channel: MessengerChannel) -> None:
    with pytest.raises(SignatureInvalid):
        channel.verify(signed(webhook(event(message={"mid": "m_1", "text": "hi"})), secret="not-ours"))


def test_missing_signature_header_is_refused(channel: MessengerChannel) -> None:
    with pytest.raises(SignatureInvalid, match="missing"):
        channel.verify(
            WebhookRequest(body=b"{}", headers={}, url="https://switchboard.example/webhooks/messenger")
        )


def test_tampered_body_is_refused(channel: MessengerChannel) -> None:
    original = signed(webhook(event(message={"mid": "m_1", "text": "hi"})))
    reserialized = json.dumps(json.loads(original.body), indent=1).encode()
    with pytest.raises(SignatureInvalid):
        channel.verify(WebhookRequest(body=reserialized, headers=original.headers, url=original.url))


def test_handshake_answers_the_challenge_and_refuses_a_wrong_token_or_mode(channel: MessengerChannel) -> None:
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "CHALLENGE_ACCEPTED"}
    assert channel.handshake(ok) == "CHALLENGE_ACCEPTED"
    with pytest.raises(SignatureInvalid):
        channel.handshake({**ok, "hub.verify_token": VERIFY_TOKEN + "x"})
    with pytest.raises(SignatureInvalid):
        channel.handshake({**ok, "hub.mode": "unsubscribe"})


# --- messages ---------------------------------------------------------------------------------------------


def test_instagram_messages_are_on_the_instagram_channel(channel: MessengerChannel) -> None:
    body = webhook(
        event(message={"mid": "aWdfZAG1faXRlbToxOklH", "text": "Is this in stock?"}), obj="instagram"
    )
    [message] = channel.parse(signed(body)).messages
    assert message.channel is Channel.INSTAGRAM
    assert message.sender.kind is IdentityKind.INSTAGRAM
    assert message.sender.value == PSID


def test_attachments_are_kept_as_urls(channel: MessengerChannel) -> None:
    attachments = [
        {"type": "image", "payload": {"url": "https://cdn.fbsbx.test/image.jpg"}},
        {"type": "audio", "payload": {"url": "https://cdn.fbsbx.test/audio.mp4"}},
        {"type": "video", "payload": {"url": "https://cdn.fbsbx.test/video.mp4"}},
        {"type": "file", "payload": {"url": "https://cdn.fbsbx.test/terms.pdf"}},
        {"type": "fallback", "payload": {"url": "https://example.com/shared-link", "title": "A link"}},
    ]
    [message] = channel.parse(
        signed(
            webhook(event(message={"mid": "mid.$cAAJdkrCd2ORnva8ErFhjGm0X_Q_c", "attachments": attachments}))
        )
    ).messages
    assert message.text == ""
    assert message.attachments == (
        Attachment(kind=AttachmentKind.IMAGE, url="https://cdn.fbsbx.test/image.jpg"),
        Attachment(kind=AttachmentKind.AUDIO, url="https://cdn.fbsbx.test/audio.mp4"),
        Attachment(kind=AttachmentKind.VIDEO, url="https://cdn.fbsbx.test/video.mp4"),
        Attachment(kind=AttachmentKind.FILE, url="https://cdn.fbsbx.test/terms.pdf"),
    )


def test_a_sticker_sent_both_ways_during_the_transition_is_one_sticker(channel: MessengerChannel) -> None:
    both = [
        {
            "type": "image",
            "payload": {"url": "https://cdn.fbsbx.test/369239263222822.png", "sticker_id": 369239263222822},
        },
        {
            "type": "sticker",
            "payload": {"url": "https://cdn.fbsbx.test/369239263222822.png", "sticker_id": 369239263222822},
        },
    ]
    legacy = [{"type": "image", "payload": {"url": "https://cdn.fbsbx.test/1.png", "sticker_id": 1}}]
    parsed = channel.parse(
        signed(
            webhook(
                event(message={"mid": "m_both", "attachments": both, "sticker_id": 369239263222822}),
                event(message={"mid": "m_legacy", "attachments": legacy, "sticker_id": 1}),
            )
        )
    )
    assert [m.attachments for m in parsed.messages] == [
        (Attachment(kind=AttachmentKind.STICKER, url="https://cdn.fbsbx.test/369239263222822.png"),),
        (Attachment(kind=AttachmentKind.STICKER, url="https://cdn.fbsbx.test/1.png"),),
    ]


def test_echoes_of_our_own_sends_are_dropped(channel: MessengerChannel) -> None:
    echo = {
        "sender": {"id": PAGE_ID},
        "recipient": {"id": PSID},
        "timestamp": 1457764197627,
        "message": {
            "is_echo": True,
            "app_id": 1517776481860111,
            "metadata": "<DEVELOPER_DEFINED_METADATA_STRING>",
            "mid": "mid.1457764197618:41d102a3e1ae206a38",
            "text": "Yes, it also comes in blue.",
        },
    }
    customer = event(message={"mid": "m_customer", "text": "thanks"})
    parsed = channel.parse(signed(webhook(echo, customer)))
    assert [m.external_id for m in parsed.messages] == ["m_customer"]


def test_messages_with_nothing_to_show_are_skipped(channel: MessengerChannel) -> None:
    parsed = channel.parse(
        signed(
            webhook(
                event(message={"mid": "m_unsupported", "is_unsupported": True}),
                event(message={"mid": "m_link", "attachments": [{"type": "fallback", "payload": None}]}),
            )
        )
    )
    assert parsed.messages == ()


def test_postback_reads_as_its_title(channel: MessengerChannel) -> None:
    postback = {
        "mid": "m_MESSAGE-ID",
        "title": "TITLE-FOR-THE-CTA",
        "payload": "USER-DEFINED-PAYLOAD",
        "referral": {"ref": "USER-DEFINED-REFERRAL-PARAM", "source": "SHORT-URL", "type": "OPEN_THREAD"},
    }
    [message] = channel.parse(signed(webhook(event(postback=postback)))).messages
    assert message.external_id == "m_MESSAGE-ID"
    assert message.text == "TITLE-FOR-THE-CTA"
    assert message.content_kind == "postback"
    assert message.sender.value == PSID


def test_postback_without_mid_gets_an_id_that_is_the_same_on_a_retry(channel: MessengerChannel) -> None:
    body = webhook(event(postback={"title": "Get Started", "payload": "GET_STARTED"}))
    first = channel.parse(signed(body)).messages[0]
    again = channel.parse(signed(body)).messages[0]
    assert first.external_id == again.external_id == f"postback:{PSID}:1458692752478"


def test_batched_entries_and_events_all_arrive(channel: MessengerChannel) -> None:
    events = [event(message={"mid": f"m_{i}", "text": str(i)}) for i in range(3)]
    parsed = channel.parse(signed(webhook(*events, entries=2)))
    assert [m.text for m in parsed.messages] == ["0", "1", "2"] * 2


def test_standby_events_of_threads_another_app_holds_are_not_ours(channel: MessengerChannel) -> None:
    body = json.dumps(
        {
            "object": "page",
            "entry": [
                {
                    "id": PAGE_ID,
                    "time": 1570053170926,
                    "standby": [event(message={"mid": "m_x", "text": "x"})],
                }
            ],
        }
    ).encode()
    assert channel.parse(signed(body)) == channel.parse(signed(webhook()))


# --- delivery and read ------------------------------------------------------------------------------------


def test_delivery_reports_each_message_delivered_and_read_is_skipped(channel: MessengerChannel) -> None:
    delivery = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE_ID},
        "delivery": {
            "mids": ["mid.1458668856218:ed81099e15d3f4f233", "m_second"],
            "watermark": 1458668856253,
        },
    }
    read = event(read={"watermark": 1458668856253})
    watermark_only = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE_ID},
        "delivery": {"watermark": 1458668856253},
    }
    parsed = channel.parse(signed(webhook(delivery, read, watermark_only)))
    assert parsed.messages == ()
    assert [(s.channel, s.external_id, s.status) for s in parsed.statuses] == [
        (Channel.MESSENGER, "mid.1458668856218:ed81099e15d3f4f233", DeliveryState.DELIVERED),
        (Channel.MESSENGER, "m_second", DeliveryState.DELIVERED),
    ]
    assert parsed.statuses[0].at == datetime.fromtimestamp(1458668856.253, UTC)


# --- malformed payloads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<xml/>", "not JSON"),
        (b'"page"', "not a JSON object"),
        (b'{"object": "whatsapp_business_account", "entry": []}', "'page' or 'instagram'"),
        (b'{"object": "page", "entry": "x"}', "entry"),
        (b'{"object": "page", "entry": [{"messaging": [{"message": {"mid": "m", "text": "t"}}]}]}', "sender"),
        (
            b'{"object": "page", "entry": [{"messaging": [{"sender": {"id": "1"}, "message": {"text": "t"}}]}]}',
            "mid",
        ),
        (b'{"object": "page", "entry": [{"messaging": [{"delivery": {"mids": "m_1"}}]}]}', "mids"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(
    channel: MessengerChannel, body: bytes, reason: str
) -> None:
    with pytest.raises(PayloadInvalid, match=reason):
        channel.parse(signed(body))


# --- outbound ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("on", [Channel.MESSENGER, Channel.INSTAGRAM])
def test_build_makes_the_send_api_request(channel: MessengerChannel, on: Channel) -> None:
    message = OutboundMessage(message_id=uuid.uuid4(), channel=on, recipient=PSID, text="On its way!")
    request = channel.build(message)
    assert request.method == "POST"
    assert str(request.url) == f"{API_BASE}/me/messages"
    assert request.headers["authorization"] == f"Bearer {PAGE_TOKEN}"
    assert json.loads(request.content) == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "On its way!"},
    }


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(body).encode() if body is not None else b"", headers=headers
    )


def test_outcome_sent_with_the_message_id(channel: MessengerChannel) -> None:
    outcome = channel.outcome(
        answer(200, {"recipient_id": PSID, "message_id": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM"})
    )
    assert (outcome.result, outcome.external_id) == (SendResult.SENT, "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM")


def test_outcome_429_is_retried_after_what_the_provider_says(channel: MessengerChannel) -> None:
    outcome = channel.outcome(answer(429, None, {"Retry-After": "30"}))
    assert (outcome.result, outcome.retry_after) == (SendResult.RETRY, 30.0)


def test_outcome_500_is_retried(channel: MessengerChannel) -> None:
    body = {
        "error": {"message": "An unexpected error has occurred. Please retry your request later.", "code": 2}
    }
    outcome = channel.outcome(answer(500, body))
    assert outcome.result is SendResult.RETRY
    assert outcome.error_code == "2"


def test_outcome_400_graph_error_is_final_and_keeps_the_code(channel: MessengerChannel) -> None:
    body = {
        "error": {
            "message": "Invalid OAuth access token.",
            "type": "OAuthException",
            "code": 190,
            "error_subcode": 1234567,
            "fbtrace_id": "BLBz/WZt8dN",
        }
    }
    outcome = channel.outcome(answer(400, body))
    assert outcome.result is SendResult.FAILED
    assert (outcome.error_code, outcome.error_reason) == ("190", "Invalid OAuth access token.")


@pytest.mark.parametrize(
    "error",
    [
        {"code": 613, "message": "Calls to this api have exceeded the rate limit."},
        {"code": 1200, "message": "Temporary send message failure.", "is_transient": True},
    ],
)
def test_outcome_400_rate_limit_or_transient_error_is_retried(
    channel: MessengerChannel, error: dict[str, Any]
) -> None:
    outcome = channel.outcome(answer(400, {"error": {**error, "type": "OAuthException"}}))
    assert outcome.result is SendResult.RETRY
    assert outcome.error_code == str(error["code"])
