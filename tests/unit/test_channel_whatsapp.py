"""The WhatsApp Cloud API adapter against the payloads of Meta's documentation.

Samples: "messages webhook reference" and its per-type pages (text, image, location, contacts, status) at
developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages, and the
older "Webhook payload examples" page (developers.facebook.com/docs/whatsapp/cloud-api/webhooks/
payload-examples: sticker, unknown, location without "type", contacts, button, list_reply, button_reply,
reaction). Placeholders (<WHATSAPP_MESSAGE_ID>, PHONE_NUMBER, ...) are filled with concrete values.
Signatures are computed here with hmac, independently of the adapter.
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
from switchboard_ingest.channels.whatsapp import WhatsAppChannel

APP_SECRET = "wa-app-secret"
VERIFY_TOKEN = "wa-verify-token"
ACCESS_TOKEN = "EAAG-wa-access-token"
PHONE_NUMBER_ID = "106540352242922"
API_BASE = "https://graph.facebook.test/v21.0"

# Verbatim from the "messages webhook reference" (incoming text message).
DOCUMENTED_TEXT = b"""{
  "object": "whatsapp_business_account",
  "entry": [
    {
      "id": "102290129340398",
      "changes": [
        {
          "value": {
            "messaging_product": "whatsapp",
            "metadata": {
              "display_phone_number": "15550783881",
              "phone_number_id": "106540352242922"
            },
            "contacts": [
              {
                "profile": {
                  "name": "Sheena Nelson"
                },
                "wa_id": "16505551234"
              }
            ],
            "messages": [
              {
                "from": "16505551234",
                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                "timestamp": "1749416383",
                "type": "text",
                "text": {
                  "body": "Does it come in another color?"
                }
              }
            ]
          },
          "field": "messages"
        }
      ]
    }
  ]
}"""


@pytest.fixture
def channel() -> WhatsAppChannel:
    return WhatsAppChannel(
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        access_token=ACCESS_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        api_base=API_BASE + "/",
    )


def signed(body: bytes, secret: str = APP_SECRET) -> WebhookRequest:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(
        body=body,
        headers={"x-hub-signature-256": f"sha256={signature}", "content-type": "application/json"},
        url="https://switchboard.example/webhooks/whatsapp",
    )


def value(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``changes[].value`` as Meta nests it."""
    inner: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
    }
    if contacts is not None:
        inner["contacts"] = contacts
    if messages is not None:
        inner["messages"] = messages
    if statuses is not None:
        inner["statuses"] = statuses
    return inner


def batch(*entries: list[dict[str, Any]]) -> bytes:
    """A POST with one entry per list, each with one ``messages`` change per value."""
    entry = [
        {"id": "102290129340398", "changes": [{"value": v, "field": "messages"} for v in values]}
        for values in entries
    ]
    return json.dumps({"object": "whatsapp_business_account", "entry": entry}).encode()


def payload(*values: dict[str, Any]) -> bytes:
    return batch(list(values))


def one_message(channel: WhatsAppChannel, message: dict[str, Any]) -> Any:
    parsed = channel.parse(signed(payload(value(messages=[message]))))
    assert len(parsed.messages) == 1
    return parsed.messages[0]


def base_message(kind: str, **content: Any) -> dict[str, Any]:
    return {"from": "16315551234", "id": f"wamid.{kind}", "timestamp": "1749416383", "type": kind, **content}


# --- signature and handshake ------------------------------------------------------------------------------


def test_documented_text_message_is_verified_and_parsed(channel: WhatsAppChannel) -> None:
    request = signed(DOCUMENTED_TEXT)
    channel.verify(request)
    parsed = channel.parse(request)
    assert parsed.statuses == ()
    [message] = parsed.messages
    assert message.channel is Channel.WHATSAPP
    assert message.external_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert message.sender.kind is IdentityKind.PHONE
    assert message.sender.value == "+16505551234"
    assert message.display_name == "Sheena Nelson"
    assert message.text == "Does it come in another color?"
    assert message.sent_at == datetime.fromtimestamp(1749416383, UTC)
    assert message.content_kind is None
    assert message.attachments == ()


