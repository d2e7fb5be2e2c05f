"""The Twilio Voice adapter against Twilio's documented payloads. Every signature is computed by the twilio
package's own ``RequestValidator`` and the TwiML is compared with what the package's ``VoiceResponse``
builds: both are the reference implementation, never the code under test."""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.twiml.voice_response import VoiceResponse  # type: ignore[import-untyped]

from switchboard_common.events import AttachmentKind, Channel, CustomerIdentity, DeliveryState, IdentityKind
from switchboard_ingest.channels.base import (
    OutboundMessage,
    PayloadInvalid,
    SendResult,
    SignatureInvalid,
    WebhookRequest,
)
from switchboard_ingest.channels.twilio_voice import (
    CallerUnidentified,
    TwilioVoiceChannel,
    wait_sentence,
)

ACCOUNT_SID = "AC" + "1" * 32
TOKEN = "0123456789abcdef0123456789abcdef"
ORACLE = RequestValidator(TOKEN)
PUBLIC = "https://hooks.example.com"
VOICE_URL = f"{PUBLIC}/webhooks/twilio/voice"
OUR_NUMBER = "+14155550100"
CALLER = "+14017122661"
CALL_SID = "CA" + "a" * 32
RECORDING_SID = "RE" + "b" * 32
TRANSCRIPTION_SID = "TR" + "c" * 32
RECORDING_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}"

# An incoming call as Twilio posts it to the number's voice webhook: the parameters of "Twilio's request to
# your application" (https://www.twilio.com/docs/usage/webhooks/voice-webhooks#incoming-voice-call and
# https://www.twilio.com/docs/voice/twiml#request-parameters), in the documented shapes.
INBOUND_CALL = {
    "AccountSid": ACCOUNT_SID,
    "ApiVersion": "2010-04-01",
    "CallSid": CALL_SID,
    "CallStatus": "ringing",
    "Called": OUR_NUMBER,
    "CalledCity": "SAN FRANCISCO",
    "CalledCountry": "US",
    "CalledState": "CA",
    "CalledZip": "94105",
    "Caller": CALLER,
    "CallerCity": "PROVIDENCE",
    "CallerCountry": "US",
    "CallerState": "RI",
    "CallerZip": "02908",
    "Direction": "inbound",
    "From": CALLER,
    "FromCity": "PROVIDENCE",
    "FromCountry": "US",
    "FromState": "RI",
    "FromZip": "02908",
    "To": OUR_NUMBER,
    "ToCity": "SAN FRANCISCO",
    "ToCountry": "US",
    "ToState": "CA",
    "ToZip": "94105",
}

# A recordingStatusCallback request (https://www.twilio.com/docs/voice/api/recording#recordingstatuscallback
# and https://www.twilio.com/docs/voice/twiml/record#recordingstatuscallback): no From, no To.
RECORDING_COMPLETED = {
    "AccountSid": ACCOUNT_SID,
    "CallSid": CALL_SID,
    "RecordingSid": RECORDING_SID,
    "RecordingUrl": RECORDING_URL,
    "RecordingStatus": "completed",
    "RecordingDuration": "17",
    "RecordingChannels": "1",
    "RecordingStartTime": "Mon, 22 Aug 2011 15:23:11 +0000",
    "RecordingSource": "RecordVerb",
    "ErrorCode": "0",
}

# A transcribeCallback request (https://www.twilio.com/docs/voice/twiml/record#transcribecallback).
TRANSCRIPTION_COMPLETED = {
    "AccountSid": ACCOUNT_SID,
    "CallSid": CALL_SID,
    "TranscriptionSid": TRANSCRIPTION_SID,
    "TranscriptionText": "Hi, this is Ada, my order 123 has not arrived. Please call me back.",
    "TranscriptionStatus": "completed",
    "TranscriptionUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Transcriptions/{TRANSCRIPTION_SID}",
    "RecordingSid": RECORDING_SID,
    "RecordingUrl": RECORDING_URL,
}


def channel(*, max_recording_s: int = 120) -> TwilioVoiceChannel:
    return TwilioVoiceChannel(
        account_sid=ACCOUNT_SID,
        auth_token=TOKEN,
        from_number=OUR_NUMBER,
        api_base="https://api.twilio.test",
        public_base_url=PUBLIC + "/",
        max_recording_s=max_recording_s,
    )


