"""Mailgun. Replies through the messages API: the request Mailgun documents, and its answers read as retryable
or final. Inbound routes: the forward() POST as Mailgun documents it
(https://documentation.mailgun.com/docs/mailgun/user-manual/receive-forward-store/receive-http), encoded
by httpx the way an HTTP client does (multipart with the attachment as a file, or urlencoded), and signed
here with hmac, independently of the code under test."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard_common.events import AttachmentKind, Channel, CustomerIdentity, IdentityKind
from switchboard_ingest.channels.base import (
    PayloadInvalid,
    SendOutcome,
    SendResult,
    SignatureInvalid,
    WebhookRequest,
)
from switchboard_ingest.channels.mailgun import MailgunChannel, MailgunSender
from tests.integration.test_smtp_sender import reply

SIGNING_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
URL = "https://hooks.example.com/webhooks/email/mailgun"
TIMESTAMP = 1741082400  # 2025-03-04T10:00:00Z
SENT = datetime.fromtimestamp(TIMESTAMP, UTC)
TOKEN = "b5751a49a024483da8d41c3684f98b8f6f2b1f2ee0b84a5c7b"  # 50 characters, as Mailgun's
CHANNEL = MailgunChannel(signing_key=SIGNING_KEY, max_age_s=300)

BODY_PLAIN = (
    "Hi,\r\n\r\nthe parcel arrived damaged, photo attached.\r\n\r\n-- \r\nBob Sender\r\n\r\n"
    "On Mon, Mar 3, 2025 at 4:00 PM Support <support@example.com> wrote:\r\n> Your parcel is on its way.\r\n"
)
MESSAGE_HEADERS = [
    ["Received", "by mail-wr1-f41.google.com with SMTP id 5b1f17b1804b1"],
    ["Mime-Version", "1.0"],
    ["From", "Bob Sender <Bob@Example.COM>"],
    ["Date", "Tue, 4 Mar 2025 10:59:30 +0100"],
    ["Message-Id", "<CAL4Rb3Hdf9Q=x7vKy2m@mail.gmail.com>"],
    ["In-Reply-To", "<shipped-77@support.example.com>"],
    ["References", "<order-77@support.example.com> <shipped-77@support.example.com>"],
    ["Subject", "Re: Your order 77 has shipped"],
    ["To", "support@example.com"],
    ["Content-Type", 'multipart/mixed; boundary="0000000000001a2b3c"'],
]


def sign(timestamp: int | str, token: str, key: str = SIGNING_KEY) -> str:
    return hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


def forward_fields(**overrides: Any) -> dict[str, str]:
    fields = {
        "recipient": "support@example.com",
        "sender": "bob@example.com",
        "from": "Bob Sender <Bob@Example.COM>",
        "subject": "Re: Your order 77 has shipped",
        "body-plain": BODY_PLAIN,
        "stripped-text": "Hi,\r\n\r\nthe parcel arrived damaged, photo attached.",
        "stripped-signature": "Bob Sender",
        "body-html": "<div>Hi,<br><br>the parcel arrived damaged, photo attached.</div>",
        "stripped-html": "<div>Hi,<br><br>the parcel arrived damaged, photo attached.</div>",
        "message-headers": json.dumps(MESSAGE_HEADERS),
        "Message-Id": "<CAL4Rb3Hdf9Q=x7vKy2m@mail.gmail.com>",
        "Date": "Tue, 4 Mar 2025 10:59:30 +0100",
        "timestamp": str(TIMESTAMP),
        "token": TOKEN,
        "signature": sign(TIMESTAMP, TOKEN),
    }
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value is not None}


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]], **kw: Any) -> WebhookRequest:
    built = httpx.Request("POST", URL, data=fields, files=files)
    return WebhookRequest(
        body=built.read(),
        headers={"content-type": built.headers["content-type"]},
        url=URL,
        received_at=kw.get("received_at", SENT + timedelta(seconds=2)),
    )


def urlencoded(fields: dict[str, str], received_at: datetime = SENT + timedelta(seconds=2)) -> WebhookRequest:
    built = httpx.Request("POST", URL, data=fields)
    return WebhookRequest(
        body=built.read(),
        headers={"content-type": built.headers["content-type"]},
        url=URL,
        received_at=received_at,
    )


PHOTO = (
    "parcel-damage-Müller.jpg",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n--not-a-boundary\r\n\xff\xd9",
    "image/jpeg",
)


def with_photo(**overrides: Any) -> WebhookRequest:
    return multipart(forward_fields(**{"attachment-count": "1", **overrides}), {"attachment-1": PHOTO})


def test_multipart_forward_with_an_attachment() -> None:
    request = with_photo()

    CHANNEL.verify(request)
    parsed = CHANNEL.parse(request)

    (message,) = parsed.messages
    assert message.channel is Channel.EMAIL
    assert message.external_id == "CAL4Rb3Hdf9Q=x7vKy2m@mail.gmail.com"
    assert message.sender == CustomerIdentity(kind=IdentityKind.EMAIL, value="bob@example.com")
    assert message.display_name == "Bob Sender"
    assert message.subject == "Re: Your order 77 has shipped"
    assert message.sent_at == datetime(2025, 3, 4, 9, 59, 30, tzinfo=UTC)
    assert message.text == "Hi,\n\nthe parcel arrived damaged, photo attached."  # stripped-text, in \n
    assert message.original_text == BODY_PLAIN.replace("\r\n", "\n").strip()
    assert message.thread_refs == ("shipped-77@support.example.com", "order-77@support.example.com")
    (photo,) = message.attachments
    assert photo.kind is AttachmentKind.IMAGE
    assert photo.filename == "parcel-damage-Müller.jpg"  # raw UTF-8, as clients send it
    assert photo.content_type == "image/jpeg"
    assert photo.media_id == "CAL4Rb3Hdf9Q=x7vKy2m@mail.gmail.com/attachment-1"
    assert parsed.replay_keys == (TOKEN,)


def test_urlencoded_forward_without_attachments() -> None:
    request = urlencoded(forward_fields())

    CHANNEL.verify(request)
    parsed = CHANNEL.parse(request)

    (message,) = parsed.messages
    assert message.external_id == "CAL4Rb3Hdf9Q=x7vKy2m@mail.gmail.com"
    assert message.sender.value == "bob@example.com"
    assert message.attachments == ()
    assert parsed.replay_keys == (TOKEN,)


def test_stripped_text_is_preferred_to_our_own_stripping() -> None:
    mailgun_cut = "Hi, the parcel arrived damaged (as Mailgun cut it)."

    parsed = CHANNEL.parse(urlencoded(forward_fields(**{"stripped-text": mailgun_cut})))

    assert parsed.messages[0].text == mailgun_cut


def test_without_stripped_text_the_body_is_stripped_here() -> None:
    parsed = CHANNEL.parse(urlencoded(forward_fields(**{"stripped-text": ""})))

    assert parsed.messages[0].text == "Hi,\n\nthe parcel arrived damaged, photo attached."


def test_an_html_only_forward_is_shown_as_text() -> None:
    fields = forward_fields(
        **{"body-plain": "", "stripped-text": None, "body-html": "<p>Where is <b>my</b> parcel?</p>"}
    )

    message = CHANNEL.parse(urlencoded(fields)).messages[0]

    assert message.text == "Where is my parcel?"


def test_the_from_address_is_the_customer_and_sender_the_fallback() -> None:
    # MAIL FROM of a mailing list or a bulk sender is a per-message bounce address: not the customer.
    verp = forward_fields(sender="bounces+8f2a=example.com@lists.example.net")
    assert CHANNEL.parse(urlencoded(verp)).messages[0].sender.value == "bob@example.com"

    headers_without_from = json.dumps([h for h in MESSAGE_HEADERS if h[0] != "From"])
    only_sender = forward_fields(**{"from": None, "message-headers": headers_without_from})
    assert CHANNEL.parse(urlencoded(only_sender)).messages[0].sender.value == "bob@example.com"


def test_message_id_is_read_from_message_headers_when_not_a_field() -> None:
    parsed = CHANNEL.parse(urlencoded(forward_fields(**{"Message-Id": None})))

    assert parsed.messages[0].external_id == "CAL4Rb3Hdf9Q=x7vKy2m@mail.gmail.com"


def test_a_forward_without_any_message_id_gets_a_stable_derived_id() -> None:
    headers = json.dumps([h for h in MESSAGE_HEADERS if h[0] != "Message-Id"])
    first = forward_fields(**{"Message-Id": None, "message-headers": headers})
    retry = {**first, "token": "f" * 50, "timestamp": str(TIMESTAMP + 60)}
    retry["signature"] = sign(TIMESTAMP + 60, "f" * 50)

    one = CHANNEL.parse(urlencoded(first)).messages[0].external_id
    two = CHANNEL.parse(urlencoded(retry)).messages[0].external_id

    assert one.startswith("sha256:")
    assert one == two


def test_a_stale_timestamp_is_refused_even_when_signed() -> None:
    late = urlencoded(forward_fields(), received_at=SENT + timedelta(seconds=301))
    early = urlencoded(forward_fields(), received_at=SENT - timedelta(seconds=301))

    for request in (late, early):
        with pytest.raises(SignatureInvalid, match="stale timestamp"):
            CHANNEL.verify(request)
    CHANNEL.verify(urlencoded(forward_fields(), received_at=SENT + timedelta(seconds=300)))


@pytest.mark.parametrize(
    "overrides",
    [
        {"signature": sign(TIMESTAMP, TOKEN, key="another-key")},
        {"signature": sign(TIMESTAMP, TOKEN)[:-1] + "0"},
        {"token": "a" * 50},  # the signature of another token
        {"timestamp": str(TIMESTAMP + 1)},  # the signature of another time
        {"signature": None},
        {"token": None},
        {"timestamp": None},
    ],
    ids=["other-key", "one-digit-off", "other-token", "other-timestamp", "no-sig", "no-token", "no-ts"],
)
def test_a_wrong_or_missing_signature_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(SignatureInvalid):
        CHANNEL.verify(with_photo(**overrides))


def test_a_repeated_signature_field_is_refused() -> None:
    body = httpx.Request("POST", URL, data=forward_fields()).read() + b"&token=" + b"c" * 50
    request = WebhookRequest(
        body=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
        url=URL,
        received_at=SENT,
    )

    with pytest.raises(SignatureInvalid):
        CHANNEL.verify(request)


def test_a_body_that_is_no_form_is_refused_as_unsigned() -> None:
    request = WebhookRequest(
        body=b'{"timestamp": 1}', headers={"content-type": "application/json"}, url=URL, received_at=SENT
    )

    with pytest.raises(SignatureInvalid):
        CHANNEL.verify(request)


def test_attachment_count_must_match_the_files() -> None:
    with pytest.raises(PayloadInvalid, match="attachment-count"):
        CHANNEL.parse(with_photo(**{"attachment-count": "2"}))


def test_a_forward_without_any_address_is_refused() -> None:
    headers = json.dumps([h for h in MESSAGE_HEADERS if h[0] != "From"])
    fields = forward_fields(**{"from": None, "sender": "", "message-headers": headers})

    with pytest.raises(PayloadInvalid, match="from"):
        CHANNEL.parse(urlencoded(fields))


def test_malformed_message_headers_are_refused() -> None:
    with pytest.raises(PayloadInvalid, match="message-headers"):
        CHANNEL.parse(urlencoded(forward_fields(**{"message-headers": "{not json"})))


def test_the_signing_key_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="signing key"):
        MailgunChannel(signing_key="", max_age_s=300)


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=400),
    content_type=st.sampled_from(
        [
            "multipart/form-data; boundary=XyZ",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
        ]
    ),
)
def test_any_body_is_a_signature_or_payload_error_never_another(body: bytes, content_type: str) -> None:
    request = WebhookRequest(body=body, headers={"content-type": content_type}, url=URL, received_at=SENT)
    with pytest.raises(SignatureInvalid):
        CHANNEL.verify(request)
    with contextlib.suppress(PayloadInvalid):
        CHANNEL.parse(request)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=2000), noise=st.binary(max_size=32))
def test_a_damaged_multipart_forward_is_parsed_or_refused(cut: int, noise: bytes) -> None:
    request = with_photo()
    damaged = WebhookRequest(
        body=request.body[:cut] + noise + request.body[cut + len(noise) :],
        headers=request.headers,
        url=URL,
        received_at=request.received_at,
    )
    with contextlib.suppress(PayloadInvalid):
        CHANNEL.parse(damaged)
    with contextlib.suppress(SignatureInvalid):
        CHANNEL.verify(damaged)


# --- replies through the messages API ------------------------------------------------------------------------
# https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages

API_KEY = "key-0123456789abcdef0123456789abcdef"
FROM = "Support <support@example.com>"
SENDER = MailgunSender(
    api_key=API_KEY, domain="mg.example.com", api_base="https://api.eu.mailgun.net/", from_address=FROM
)


def test_build_posts_the_reply_to_the_domains_messages_with_basic_auth_and_threading_headers() -> None:
    request = SENDER.build(reply())
    assert (request.method, str(request.url)) == (
        "POST",
        "https://api.eu.mailgun.net/v3/mg.example.com/messages",
    )
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic", f"api:{API_KEY}")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(request.content.decode())) == {
        "from": FROM,
        "to": "jane.doe@example.org",
        "subject": "Re: Order 1234 has not arrived",
        "text": "Hello Jane,\n\nyour replacement ships today.\n\nKind regards, Support",
        "h:Message-ID": "<0b6f3c1e-8d0a-4f3e-9a51-2c7d4e5f6a7b@example.com>",
        "h:In-Reply-To": "<CAF=7mA3xQ+ZK1b9nY0@mail.gmail.com>",
        "h:References": "<first-0001@example.org> <CAF=7mA3xQ+ZK1b9nY0@mail.gmail.com>",
    }


def test_build_leaves_out_threading_headers_a_reply_cannot_carry() -> None:
    request = SENDER.build(reply(subject=None, in_reply_to="bad id\r\nBcc: x@evil.example", references=()))
    fields = dict(parse_qsl(request.content.decode()))
    assert fields["subject"] == "Your conversation with us"
    assert not {"h:In-Reply-To", "h:References"} & fields.keys()


@pytest.mark.parametrize("recipient", ["not an address", "a@example.com, b@example.com", ""])
def test_build_refuses_anything_but_one_recipient(recipient: str) -> None:
    with pytest.raises(ValueError, match="address"):
        SENDER.build(reply(recipient=recipient))


def test_a_queued_message_is_sent_with_its_message_id() -> None:
    answer = {"id": "<6f1c1b1e-0000-4000-8000-000000000001@example.com>", "message": "Queued. Thank you."}
    outcome = SENDER.outcome(httpx.Response(200, json=answer))
    assert outcome == SendOutcome(
        SendResult.SENT, external_id="6f1c1b1e-0000-4000-8000-000000000001@example.com"
    )


@pytest.mark.parametrize(
    ("response", "result", "retry_after"),
    [
        (
            httpx.Response(429, json={"message": "Too many requests"}, headers={"Retry-After": "20"}),
            "retry",
            20.0,
        ),
        (httpx.Response(500, json={"message": "Internal Server Error"}), "retry", None),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), "retry", None),
        (httpx.Response(400, json={"message": "to parameter is not a valid address"}), "failed", None),
        (httpx.Response(401, text="Forbidden"), "failed", None),
        (httpx.Response(404, json={"message": "Domain not found: mg.example.com"}), "failed", None),
    ],
)
def test_throttling_and_server_errors_are_retried_other_refusals_are_final(
    response: httpx.Response, result: str, retry_after: float | None
) -> None:
    outcome = SENDER.outcome(response)
    assert (outcome.result, outcome.retry_after) == (SendResult(result), retry_after)
    assert outcome.error_reason  # Mailgun's message, or the body it sent
    if outcome.result is SendResult.FAILED:
        assert outcome.error_code == str(response.status_code)