def test_signature_with_another_secret_is_refused(channel: WhatsAppChannel) -> None:
    with pytest.raises(SignatureInvalid, match="does not match"):
        channel.verify(signed(DOCUMENTED_TEXT, secret="someone-else"))


def test_missing_signature_header_is_refused(channel: WhatsAppChannel) -> None:
    request = WebhookRequest(
        body=DOCUMENTED_TEXT, headers={}, url="https://switchboard.example/webhooks/whatsapp"
    )
    with pytest.raises(SignatureInvalid, match="missing"):
        channel.verify(request)


@pytest.mark.parametrize(
    "header", ["sha1=abc", "sha256=", "d41d8cd98f00b204e9800998ecf8427e", "sha256=zz\u00e9"]
)
def test_malformed_signature_header_is_refused(channel: WhatsAppChannel, header: str) -> None:
    request = WebhookRequest(
        body=DOCUMENTED_TEXT, headers={"x-hub-signature-256": header}, url="https://switchboard.example/x"
    )
    with pytest.raises(SignatureInvalid):
        channel.verify(request)


def test_signature_covers_the_raw_bytes_not_their_json(channel: WhatsAppChannel) -> None:
    # The same JSON re-serialized (whitespace gone) is other bytes: the original signature must not pass.
    reserialized = json.dumps(json.loads(DOCUMENTED_TEXT)).encode()
    original = signed(DOCUMENTED_TEXT)
    tampered = WebhookRequest(body=reserialized, headers=original.headers, url=original.url)
    with pytest.raises(SignatureInvalid):
        channel.verify(tampered)


def test_an_unconfigured_app_secret_verifies_nothing() -> None:
    channel = WhatsAppChannel(
        app_secret="",
        verify_token=VERIFY_TOKEN,
        access_token=ACCESS_TOKEN,
        phone_number_id="1",
        api_base=API_BASE,
    )
    with pytest.raises(SignatureInvalid):
        channel.verify(signed(DOCUMENTED_TEXT, secret=""))


def test_handshake_answers_the_challenge(channel: WhatsAppChannel) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    assert channel.handshake(query) == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158201444"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
        {"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
    ],
)
def test_handshake_refuses_a_wrong_token_or_mode(channel: WhatsAppChannel, query: dict[str, str]) -> None:
    with pytest.raises(SignatureInvalid):
        channel.handshake(query)


# --- message types ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "media", "expected"),
    [
        (
            "image",
            {
                "caption": "CAPTION",
                "mime_type": "image/jpeg",
                "sha256": "IMAGE_HASH",
                "id": "1013859600285441",
            },
            Attachment(
                kind=AttachmentKind.IMAGE,
                media_id="1013859600285441",
                content_type="image/jpeg",
                caption="CAPTION",
            ),
        ),
        (
            "audio",
            {
                "mime_type": "audio/ogg; codecs=opus",
                "sha256": "HASH",
                "id": "2013859600285441",
                "voice": True,
            },
            Attachment(
                kind=AttachmentKind.AUDIO, media_id="2013859600285441", content_type="audio/ogg; codecs=opus"
            ),
        ),
        (
            "video",
            {"mime_type": "video/mp4", "sha256": "HASH", "id": "3013859600285441"},
            Attachment(kind=AttachmentKind.VIDEO, media_id="3013859600285441", content_type="video/mp4"),
        ),
        (
            "document",
            {
                "caption": "Invoice",
                "filename": "invoice.pdf",
                "mime_type": "application/pdf",
                "sha256": "HASH",
                "id": "4013859600285441",
            },
            Attachment(
                kind=AttachmentKind.DOCUMENT,
                media_id="4013859600285441",
                content_type="application/pdf",
                filename="invoice.pdf",
                caption="Invoice",
            ),
        ),
        (
            "sticker",
            {"mime_type": "image/webp", "sha256": "HASH", "id": "5013859600285441"},
            Attachment(kind=AttachmentKind.STICKER, media_id="5013859600285441", content_type="image/webp"),
        ),
    ],
)
def test_media_is_kept_as_a_reference_with_its_caption_as_text(
    channel: WhatsAppChannel, kind: str, media: dict[str, Any], expected: Attachment
) -> None:
    message = one_message(channel, base_message(kind, **{kind: media}))
    assert message.attachments == (expected,)
    assert message.text == (expected.caption or "")
    assert message.external_id == f"wamid.{kind}"
    assert message.sender.value == "+16315551234"