def form_request(called_url: str, params: dict[str, str], signature: str | None) -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    query = {k: v[0] for k, v in parse_qs(urlparse(called_url).query).items()}
    return WebhookRequest(body=urlencode(params).encode(), headers=headers, url=called_url, query=query)


def signed(params: dict[str, str], url: str, *, called_url: str | None = None) -> WebhookRequest:
    return form_request(called_url or url, params, ORACLE.compute_signature(url, params))


def twiml_tree(document: str) -> ET.Element:
    # Our own output and the twilio package's, not untrusted input: the stdlib parser is fine here.
    return ET.fromstring(document)  # noqa: S314


def record_element(twiml: str) -> ET.Element:
    record = twiml_tree(twiml).find("Record")
    assert record is not None
    return record


def callback_urls(caller: str = CALLER) -> tuple[str, str]:
    """The recording and transcription callback URLs exactly as the TwiML gives them to Twilio."""
    record = record_element(channel().answer(caller, 60))
    return record.attrib["recordingStatusCallback"], record.attrib["transcribeCallback"]


# --- verify ---------------------------------------------------------------------------------------------


def test_an_inbound_call_signed_by_twilio_is_accepted() -> None:
    channel().verify(signed(INBOUND_CALL, VOICE_URL))


@pytest.mark.parametrize("index", [0, 1], ids=["recording", "transcription"])
def test_a_callback_signed_on_its_url_with_the_caller_query_is_accepted(index: int) -> None:
    url = callback_urls()[index]
    params = RECORDING_COMPLETED if index == 0 else TRANSCRIPTION_COMPLETED
    request = signed(params, url)
    assert ORACLE.validate(url, params, request.headers["x-twilio-signature"])
    channel().verify(request)


def test_a_callback_whose_caller_was_changed_after_signing_is_refused() -> None:
    url = callback_urls()[0]
    forged_url = url.replace("%2B14017122661", "%2B14155559999")
    assert forged_url != url
    request = signed(RECORDING_COMPLETED, url, called_url=forged_url)
    assert not ORACLE.validate(forged_url, RECORDING_COMPLETED, request.headers["x-twilio-signature"])
    with pytest.raises(SignatureInvalid):
        channel().verify(request)


def test_a_wrong_signature_is_refused() -> None:
    forged = RequestValidator("another-token").compute_signature(VOICE_URL, INBOUND_CALL)
    with pytest.raises(SignatureInvalid):
        channel().verify(form_request(VOICE_URL, INBOUND_CALL, forged))


def test_a_missing_signature_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="missing"):
        channel().verify(form_request(VOICE_URL, INBOUND_CALL, None))


def test_a_parameter_changed_after_signing_is_refused() -> None:
    signature = signed(INBOUND_CALL, VOICE_URL).headers["x-twilio-signature"]
    with pytest.raises(SignatureInvalid):
        channel().verify(form_request(VOICE_URL, {**INBOUND_CALL, "From": "+14155559999"}, signature))


@pytest.mark.parametrize(
    ("signed_url", "called_url"),
    [
        (f"{PUBLIC}:443/webhooks/twilio/voice", VOICE_URL),
        (VOICE_URL, f"{PUBLIC}:443/webhooks/twilio/voice"),
    ],
)
def test_both_port_variants_are_accepted_as_twilios_validator_does(signed_url: str, called_url: str) -> None:
    request = signed(INBOUND_CALL, signed_url, called_url=called_url)
    assert ORACLE.validate(called_url, INBOUND_CALL, request.headers["x-twilio-signature"])
    channel().verify(request)


# --- parse_call -------------------------------------------------------------------------------------------


def test_an_inbound_call_becomes_a_call_item_from_the_callers_phone() -> None:
    message = channel().parse_call(signed(INBOUND_CALL, VOICE_URL))
    assert message.channel is Channel.VOICE
    assert message.external_id == CALL_SID
    assert message.sender == CustomerIdentity(kind=IdentityKind.PHONE, value=CALLER)
    assert (message.text, message.content_kind, message.display_name) == ("Incoming call", "call", None)
    assert message.attachments == ()


def test_the_caller_name_is_shown_and_kept_verbatim() -> None:
    params = {**INBOUND_CALL, "CallerName": "Ada & <Lovelace>"}
    message = channel().parse_call(signed(params, VOICE_URL))
    assert message.text == "Incoming call from Ada & <Lovelace>"
    assert message.display_name == "Ada & <Lovelace>"


