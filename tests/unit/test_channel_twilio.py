"""The Twilio SMS/MMS adapter against Twilio's documented payloads, with every signature computed by the
twilio package's own ``RequestValidator`` (the reference implementation), never by the code under test."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from switchboard_common.events import AttachmentKind, Channel, CustomerIdentity, DeliveryState, IdentityKind
from switchboard_ingest.channels.base import (
    OutboundMessage,
    PayloadInvalid,
    SendResult,
    SignatureInvalid,
    WebhookRequest,
)
from switchboard_ingest.channels.twilio import TwilioSmsChannel, public_url

ACCOUNT_SID = "AC" + "1" * 32
TOKEN = "0123456789abcdef0123456789abcdef"
ORACLE = RequestValidator(TOKEN)
URL = "https://hooks.example.com/webhooks/twilio/sms"

# An incoming SMS as Twilio posts it: the parameters of "Twilio's request to your incoming message Webhook
# URL" (https://www.twilio.com/docs/messaging/guides/webhook-request), in the documented shapes.
INBOUND_SMS = {
    "ToCountry": "US",
    "ToState": "CA",
    "SmsMessageSid": "SM" + "a" * 32,
    "NumMedia": "0",
    "ToCity": "SAN FRANCISCO",
    "FromZip": "02908",
    "SmsSid": "SM" + "a" * 32,
    "FromState": "RI",
    "SmsStatus": "received",
    "FromCity": "PROVIDENCE",
    "Body": "Hi, my order #123 has not arrived yet",
    "FromCountry": "US",
    "To": "+14155550100",
    "MessagingServiceSid": "MG" + "2" * 32,
    "ToZip": "94105",
    "NumSegments": "1",
    "MessageSid": "SM" + "a" * 32,
    "AccountSid": ACCOUNT_SID,
    "From": "+14017122661",
    "ApiVersion": "2010-04-01",
}

# The same webhook for an MMS: NumMedia, then MediaUrl{N} and MediaContentType{N} for each item (same page).
INBOUND_MMS = {
    **INBOUND_SMS,
    "MessageSid": "MM" + "b" * 32,
    "SmsMessageSid": "MM" + "b" * 32,
    "SmsSid": "MM" + "b" * 32,
    "Body": "",
    "NumMedia": "2",
    "MediaContentType0": "image/jpeg",
    "MediaUrl0": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'b' * 32}/Media/ME{'c' * 32}",
    "MediaContentType1": "application/pdf",
    "MediaUrl1": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'b' * 32}/Media/ME{'d' * 32}",
}

SENT_SID = "SM" + "e" * 32


def status_callback(status: str, **extra: str) -> dict[str, str]:
    """A status callback as described in "Track the Message Status of Outbound Messages"
    (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status): a subset of the webhook
    parameters plus MessageStatus (and ErrorCode when it failed); RawDlrDoneDate comes with
    delivered/undelivered SMS (Twilio changelog, Feb. 14, 2023)."""
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": "+14155550100",
        "MessageSid": SENT_SID,
        "MessageStatus": status,
        "SmsSid": SENT_SID,
        "SmsStatus": status,
        "To": "+14017122661",
        **extra,
    }


def channel(
    status_callback_url: str | None = "https://hooks.example.com/webhooks/twilio/status",
) -> TwilioSmsChannel:
    return TwilioSmsChannel(
        account_sid=ACCOUNT_SID,
        auth_token=TOKEN,
        from_number="+14155550100",
        api_base="https://api.twilio.test",
        status_callback_url=status_callback_url,
    )


def form_request(called_url: str, params: dict[str, str], signature: str | None) -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    return WebhookRequest(body=urlencode(params).encode(), headers=headers, url=called_url)


def signed(params: dict[str, str], *, signed_url: str = URL, called_url: str | None = None) -> WebhookRequest:
    return form_request(called_url or signed_url, params, ORACLE.compute_signature(signed_url, params))


# --- verify ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [INBOUND_SMS, INBOUND_MMS], ids=["sms", "mms-with-empty-body"])
def test_a_request_signed_by_twilio_is_accepted(params: dict[str, str]) -> None:
    # The MMS's empty Body is signed too: blank values count.
    channel().verify(signed(params))


def test_twilios_published_test_vector_is_accepted() -> None:
    # Twilio's worked example (webhooks-security docs and every SDK's RequestValidator tests).
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    documented = TwilioSmsChannel(
        account_sid=ACCOUNT_SID, auth_token="12345", from_number="+1", api_base="x", status_callback_url=None
    )
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    documented.verify(form_request(url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="))


def test_a_wrong_signature_is_refused() -> None:
    forged = RequestValidator("another-token").compute_signature(URL, INBOUND_SMS)
    with pytest.raises(SignatureInvalid):
        channel().verify(form_request(URL, INBOUND_SMS, forged))


def test_a_missing_signature_header_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="missing"):
        channel().verify(form_request(URL, INBOUND_SMS, None))


def test_a_parameter_changed_after_signing_is_refused() -> None:
    request = signed(INBOUND_SMS)
    tampered = form_request(
        URL, {**INBOUND_SMS, "Body": "Please refund me"}, request.headers["x-twilio-signature"]
    )
    with pytest.raises(SignatureInvalid):
        channel().verify(tampered)


def test_an_added_parameter_is_refused() -> None:
    request = signed(INBOUND_SMS)
    tampered = form_request(URL, {**INBOUND_SMS, "Extra": "1"}, request.headers["x-twilio-signature"])
    with pytest.raises(SignatureInvalid):
        channel().verify(tampered)


@pytest.mark.parametrize(
    ("signed_url", "called_url"),
    [
        (
            "https://hooks.example.com:443/webhooks/twilio/sms",
            "https://hooks.example.com/webhooks/twilio/sms",
        ),
        (
            "https://hooks.example.com/webhooks/twilio/sms",
            "https://hooks.example.com:443/webhooks/twilio/sms",
        ),
        ("http://hooks.example.com:80/webhooks/twilio/sms", "http://hooks.example.com/webhooks/twilio/sms"),
        ("http://hooks.example.com/webhooks/twilio/sms", "http://hooks.example.com:80/webhooks/twilio/sms"),
        (
            "https://hooks.example.com:8443/webhooks/twilio/sms",
            "https://hooks.example.com:8443/webhooks/twilio/sms",
        ),
    ],
)
def test_the_url_is_accepted_with_or_without_its_port_as_twilios_validator_does(
    signed_url: str, called_url: str
) -> None:
    request = signed(INBOUND_SMS, signed_url=signed_url, called_url=called_url)
    assert ORACLE.validate(called_url, INBOUND_SMS, request.headers["x-twilio-signature"])
    channel().verify(request)


def test_a_signature_for_another_port_is_refused() -> None:
    signed_url = "https://hooks.example.com:8443/webhooks/twilio/sms"
    called_url = "https://hooks.example.com:9443/webhooks/twilio/sms"
    request = signed(INBOUND_SMS, signed_url=signed_url, called_url=called_url)
    assert not ORACLE.validate(called_url, INBOUND_SMS, request.headers["x-twilio-signature"])
    with pytest.raises(SignatureInvalid):
        channel().verify(request)


def test_the_query_string_is_part_of_the_signed_url() -> None:
    with_query = URL + "?tenant=acme&x=1"
    channel().verify(signed(INBOUND_SMS, signed_url=with_query))
    with pytest.raises(SignatureInvalid):
        channel().verify(signed(INBOUND_SMS, signed_url=with_query, called_url=URL + "?tenant=other&x=1"))


def test_repeated_parameters_are_signed_as_twilios_validator_does() -> None:
    # Each name's distinct values, sorted: the validator's MultiDict handling and the SDKs' published
    # vector for it (token "12345").
    body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234"
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    expected = RequestValidator("12345").compute_signature(url, _MultiDict(parse_qs(body.decode())))
    assert expected == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    documented = TwilioSmsChannel(
        account_sid=ACCOUNT_SID, auth_token="12345", from_number="+1", api_base="x", status_callback_url=None
    )
    documented.verify(WebhookRequest(body=body, headers={"x-twilio-signature": expected}, url=url))


def test_a_json_body_is_covered_by_its_body_sha256() -> None:
    body = json.dumps({"MessageSid": SENT_SID, "MessageStatus": "delivered"}).encode()
    url = f"{URL}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = ORACLE.compute_signature(url, {})
    assert ORACLE.validate(url, body.decode(), signature)
    headers = {"x-twilio-signature": signature, "content-type": "application/json"}
    channel().verify(WebhookRequest(body=body, headers=headers, url=url))

    changed = body.replace(b"delivered", b"read")
    assert not ORACLE.validate(url, changed.decode(), signature)
    with pytest.raises(SignatureInvalid, match="bodySHA256"):
        channel().verify(WebhookRequest(body=changed, headers=headers, url=url))


@settings(max_examples=60, deadline=None)
@given(
    params=st.dictionaries(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
        st.text(st.characters(codec="utf-8"), max_size=12),
        max_size=5,
    ),
    signed_url=st.sampled_from(
        [URL, "https://hooks.example.com:443/webhooks/twilio/sms", URL + "?a=1&b=%20"]
    ),
    called_url=st.sampled_from(
        [URL, "https://hooks.example.com:443/webhooks/twilio/sms", URL + "?a=1&b=%20"]
    ),
    tamper=st.booleans(),
)
def test_verify_agrees_with_twilios_validator(
    params: dict[str, str], signed_url: str, called_url: str, tamper: bool
) -> None:
    signature = ORACLE.compute_signature(signed_url, params)
    sent = {**params, "Body": params.get("Body", "") + "!"} if tamper else params
    expected = ORACLE.validate(called_url, sent, signature)
    try:
        channel().verify(form_request(called_url, sent, signature))
        accepted = True
    except SignatureInvalid:
        accepted = False
    assert accepted == expected


# --- parse: incoming messages ---------------------------------------------------------------------------


def test_an_incoming_sms_becomes_a_message_from_the_senders_phone() -> None:
    parsed = channel().parse(signed(INBOUND_SMS))
    assert parsed.statuses == ()
    (message,) = parsed.messages
    assert message.channel is Channel.SMS
    assert message.external_id == INBOUND_SMS["MessageSid"]
    assert message.sender == CustomerIdentity(kind=IdentityKind.PHONE, value="+14017122661")
    assert message.text == "Hi, my order #123 has not arrived yet"
    assert message.attachments == ()


def test_the_sender_is_normalized_to_e164() -> None:
    (message,) = channel().parse(signed({**INBOUND_SMS, "From": "+1 (401) 712-2661"})).messages
    assert message.sender.value == "+14017122661"


def test_an_mms_keeps_each_media_url_and_content_type() -> None:
    (message,) = channel().parse(signed(INBOUND_MMS)).messages
    assert message.text == ""
    assert [(a.kind, a.url, a.content_type) for a in message.attachments] == [
        (AttachmentKind.IMAGE, INBOUND_MMS["MediaUrl0"], "image/jpeg"),
        (AttachmentKind.DOCUMENT, INBOUND_MMS["MediaUrl1"], "application/pdf"),
    ]


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("audio/amr", AttachmentKind.AUDIO),
        ("video/mp4", AttachmentKind.VIDEO),
        ("text/vcard", AttachmentKind.DOCUMENT),
        ("model/gltf+json", AttachmentKind.FILE),
    ],
)
def test_the_attachment_kind_follows_the_content_type(content_type: str, kind: AttachmentKind) -> None:
    params = {**INBOUND_MMS, "NumMedia": "1", "MediaContentType0": content_type}
    del params["MediaUrl1"], params["MediaContentType1"]
    (message,) = channel().parse(signed(params)).messages
    assert [a.kind for a in message.attachments] == [kind]


def test_a_whatsapp_profile_name_becomes_the_display_name() -> None:
    (message,) = channel().parse(signed({**INBOUND_SMS, "ProfileName": "Ada"})).messages
    assert message.display_name == "Ada"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({k: v for k, v in INBOUND_SMS.items() if k != "MessageSid"}, "MessageSid"),
        ({**INBOUND_SMS, "From": "not a phone"}, "From"),
        ({**INBOUND_SMS, "From": "whatsapp:+14017122661"}, "From"),
        ({k: v for k, v in INBOUND_SMS.items() if k != "From"}, "From"),
        ({**INBOUND_SMS, "NumMedia": "two"}, "NumMedia"),
        ({**INBOUND_SMS, "NumMedia": "1"}, "MediaUrl0"),
    ],
)
def test_a_malformed_message_is_refused_with_a_reason(params: dict[str, str], reason: str) -> None:
    with pytest.raises(PayloadInvalid, match=reason):
        channel().parse(signed(params))


def test_a_repeated_parameter_is_refused() -> None:
    body = urlencode(INBOUND_SMS).encode() + b"&From=%2B15005550006"
    with pytest.raises(PayloadInvalid, match="From appears more than once"):
        channel().parse(WebhookRequest(body=body, headers={}, url=URL))


def test_a_body_that_is_not_a_form_is_refused() -> None:
    with pytest.raises(PayloadInvalid, match="form-encoded"):
        channel().parse(WebhookRequest(body=b'{"MessageSid": "SM1"}', headers={}, url=URL))


# --- parse: status callbacks ----------------------------------------------------------------------------


def test_a_delivered_callback_becomes_a_delivered_status() -> None:
    parsed = channel().parse(signed(status_callback("delivered", RawDlrDoneDate="2302141120")))
    assert parsed.messages == ()
    (status,) = parsed.statuses
    assert (status.channel, status.external_id, status.status) == (
        Channel.SMS,
        SENT_SID,
        DeliveryState.DELIVERED,
    )
    assert (status.at, status.error_code, status.error_reason) == (None, None, None)


def test_an_undelivered_callback_is_a_failure_with_twilios_error_code() -> None:
    params = status_callback("undelivered", ErrorCode="30003", ErrorMessage="Unreachable destination handset")
    (status,) = channel().parse(signed(params)).statuses
    assert status.status is DeliveryState.FAILED
    assert (status.error_code, status.error_reason) == ("30003", "Unreachable destination handset")


def test_a_failed_callback_without_error_message_names_the_status() -> None:
    (status,) = channel().parse(signed(status_callback("failed", ErrorCode="30007"))).statuses
    assert (status.status, status.error_code, status.error_reason) == (
        DeliveryState.FAILED,
        "30007",
        "failed",
    )


@pytest.mark.parametrize(("twilio", "state"), [("sent", DeliveryState.SENT), ("read", DeliveryState.READ)])
def test_sent_and_read_callbacks_map_to_their_states(twilio: str, state: DeliveryState) -> None:
    (status,) = channel().parse(signed(status_callback(twilio))).statuses
    assert status.status is state


@pytest.mark.parametrize("twilio", ["queued", "accepted", "sending", "scheduled", "some_future_status"])
def test_callbacks_that_say_nothing_new_are_skipped(twilio: str) -> None:
    parsed = channel().parse(signed(status_callback(twilio)))
    assert (parsed.messages, parsed.statuses) == ((), ())


def test_a_status_callback_without_message_sid_is_refused() -> None:
    params = {k: v for k, v in status_callback("delivered").items() if k != "MessageSid"}
    with pytest.raises(PayloadInvalid, match="MessageSid"):
        channel().parse(signed(params))


# --- build and outcome ----------------------------------------------------------------------------------


def test_build_posts_the_form_to_the_messages_resource_with_basic_auth() -> None:
    message = OutboundMessage(
        uuid.uuid4(), Channel.SMS, recipient="+14017122661", text="Your order ships today"
    )
    request = channel().build(message)
    assert request.method == "POST"
    assert str(request.url) == f"https://api.twilio.test/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    scheme, credentials = request.headers["authorization"].split(" ")
    assert (scheme, base64.b64decode(credentials).decode()) == ("Basic", f"{ACCOUNT_SID}:{TOKEN}")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "To": ["+14017122661"],
        "From": ["+14155550100"],
        "Body": ["Your order ships today"],
        "StatusCallback": ["https://hooks.example.com/webhooks/twilio/status"],
    }


def test_build_leaves_out_the_status_callback_when_none_is_configured() -> None:
    message = OutboundMessage(uuid.uuid4(), Channel.SMS, recipient="+14017122661", text="hi")
    assert "StatusCallback" not in parse_qs(channel(None).build(message).content.decode())


def test_build_sends_a_messaging_service_sid_as_such() -> None:
    service = TwilioSmsChannel(
        account_sid=ACCOUNT_SID,
        auth_token=TOKEN,
        from_number="MG" + "2" * 32,
        api_base="https://api.twilio.test/",
        status_callback_url=None,
    )
    fields = parse_qs(
        service.build(OutboundMessage(uuid.uuid4(), Channel.SMS, "+14017122661", "hi")).content.decode()
    )
    assert fields["MessagingServiceSid"] == ["MG" + "2" * 32]
    assert "From" not in fields


def test_a_201_is_sent_with_the_message_sid() -> None:
    # The Message resource as the create call answers it (https://www.twilio.com/docs/messaging/api/message-resource).
    created = {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": "Your order ships today",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": "+14155550100",
        "num_media": "0",
        "num_segments": "1",
        "sid": SENT_SID,
        "status": "queued",
        "to": "+14017122661",
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SENT_SID}.json",
    }
    outcome = channel().outcome(httpx.Response(201, json=created))
    assert (outcome.result, outcome.external_id) == (SendResult.SENT, SENT_SID)


def test_a_429_is_retried_after_the_time_twilio_asks() -> None:
    error = {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    outcome = channel().outcome(httpx.Response(429, json=error, headers={"Retry-After": "30"}))
    assert (outcome.result, outcome.retry_after, outcome.error_code) == (SendResult.RETRY, 30.0, "20429")


def test_a_503_without_a_json_body_is_retried() -> None:
    outcome = channel().outcome(httpx.Response(503, text="<html>Service Unavailable</html>"))
    assert (outcome.result, outcome.retry_after, outcome.error_reason) == (SendResult.RETRY, None, "HTTP 503")


def test_an_invalid_to_number_is_a_permanent_failure_with_twilios_code() -> None:
    error = {
        "code": 21211,
        "message": "The 'To' number +1555 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }
    outcome = channel().outcome(httpx.Response(400, json=error))
    assert outcome.result is SendResult.FAILED
    assert (outcome.error_code, outcome.error_reason) == ("21211", error["message"])


# --- public_url -----------------------------------------------------------------------------------------


def test_public_url_joins_the_configured_base_with_the_path_and_query() -> None:
    seen = "http://ingest:8000/webhooks/twilio/sms?tenant=acme"
    assert (
        public_url("https://hooks.example.com/", "/webhooks/twilio/sms", "tenant=acme", seen)
        == "https://hooks.example.com/webhooks/twilio/sms?tenant=acme"
    )
    assert public_url("https://hooks.example.com", "/webhooks/twilio/sms", "", seen) == URL


def test_public_url_falls_back_to_the_url_the_server_saw() -> None:
    seen = "http://ingest:8000/webhooks/twilio/sms"
    assert public_url(None, "/webhooks/twilio/sms", "", seen) == seen
    assert public_url("", "/webhooks/twilio/sms", "", seen) == seen


def test_behind_a_proxy_only_the_public_url_verifies() -> None:
    seen = "http://ingest:8000/webhooks/twilio/sms"
    request = signed(INBOUND_SMS, signed_url=URL, called_url=seen)
    with pytest.raises(SignatureInvalid):
        channel().verify(request)
    called = public_url("https://hooks.example.com", "/webhooks/twilio/sms", "", seen)
    channel().verify(WebhookRequest(body=request.body, headers=request.headers, url=called))


def test_an_empty_auth_token_is_refused() -> None:
    with pytest.raises(ValueError, match="auth token"):
        TwilioSmsChannel(
            account_sid=ACCOUNT_SID, auth_token="", from_number="+1", api_base="x", status_callback_url=None
        )


class _MultiDict(dict[str, list[str]]):
    """The multi-valued form the validator reads through ``getall`` (as Flask's MultiDict)."""

    def getall(self, name: str) -> list[str]:
        return self[name]