def test_location_is_rendered_readably(channel: WhatsAppChannel) -> None:
    location = {
        "latitude": 37.4848,
        "longitude": -122.1484,
        "name": "Philz Coffee",
        "address": "101 Forest Ave",
    }
    message = one_message(channel, base_message("location", location=location))
    assert message.text == "Location: Philz Coffee, 101 Forest Ave (37.4848, -122.1484)"
    assert message.content_kind == "location"


def test_location_without_type_or_name_as_in_the_older_sample(channel: WhatsAppChannel) -> None:
    raw = base_message("location", location={"latitude": 51.5, "longitude": -0.12})
    del raw["type"]
    message = one_message(channel, raw)
    assert message.text == "Location: (51.5, -0.12)"
    assert message.content_kind == "location"


def test_shared_contacts_become_readable_text(channel: WhatsAppChannel) -> None:
    card = {
        "addresses": [{"city": "Menlo Park", "country": "United States", "type": "WORK"}],
        "birthday": "1990-01-01",
        "emails": [{"email": "barbara@example.com", "type": "WORK"}],
        "name": {"formatted_name": "Barbara Johnson", "first_name": "Barbara", "last_name": "Johnson"},
        "org": {"company": "Lucky Shrub"},
        "phones": [{"phone": "+1 (650) 555-1234", "wa_id": "16505551234", "type": "WORK"}],
        "urls": [{"url": "https://www.luckyshrub.com", "type": "WORK"}],
    }
    message = one_message(
        channel, base_message("contacts", contacts=[card, {"name": {"formatted_name": "Ada"}}])
    )
    assert message.text == "Contact: Barbara Johnson, +1 (650) 555-1234, barbara@example.com\nContact: Ada"
    assert message.content_kind == "contacts"


@pytest.mark.parametrize(
    ("reply_kind", "reply"),
    [
        ("button_reply", {"id": "unique-button-identifier-here", "title": "Change"}),
        ("list_reply", {"id": "priority_express", "title": "Express Shipping", "description": "Next day"}),
    ],
)
def test_interactive_replies_read_as_their_title(
    channel: WhatsAppChannel, reply_kind: str, reply: dict[str, str]
) -> None:
    raw = base_message("interactive", interactive={"type": reply_kind, reply_kind: reply})
    raw["context"] = {"from": "15550783881", "id": "wamid.ORIGINAL"}
    message = one_message(channel, raw)
    assert message.text == reply["title"]
    assert message.content_kind == reply_kind


def test_template_quick_reply_button_reads_as_its_text(channel: WhatsAppChannel) -> None:
    message = one_message(
        channel, base_message("button", button={"text": "No", "payload": "No-Button-Payload"})
    )
    assert message.text == "No"
    assert message.content_kind == "button"