def test_the_caller_is_normalized_to_e164() -> None:
    message = channel().parse_call(signed({**INBOUND_CALL, "From": "+1 (401) 712-2661"}, VOICE_URL))
    assert message.sender.value == CALLER


def test_the_generic_parse_reads_an_inbound_call() -> None:
    (message,) = channel().parse(signed(INBOUND_CALL, VOICE_URL)).messages
    assert (message.external_id, message.content_kind) == (CALL_SID, "call")


@pytest.mark.parametrize(
    "caller",
    [
        "anonymous",
        "Anonymous",
        "+266696687",  # ANONYMOUS on a keypad
        "+86282452253",  # UNAVAILABLE on a keypad: also a possible Chinese number, so named explicitly
        "+8656696",  # UNKNOWN on a keypad, likewise
        "Restricted",
        "",
        "client:alice",
        "sip:alice@example.sip.twilio.com",
        "not a number",
    ],
)
def test_a_call_without_a_number_to_call_back_is_refused_with_a_reason(caller: str) -> None:
    with pytest.raises(CallerUnidentified, match="From") as raised:
        channel().parse_call(signed({**INBOUND_CALL, "From": caller, "Caller": caller}, VOICE_URL))
    assert isinstance(raised.value, PayloadInvalid)  # answered 400 where not handled specially


def test_an_unidentified_caller_hears_why_and_the_call_ends() -> None:
    root = twiml_tree(channel().unidentified())
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert "withheld" in (root[0].text or "")


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({k: v for k, v in INBOUND_CALL.items() if k != "CallSid"}, "CallSid"),
        ({k: v for k, v in INBOUND_CALL.items() if k != "From"}, "From is missing"),
        ({**INBOUND_CALL, "Direction": "outbound-api"}, "not an inbound call"),
    ],
)
def test_a_malformed_call_is_refused_with_a_reason(params: dict[str, str], reason: str) -> None:
    with pytest.raises(PayloadInvalid, match=reason) as raised:
        channel().parse_call(signed(params, VOICE_URL))
    assert not isinstance(raised.value, CallerUnidentified)


def test_a_body_that_is_not_a_form_is_refused() -> None:
    request = WebhookRequest(body=b'{"CallSid": "CA1"}', headers={}, url=VOICE_URL)
    with pytest.raises(PayloadInvalid, match="form-encoded"):
        channel().parse_call(request)


# --- answer (TwiML) ---------------------------------------------------------------------------------------


def test_the_answer_greets_records_and_says_goodbye() -> None:
    root = twiml_tree(channel(max_recording_s=90).answer(CALLER, 125))
    assert root.tag == "Response"
    assert [child.tag for child in root] == ["Say", "Record", "Say", "Hangup"]
    assert "Our expected wait is about 3 minutes." in (root[0].text or "")
    assert root[0].text == (
        "Thank you for calling. Our expected wait is about 3 minutes. "
        "Please leave a message after the beep, and an agent will call you back."
    )
    assert root[1].attrib == {
        "action": f"{PUBLIC}/webhooks/twilio/voice/goodbye",
        "maxLength": "90",
        "playBeep": "true",
        "recordingStatusCallback": f"{PUBLIC}/webhooks/twilio/voice/recording?from=%2B14017122661",
        "recordingStatusCallbackEvent": "completed",
        "transcribe": "true",
        "transcribeCallback": f"{PUBLIC}/webhooks/twilio/voice/transcription?from=%2B14017122661",
    }
    assert root[2].text == "Thank you, goodbye."


def test_the_answer_is_what_twilios_own_twiml_builder_makes() -> None:
    expected = VoiceResponse()
    expected.say(
        "Thank you for calling. We will get back to you as soon as we can. "
        "Please leave a message after the beep, and an agent will call you back."
    )
    expected.record(
        action=f"{PUBLIC}/webhooks/twilio/voice/goodbye",
        max_length=120,
        play_beep=True,
        recording_status_callback=f"{PUBLIC}/webhooks/twilio/voice/recording?from=%2B14017122661",
        recording_status_callback_event="completed",
        transcribe=True,
        transcribe_callback=f"{PUBLIC}/webhooks/twilio/voice/transcription?from=%2B14017122661",
    )
    expected.say("Thank you, goodbye.")
    expected.hangup()
    ours = channel().answer(CALLER, None)
    assert ours.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert _tree(twiml_tree(ours)) == _tree(twiml_tree(str(expected)))


def test_the_callback_urls_carry_the_caller_so_that_it_reads_back_exactly() -> None:
    # A caller with characters that mean something in URLs and XML still round-trips.
    odd = "+1 415&x=<1>"
    recording_url, transcription_url = callback_urls(odd)
    for url in (recording_url, transcription_url):
        assert parse_qs(urlparse(url).query) == {"from": [odd]}
    assert "&amp;" not in recording_url  # the XML escaping was undone by the parser, as Twilio's does


@pytest.mark.parametrize(
    ("seconds", "sentence"),
    [
        (None, "We will get back to you as soon as we can."),
        (0, "Our expected wait is about 1 minute."),
        (30, "Our expected wait is about 1 minute."),
        (60, "Our expected wait is about 1 minute."),
        (61, "Our expected wait is about 2 minutes."),
        (125, "Our expected wait is about 3 minutes."),
        (3540, "Our expected wait is about 59 minutes."),
        (3541, "Our expected wait is about 1 hour."),
        (3600, "Our expected wait is about 1 hour."),
        (3601, "Our expected wait is about an hour and a half."),
        (5400, "Our expected wait is about an hour and a half."),
        (5401, "Our expected wait is about 2 hours."),
        (9000, "Our expected wait is about 2 and a half hours."),
    ],
)
def test_the_expected_wait_is_rounded_up(seconds: int | None, sentence: str) -> None:
    assert wait_sentence(seconds) == sentence
    greeting = twiml_tree(channel().answer(CALLER, seconds)).find("Say")
    assert greeting is not None and sentence in (greeting.text or "")


def test_a_negative_expected_wait_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        wait_sentence(-1)


def test_goodbye_thanks_and_hangs_up() -> None:
    root = twiml_tree(channel().goodbye())
    assert [(child.tag, child.text) for child in root] == [("Say", "Thank you, goodbye."), ("Hangup", None)]


# --- parse_recording --------------------------------------------------------------------------------------


def test_a_completed_recording_becomes_a_voicemail_item_from_the_caller_in_the_url() -> None:
    parsed = channel().parse_recording(signed(RECORDING_COMPLETED, callback_urls()[0]))
    assert parsed.statuses == ()
    (message,) = parsed.messages
    assert message.channel is Channel.VOICE
    assert message.external_id == RECORDING_SID
    assert message.sender == CustomerIdentity(kind=IdentityKind.PHONE, value=CALLER)
    assert (message.text, message.content_kind) == ("Voicemail (17 s)", "voicemail")
    ((attachment),) = message.attachments
    assert (attachment.kind, attachment.url, attachment.media_id, attachment.content_type) == (
        AttachmentKind.AUDIO,
        RECORDING_URL,
        RECORDING_SID,
        "audio/x-wav",
    )


def test_the_generic_parse_reads_a_recording_callback() -> None:
    (message,) = channel().parse(signed(RECORDING_COMPLETED, callback_urls()[0])).messages
    assert (message.external_id, message.content_kind) == (RECORDING_SID, "voicemail")


@pytest.mark.parametrize("status", ["absent", "failed", "in-progress"])
def test_a_recording_that_is_not_completed_is_skipped(status: str) -> None:
    params = {**RECORDING_COMPLETED, "RecordingStatus": status, "RecordingDuration": "0"}
    if status == "absent":
        params["ErrorCode"] = "16101"  # too short (Twilio: "Getting Started with Recording Status Callbacks")
    parsed = channel().parse_recording(signed(params, callback_urls()[0]))
    assert (parsed.messages, parsed.statuses) == ((), ())


@pytest.mark.parametrize(
    ("params", "url", "reason"),
    [
        ({k: v for k, v in RECORDING_COMPLETED.items() if k != "RecordingSid"}, None, "RecordingSid"),
        ({k: v for k, v in RECORDING_COMPLETED.items() if k != "RecordingStatus"}, None, "RecordingStatus"),
        ({k: v for k, v in RECORDING_COMPLETED.items() if k != "RecordingUrl"}, None, "RecordingUrl"),
        ({**RECORDING_COMPLETED, "RecordingDuration": "ten"}, None, "RecordingDuration"),
        (RECORDING_COMPLETED, f"{PUBLIC}/webhooks/twilio/voice/recording", "from"),
        (RECORDING_COMPLETED, f"{PUBLIC}/webhooks/twilio/voice/recording?from=", "from"),
        (RECORDING_COMPLETED, f"{PUBLIC}/webhooks/twilio/voice/recording?from=%2B1&from=%2B2", "from"),
    ],
)
def test_a_malformed_recording_callback_is_refused_with_a_reason(
    params: dict[str, str], url: str | None, reason: str
) -> None:
    with pytest.raises(PayloadInvalid, match=reason):
        channel().parse_recording(signed(params, url or callback_urls()[0]))