def test_types_that_are_no_customer_message_are_skipped_not_refused(channel: WhatsAppChannel) -> None:
    skipped = [
        base_message("reaction", reaction={"message_id": "wamid.EARLIER", "emoji": "\U0001f600"}),
        base_message(
            "unknown",
            errors=[
                {"code": 131051, "details": "Message type is not currently supported", "title": "Unsupported"}
            ],
        ),
        base_message("unsupported", errors=[{"code": 131051, "title": "Message type unknown"}]),
        base_message("system", system={"body": "NAME changed from 1 to 2", "type": "user_changed_number"}),
        base_message("interactive", interactive={"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}}),
    ]
    kept = base_message("text", text={"body": "still here"})
    parsed = channel.parse(signed(payload(value(messages=[*skipped, kept]))))
    assert [m.text for m in parsed.messages] == ["still here"]


def test_batched_entries_changes_and_messages_all_arrive_in_order(channel: WhatsAppChannel) -> None:
    contacts = [
        {"profile": {"name": "Ann"}, "wa_id": "16505550001"},
        {"profile": {"name": "Bob"}, "wa_id": "447700900123"},
    ]
    first = value(
        contacts=contacts,
        messages=[
            {
                "from": "16505550001",
                "id": "wamid.1",
                "timestamp": "1749416383",
                "type": "text",
                "text": {"body": "a"},
            },
            {
                "from": "447700900123",
                "id": "wamid.2",
                "timestamp": "1749416384",
                "type": "text",
                "text": {"body": "b"},
            },
        ],
    )
    second = value(
        messages=[
            {
                "from": "16505550001",
                "id": "wamid.3",
                "timestamp": "1749416385",
                "type": "text",
                "text": {"body": "c"},
            }
        ]
    )
    third = value(
        contacts=[{"profile": {"name": "Cy"}, "wa_id": "4915123456789"}],
        messages=[
            {
                "from": "4915123456789",
                "id": "wamid.4",
                "timestamp": "1749416386",
                "type": "text",
                "text": {"body": "d"},
            }
        ],
        statuses=[
            {"id": "wamid.OURS", "status": "delivered", "timestamp": "1749416386", "recipient_id": "1"}
        ],
    )
    parsed = channel.parse(signed(batch([first, second], [third])))
    assert [(m.external_id, m.sender.value, m.display_name, m.text) for m in parsed.messages] == [
        ("wamid.1", "+16505550001", "Ann", "a"),
        ("wamid.2", "+447700900123", "Bob", "b"),
        ("wamid.3", "+16505550001", None, "c"),  # its change had no contacts
        ("wamid.4", "+4915123456789", "Cy", "d"),
    ]
    assert [s.external_id for s in parsed.statuses] == ["wamid.OURS"]


def test_changes_of_other_fields_are_ignored(channel: WhatsAppChannel) -> None:
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {"field": "message_template_status_update", "value": {"event": "APPROVED"}},
                    ],
                }
            ],
        }
    ).encode()
    assert channel.parse(signed(body)).messages == ()


# --- statuses ---------------------------------------------------------------------------------------------


def test_statuses_in_any_order_including_read_without_delivered_and_failed(channel: WhatsAppChannel) -> None:
    statuses: list[dict[str, Any]] = [
        {
            "id": "wamid.READ",
            "status": "read",
            "timestamp": "1750263773",
            "recipient_id": "16505551234",
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"},
        },
        {
            "id": "wamid.FAILED",
            "status": "failed",
            "timestamp": "1750263774",
            "recipient_id": "16505551234",
            "errors": [
                {
                    "code": 131047,
                    "title": "Re-engagement message",
                    "message": "Re-engagement message",
                    "error_data": {
                        "details": "Message failed to send because more than 24 hours have passed since the "
                        "customer last replied to this number."
                    },
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }
            ],
        },
        {"id": "wamid.SENT", "status": "sent", "timestamp": "1750263770", "recipient_id": "16505551234"},
        {"id": "wamid.SENT", "status": "delivered", "timestamp": "1750263771", "recipient_id": "16505551234"},
        {"id": "wamid.VOICE", "status": "played", "timestamp": "1750263775", "recipient_id": "16505551234"},
    ]
    parsed = channel.parse(signed(payload(value(statuses=statuses))))
    assert parsed.messages == ()
    assert [(s.external_id, s.status) for s in parsed.statuses] == [
        ("wamid.READ", DeliveryState.READ),
        ("wamid.FAILED", DeliveryState.FAILED),
        ("wamid.SENT", DeliveryState.SENT),
        ("wamid.SENT", DeliveryState.DELIVERED),
    ]
    read, failed = parsed.statuses[0], parsed.statuses[1]
    assert read.at == datetime.fromtimestamp(1750263773, UTC)
    assert read.channel is Channel.WHATSAPP
    assert (read.error_code, read.error_reason) == (None, None)
    assert failed.error_code == "131047"
    assert failed.error_reason is not None
    assert failed.error_reason.startswith("Message failed to send because more than 24 hours")


def test_failed_status_without_details_falls_back_to_the_title(channel: WhatsAppChannel) -> None:
    status = {
        "id": "wamid.X",
        "status": "failed",
        "timestamp": "1670394125",
        "recipient_id": "91xxxxxxxxxx",
        "errors": [{"code": 1026, "title": "Receiver Incapable"}],
    }
    [parsed] = channel.parse(signed(payload(value(statuses=[status])))).statuses
    assert (parsed.error_code, parsed.error_reason) == ("1026", "Receiver Incapable")