def test_the_caller_is_read_from_the_signed_url_not_from_a_separate_query_mapping() -> None:
    request = signed(RECORDING_COMPLETED, callback_urls()[0])
    mismatched = WebhookRequest(
        body=request.body, headers=request.headers, url=request.url, query={"from": "+14155559999"}
    )
    (message,) = channel().parse_recording(mismatched).messages
    assert message.sender.value == CALLER


def test_a_recording_callback_naming_no_callable_number_is_refused() -> None:
    url = f"{PUBLIC}/webhooks/twilio/voice/recording?from=anonymous"
    with pytest.raises(CallerUnidentified):
        channel().parse_recording(signed(RECORDING_COMPLETED, url))


# --- parse_transcription ----------------------------------------------------------------------------------


def test_a_completed_transcription_becomes_a_text_item_from_the_caller_in_the_url() -> None:
    parsed = channel().parse_transcription(signed(TRANSCRIPTION_COMPLETED, callback_urls()[1]))
    (message,) = parsed.messages
    assert message.channel is Channel.VOICE
    assert message.external_id == TRANSCRIPTION_SID
    assert message.sender == CustomerIdentity(kind=IdentityKind.PHONE, value=CALLER)
    assert message.text == TRANSCRIPTION_COMPLETED["TranscriptionText"]
    assert message.content_kind == "transcription"
    assert message.attachments == ()


def test_the_generic_parse_reads_a_transcription_callback() -> None:
    (message,) = channel().parse(signed(TRANSCRIPTION_COMPLETED, callback_urls()[1])).messages
    assert (message.external_id, message.content_kind) == (TRANSCRIPTION_SID, "transcription")


@pytest.mark.parametrize(
    "params",
    [
        {**TRANSCRIPTION_COMPLETED, "TranscriptionStatus": "failed", "TranscriptionText": ""},
        {**TRANSCRIPTION_COMPLETED, "TranscriptionStatus": "in-progress"},
        {**TRANSCRIPTION_COMPLETED, "TranscriptionText": "  "},
    ],
    ids=["failed", "in-progress", "completed-but-empty"],
)
def test_a_transcription_without_text_to_show_is_skipped(params: dict[str, str]) -> None:
    parsed = channel().parse_transcription(signed(params, callback_urls()[1]))
    assert (parsed.messages, parsed.statuses) == ((), ())


@pytest.mark.parametrize("missing", ["TranscriptionSid", "TranscriptionStatus"])
def test_a_malformed_transcription_callback_is_refused(missing: str) -> None:
    params = {k: v for k, v in TRANSCRIPTION_COMPLETED.items() if k != missing}
    with pytest.raises(PayloadInvalid, match=missing):
        channel().parse_transcription(signed(params, callback_urls()[1]))


# --- build_call and call_outcome --------------------------------------------------------------------------


def test_build_call_posts_the_calls_resource_with_basic_auth_and_escaped_twiml() -> None:
    say = 'Hello from Tom & Jerry\'s <support>, "re" your order.\x07'
    request = channel().build_call(CALLER, say)
    assert request.method == "POST"
    assert str(request.url) == f"https://api.twilio.test/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    scheme, credentials = request.headers["authorization"].split(" ")
    assert (scheme, base64.b64decode(credentials).decode()) == ("Basic", f"{ACCOUNT_SID}:{TOKEN}")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    fields = parse_qs(request.content.decode())
    assert set(fields) == {"To", "From", "Twiml", "StatusCallback"}
    assert (fields["To"], fields["From"]) == ([CALLER], [OUR_NUMBER])
    assert fields["StatusCallback"] == [f"{PUBLIC}/webhooks/twilio/voice/status"]
    (twiml,) = fields["Twiml"]
    assert "&amp;" in twiml and "&lt;support&gt;" in twiml  # escaped in the document
    root = twiml_tree(twiml)
    # The bell character cannot be carried by XML at all, so it is dropped; the rest reads back verbatim.
    assert [(child.tag, child.text) for child in root] == [("Say", say.rstrip("\x07"))]
    assert root.tag == "Response"


def test_build_delivers_an_agents_reply_as_a_call_that_reads_it() -> None:
    message = OutboundMessage(uuid.uuid4(), Channel.VOICE, recipient=CALLER, text="Your refund is on its way")
    fields = parse_qs(channel().build(message).content.decode())
    root = twiml_tree(fields["Twiml"][0])
    assert (fields["To"], root[0].text) == ([CALLER], "Your refund is on its way")


def test_a_201_is_sent_with_the_call_sid() -> None:
    # The Call resource as the create call answers it
    # (https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource).
    created = {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "direction": "outbound-api",
        "from": OUR_NUMBER,
        "sid": CALL_SID,
        "status": "queued",
        "to": CALLER,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json",
    }
    outcome = channel().call_outcome(httpx.Response(201, json=created))
    assert (outcome.result, outcome.external_id) == (SendResult.SENT, CALL_SID)
    assert channel().outcome(httpx.Response(201, json=created)) == outcome


def test_a_429_is_retried_after_the_time_twilio_asks() -> None:
    error = {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    outcome = channel().call_outcome(httpx.Response(429, json=error, headers={"Retry-After": "12"}))
    assert (outcome.result, outcome.retry_after, outcome.error_code) == (SendResult.RETRY, 12.0, "20429")


def test_an_invalid_number_is_a_permanent_failure_with_twilios_code() -> None:
    error = {
        "code": 21211,
        "message": "Invalid 'To' Phone Number: +1555",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }
    outcome = channel().call_outcome(httpx.Response(400, json=error))
    assert outcome.result is SendResult.FAILED
    assert (outcome.error_code, outcome.error_reason) == ("21211", error["message"])


# --- parse_call_status ------------------------------------------------------------------------------------


def call_status(status: str, **extra: str) -> dict[str, str]:
    """A StatusCallback request for a call we placed (https://www.twilio.com/docs/voice/api/call-resource
    #statuscallback): the standard voice parameters plus CallStatus and, once ended, CallDuration."""
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": CALL_SID,
        "CallStatus": status,
        "Direction": "outbound-api",
        "From": OUR_NUMBER,
        "To": CALLER,
        **extra,
    }


STATUS_URL = f"{PUBLIC}/webhooks/twilio/voice/status"


def test_a_completed_call_is_delivered() -> None:
    parsed = channel().parse_call_status(signed(call_status("completed", CallDuration="21"), STATUS_URL))
    assert parsed.messages == ()
    (status,) = parsed.statuses
    assert (status.channel, status.external_id, status.status, status.error_reason) == (
        Channel.VOICE,
        CALL_SID,
        DeliveryState.DELIVERED,
        None,
    )


@pytest.mark.parametrize("twilio", ["busy", "no-answer", "failed", "canceled"])
def test_an_unanswered_call_is_a_failure_naming_why(twilio: str) -> None:
    (status,) = channel().parse_call_status(signed(call_status(twilio), STATUS_URL)).statuses
    assert (status.status, status.error_reason) == (DeliveryState.FAILED, twilio)


@pytest.mark.parametrize("twilio", ["queued", "initiated", "ringing", "some-future-status"])
def test_call_statuses_that_say_nothing_new_are_skipped(twilio: str) -> None:
    parsed = channel().parse_call_status(signed(call_status(twilio), STATUS_URL))
    assert (parsed.messages, parsed.statuses) == ((), ())


# --- construction -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"auth_token": ""}, "auth token"),
        ({"public_base_url": ""}, "public base URL"),
        ({"public_base_url": "hooks.example.com"}, "public base URL"),
        ({"public_base_url": "https://hooks.example.com/?x=1"}, "public base URL"),
        ({"max_recording_s": 1}, "max_recording_s"),
        ({"max_recording_s": 14401}, "max_recording_s"),
    ],
)
def test_an_unusable_configuration_is_refused(overrides: dict[str, object], reason: str) -> None:
    settings: dict[str, object] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": TOKEN,
        "from_number": OUR_NUMBER,
        "api_base": "https://api.twilio.test",
        "public_base_url": PUBLIC,
        "max_recording_s": 120,
        **overrides,
    }
    with pytest.raises(ValueError, match=reason):
        TwilioVoiceChannel(**settings)  # type: ignore[arg-type]


def _tree(element: ET.Element) -> tuple[str, dict[str, str], str | None, list[object]]:
    return (element.tag, dict(element.attrib), element.text, [_tree(child) for child in element])