# --- malformed payloads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"object": "page", "entry": []}', "whatsapp_business_account"),
        (b'{"object": "whatsapp_business_account"}', "entry"),
        (b'{"object": "whatsapp_business_account", "entry": {"id": "1"}}', "entry"),
        (
            b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": 3}]}]}',
            "value",
        ),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(
    channel: WhatsAppChannel, body: bytes, reason: str
) -> None:
    with pytest.raises(PayloadInvalid, match=reason):
        channel.parse(signed(body))


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"from": "16505551234", "timestamp": "1", "type": "text", "text": {"body": "x"}}, "id"),
        ({"from": "(((", "id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "x"}}, "from"),
        ({"id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "x"}}, "from"),
        (
            {
                "from": "16505551234",
                "id": "wamid.1",
                "timestamp": "soon",
                "type": "text",
                "text": {"body": "x"},
            },
            "timestamp",
        ),
        (
            {"from": "16505551234", "id": "wamid.1", "type": "image", "image": {"mime_type": "image/png"}},
            "image.id",
        ),
        (
            {"from": "16505551234", "id": "wamid.1", "type": "location", "location": {"latitude": "north"}},
            "latitude",
        ),
    ],
)
def test_malformed_messages_are_refused(
    channel: WhatsAppChannel, message: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PayloadInvalid, match=reason):
        channel.parse(signed(payload(value(messages=[message]))))


# --- outbound ---------------------------------------------------------------------------------------------


def outbound(text: str = "Yes, it also comes in blue.") -> OutboundMessage:
    return OutboundMessage(
        message_id=uuid.uuid4(), channel=Channel.WHATSAPP, recipient="+16505551234", text=text
    )


def test_build_makes_the_cloud_api_send_request(channel: WhatsAppChannel) -> None:
    request = channel.build(outbound())
    assert request.method == "POST"
    assert str(request.url) == f"{API_BASE}/{PHONE_NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505551234",
        "type": "text",
        "text": {"body": "Yes, it also comes in blue."},
    }


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    return httpx.Response(status, content=content, headers=headers)


def graph_error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def test_outcome_sent_with_the_wamid(channel: WhatsAppChannel) -> None:
    body = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
        "messages": [{"id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"}],
    }
    outcome = channel.outcome(answer(200, body))
    assert outcome.result is SendResult.SENT
    assert outcome.external_id == "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"


def test_outcome_sent_even_without_an_id(channel: WhatsAppChannel) -> None:
    outcome = channel.outcome(answer(200, b"ok"))
    assert (outcome.result, outcome.external_id) == (SendResult.SENT, None)


def test_outcome_429_is_retried_after_what_the_provider_says(channel: WhatsAppChannel) -> None:
    outcome = channel.outcome(answer(429, graph_error(130429, "Rate limit hit"), {"Retry-After": "7"}))
    assert outcome.result is SendResult.RETRY
    assert outcome.retry_after == 7.0
    assert outcome.error_code == "130429"


def test_outcome_500_is_retried(channel: WhatsAppChannel) -> None:
    outcome = channel.outcome(answer(500, b"<html>Internal Server Error</html>"))
    assert outcome.result is SendResult.RETRY
    assert outcome.retry_after is None


def test_outcome_400_graph_error_is_final_and_keeps_the_code(channel: WhatsAppChannel) -> None:
    outcome = channel.outcome(
        answer(400, graph_error(131030, "(#131030) Recipient phone number not in allowed list"))
    )
    assert outcome.result is SendResult.FAILED
    assert outcome.error_code == "131030"
    assert outcome.error_reason == "(#131030) Recipient phone number not in allowed list"


def test_outcome_400_throttling_is_retried_not_failed(channel: WhatsAppChannel) -> None:
    # Graph reports throttling with HTTP 400: the code, not the status, says it will pass.
    outcome = channel.outcome(answer(400, graph_error(131056, "(#131056) pair rate limit hit")))
    assert outcome.result is SendResult.RETRY
    assert outcome.error_code == "131056"
