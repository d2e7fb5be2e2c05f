"""Twilio Programmable Voice: an inbound call is answered with TwiML (a greeting stating the expected wait,
then a voicemail recording) and becomes a conversation item; the recording and its transcription come back
as items in the caller's thread; an agent calls the customer back through the Calls API.

Formats, from Twilio's documentation:
- the voice webhook (form-encoded POST: CallSid, AccountSid, From, To, CallStatus, ApiVersion, Direction,
  ForwardedFrom, CallerName, FromCity, ...): https://www.twilio.com/docs/usage/webhooks/voice-webhooks and
  https://www.twilio.com/docs/voice/twiml#twilios-request-to-your-application
- ``<Record>`` (action, maxLength, playBeep, recordingStatusCallback, recordingStatusCallbackEvent,
  transcribe, transcribeCallback): https://www.twilio.com/docs/voice/twiml/record. Its ``action``
  defaults to the current document's URL, which would answer the call again in a loop, so it is always
  set (to ``GOODBYE_PATH``); the verbs after ``<Record>`` run only when the recording is empty.
- recording status callbacks (AccountSid, CallSid, RecordingSid, RecordingUrl, RecordingStatus,
  RecordingDuration, RecordingChannels, RecordingSource, RecordingStartTime, ErrorCode):
  https://www.twilio.com/docs/voice/api/recording#recordingstatuscallback; ``RecordingUrl`` serves WAV
  unless ``.mp3`` is appended.
- transcription callbacks (TranscriptionSid, TranscriptionText, TranscriptionStatus, TranscriptionUrl,
  RecordingSid, RecordingUrl, CallSid, AccountSid): the ``transcribeCallback`` section of the ``<Record>``
  page.
- calls: ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` with HTTP Basic auth and the form fields To,
  From, Twiml (or Url), StatusCallback; answered 201 with the call's ``sid``:
  https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource
- call status callbacks (CallSid, CallStatus, ...): the same page's ``StatusCallback`` section.
- signatures: as for SMS (``twilio.verify_signature``), over the full URL Twilio called, query included.

The recording and transcription callbacks do not name the caller, so the URLs put into the TwiML carry it
as ``?from=<E.164>``; Twilio signs the URL it calls, query included, so the caller read back from it is
authenticated like the rest of the request.
"""

from __future__ import annotations

import base64
import math
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl, quote, urlparse

import httpx

from switchboard_common.events import (
    Attachment,
    AttachmentKind,
    Channel,
    CustomerIdentity,
    DeliveryState,
    IdentityKind,
)
from switchboard_ingest.channels.base import (
    OutboundMessage,
    Parsed,
    ParsedMessage,
    ParsedStatus,
    PayloadInvalid,
    SendOutcome,
    WebhookRequest,
)
from switchboard_ingest.channels.twilio import api_outcome, parse_form, verify_signature
from switchboard_ingest.normalize import normalize_phone

VOICE_PATH = "/webhooks/twilio/voice"  # the number's "A call comes in" webhook: answered with ``answer``
RECORDING_PATH = "/webhooks/twilio/voice/recording"  # recordingStatusCallback: ``parse_recording``
TRANSCRIPTION_PATH = "/webhooks/twilio/voice/transcription"  # transcribeCallback: ``parse_transcription``
GOODBYE_PATH = "/webhooks/twilio/voice/goodbye"  # <Record action>: answered with ``goodbye``
CALL_STATUS_PATH = "/webhooks/twilio/voice/status"  # StatusCallback of our calls: ``parse_call_status``

CALLER_PARAM = "from"  # the query parameter naming the caller in the callback URLs
RECORDING_CONTENT_TYPE = "audio/x-wav"  # what RecordingUrl serves without an extension

# Withheld caller IDs. Twilio passes them in From as a word, or as the word spelled on a phone keypad
# (ANONYMOUS, RESTRICTED, UNKNOWN, UNAVAILABLE, BLOCKED): some of those parse as real numbers (+8656696 and
# +86282452253 are possible Chinese numbers), so they are named rather than left to the phone parser.
WITHHELD_NUMBERS = frozenset({"+266696687", "+7378742833", "+8656696", "+86282452253", "+2562533"})
WITHHELD_WORDS = frozenset({"anonymous", "restricted", "unknown", "unavailable", "blocked", "private"})

# What each final CallStatus of a call we placed says. ``in-progress`` (answered) is reported only when
# asked for; queued, initiated and ringing say no more than the "sent" the Calls API answer gave.
CALL_STATES: dict[str, DeliveryState] = {
    "in-progress": DeliveryState.SENT,
    "completed": DeliveryState.DELIVERED,  # answered (a person or a voicemail box) and played to the end
    "busy": DeliveryState.FAILED,
    "no-answer": DeliveryState.FAILED,
    "failed": DeliveryState.FAILED,  # Twilio could not place it (an invalid or unreachable number)
    "canceled": DeliveryState.FAILED,
}

GOODBYE = "Thank you, goodbye."
_UNIDENTIFIED_MESSAGE = (
    "Sorry, we cannot take a message from a withheld number. "
    "Please call again with your caller ID shown, so we can call you back. Goodbye."
)

# Characters XML 1.0 cannot carry at all (not even escaped): ElementTree would write them raw and Twilio
# would refuse the document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class CallerUnidentified(PayloadInvalid):
    """The call has no number to link to a customer or to call back (a withheld caller ID, a Twilio Client
    or SIP caller). A ``PayloadInvalid``, so it is refused like any malformed payload; the voice endpoint
    may instead catch it and answer ``unidentified()`` so the caller hears why rather than Twilio's
    "application error"."""


class TwilioVoiceChannel:
    """Inbound calls, voicemail and transcriptions in, callback calls out (``Channel.VOICE``)."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base: str,
        public_base_url: str,
        max_recording_s: int,
    ) -> None:
        if not auth_token:
            # An HMAC keyed with nothing is one anybody can compute.
            raise ValueError("the Twilio auth token must not be empty")
        base = urlparse(public_base_url)
        if base.scheme not in ("http", "https") or not base.netloc or base.query or base.fragment:
            # Twilio must reach the callbacks, and signs the absolute URL it calls.
            raise ValueError("the public base URL must be an absolute http(s) URL without query")
        if not 2 <= max_recording_s <= 14400:  # <Record maxLength>: more than 1 s, at most 4 hours
            raise ValueError("max_recording_s must be between 2 and 14400 seconds")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from_number = from_number
        self._api_base = api_base.rstrip("/")
        self._public = public_base_url.rstrip("/")
        self._max_recording_s = max_recording_s

    # --- inbound ------------------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        """Twilio's signature over ``request.url`` (query included) and the form parameters; raises
        ``SignatureInvalid``."""
        verify_signature(self._auth_token, request)

    def parse(self, request: WebhookRequest) -> Parsed:
        """Any of the three inbound requests, told apart by what they carry (for a generic caller; the
        endpoints know which one they serve and call the specific method)."""
        form = parse_form(request.body)
        if "TranscriptionSid" in form or "TranscriptionStatus" in form:
            return self._transcription(request, form)
        if "RecordingStatus" in form:
            return self._recording(request, form)
        return Parsed(messages=(self._call(form),))

    def parse_call(self, request: WebhookRequest) -> ParsedMessage:
        """An inbound call, as an item "Incoming call" from the caller's number. ``CallerUnidentified``
        when the caller ID is withheld or is not a phone number: such a call can neither join the
        caller's thread nor be called back."""
        return self._call(parse_form(request.body))

    def parse_recording(self, request: WebhookRequest) -> Parsed:
        """A completed voicemail recording, as an audio item in the caller's thread. Other statuses are
        skipped: ``absent`` (too short or silent: nothing to listen to), ``failed`` (no file), and
        ``in-progress`` (not asked for)."""
        return self._recording(request, parse_form(request.body))

    def parse_transcription(self, request: WebhookRequest) -> Parsed:
        """A completed transcription of the voicemail, as a text item in the caller's thread. A failed one
        is skipped (the recording itself is already there), as is a completed one with no text."""
        return self._transcription(request, parse_form(request.body))

    def parse_call_status(self, request: WebhookRequest) -> Parsed:
        """The StatusCallback of a call we placed (``build_call``), as a delivery status of that call
        (see ``CALL_STATES``; other statuses skipped)."""
        form = parse_form(request.body)
        sid = _required(form, "CallSid")
        status = _required(form, "CallStatus")
        state = CALL_STATES.get(status)
        if state is None:
            return Parsed()
        failed = state is DeliveryState.FAILED
        return Parsed(
            statuses=(
                ParsedStatus(
                    channel=Channel.VOICE,
                    external_id=sid,
                    status=state,
                    error_code=(form.get("ErrorCode") or None) if failed else None,
                    error_reason=(form.get("ErrorMessage") or status) if failed else None,
                ),
            )
        )

    # --- TwiML answers ------------------------------------------------------------------------------------

    def answer(self, caller: str, expected_wait_s: int | None) -> str:
        """The TwiML answering a call from ``caller`` (its E.164, as ``parse_call`` gave it): a greeting
        stating the expected wait, then a voicemail recording whose callbacks name the caller, then a
        goodbye (reached only when nothing was recorded; otherwise ``action`` leads to ``goodbye``)."""
        caller_query = f"?{CALLER_PARAM}={quote(caller, safe='')}"
        response = ET.Element("Response")
        _say(response, f"Thank you for calling. {wait_sentence(expected_wait_s)} {_PROMPT}")
        ET.SubElement(
            response,
            "Record",
            {
                "action": self._public + GOODBYE_PATH,
                "maxLength": str(self._max_recording_s),
                "playBeep": "true",
                "recordingStatusCallback": self._public + RECORDING_PATH + caller_query,
                "recordingStatusCallbackEvent": "completed",
                "transcribe": "true",
                "transcribeCallback": self._public + TRANSCRIPTION_PATH + caller_query,
            },
        )
        _say(response, GOODBYE)
        ET.SubElement(response, "Hangup")
        return _document(response)

    def goodbye(self) -> str:
        """The TwiML for the recording's ``action`` request: thank the caller and hang up."""
        response = ET.Element("Response")
        _say(response, GOODBYE)
        ET.SubElement(response, "Hangup")
        return _document(response)

    def unidentified(self) -> str:
        """The TwiML for a call ``parse_call`` refused as ``CallerUnidentified``: say why, hang up."""
        response = ET.Element("Response")
        _say(response, _UNIDENTIFIED_MESSAGE)
        ET.SubElement(response, "Hangup")
        return _document(response)

    # --- outbound -----------------------------------------------------------------------------------------

    def build_call(self, to: str, say: str) -> httpx.Request:
        """The Calls API request calling ``to`` (the customer's E.164) from ``from_number`` and saying
        ``say`` once answered. Its final status comes to ``CALL_STATUS_PATH``."""
        twiml = ET.Element("Response")
        _say(twiml, say)
        fields = {
            "To": to,
            "From": self._from_number,
            # The Twiml parameter takes the document itself (at most 4,000 characters), no declaration.
            "Twiml": ET.tostring(twiml, encoding="unicode"),
            "StatusCallback": self._public + CALL_STATUS_PATH,
        }
        credentials = base64.b64encode(f"{self._account_sid}:{self._auth_token}".encode()).decode()
        return httpx.Request(
            "POST",
            f"{self._api_base}/2010-04-01/Accounts/{quote(self._account_sid, safe='')}/Calls.json",
            data=fields,
            headers={"Authorization": f"Basic {credentials}", "Accept": "application/json"},
        )

    def call_outcome(self, response: httpx.Response) -> SendOutcome:
        """The call's ``sid`` on 201; Twilio's error code and message otherwise (429 and 5xx retried)."""
        return api_outcome(response)

    # The OutboundAdapter shape, so the dispatcher can deliver an agent's reply on the voice channel as a
    # call that reads it to the customer.
    def build(self, message: OutboundMessage) -> httpx.Request:
        return self.build_call(message.recipient, message.text)

    def outcome(self, response: httpx.Response) -> SendOutcome:
        return self.call_outcome(response)

    # --- parsing ------------------------------------------------------------------------------------------

    def _call(self, form: dict[str, str]) -> ParsedMessage:
        sid = _required(form, "CallSid")
        direction = form.get("Direction", "inbound")
        if direction != "inbound":
            # outbound-api / outbound-dial: a call we placed; its From is our own number.
            raise PayloadInvalid(f"Direction is {direction}, not an inbound call")
        sender = form.get("From")
        if sender is None:
            raise PayloadInvalid("From is missing")
        caller = caller_phone(sender)  # an empty From is a withheld caller ID too
        name = form.get("CallerName", "").strip() or None
        return ParsedMessage(
            channel=Channel.VOICE,
            external_id=sid,
            sender=CustomerIdentity(kind=IdentityKind.PHONE, value=caller),
            text=f"Incoming call from {name}" if name else "Incoming call",
            display_name=name,
            content_kind="call",
        )

    def _recording(self, request: WebhookRequest, form: dict[str, str]) -> Parsed:
        sid = _required(form, "RecordingSid")
        if _required(form, "RecordingStatus") != "completed":
            return Parsed()
        url = _required(form, "RecordingUrl")
        duration = _required(form, "RecordingDuration")
        if not (duration.isascii() and duration.isdigit()):
            raise PayloadInvalid("RecordingDuration must be a non-negative integer")
        message = ParsedMessage(
            channel=Channel.VOICE,
            external_id=sid,
            sender=self._callback_caller(request),
            text=f"Voicemail ({int(duration)} s)",
            content_kind="voicemail",
            attachments=(
                Attachment(
                    kind=AttachmentKind.AUDIO, url=url, media_id=sid, content_type=RECORDING_CONTENT_TYPE
                ),
            ),
        )
        return Parsed(messages=(message,))

    def _transcription(self, request: WebhookRequest, form: dict[str, str]) -> Parsed:
        sid = _required(form, "TranscriptionSid")
        if _required(form, "TranscriptionStatus") != "completed":
            return Parsed()
        text = form.get("TranscriptionText", "").strip()
        if not text:
            return Parsed()
        message = ParsedMessage(
            channel=Channel.VOICE,
            external_id=sid,
            sender=self._callback_caller(request),
            text=text,
            content_kind="transcription",
        )
        return Parsed(messages=(message,))

    def _callback_caller(self, request: WebhookRequest) -> CustomerIdentity:
        # Read from the signed URL itself (not a separately decoded copy), so the caller used is exactly
        # the one the signature covers.
        values = [
            v for k, v in parse_qsl(urlparse(request.url).query, keep_blank_values=True) if k == CALLER_PARAM
        ]
        if len(values) != 1 or not values[0]:
            raise PayloadInvalid(
                f"the callback URL must name the caller once in its '{CALLER_PARAM}' parameter"
            )
        return CustomerIdentity(kind=IdentityKind.PHONE, value=caller_phone(values[0]))


# --- helpers -----------------------------------------------------------------------------------------------

_PROMPT = "Please leave a message after the beep, and an agent will call you back."


def caller_phone(value: str) -> str:
    """The caller's number in E.164; ``CallerUnidentified`` when there is none to call back."""
    text = value.strip()
    if text.lower() in WITHHELD_WORDS or text in WITHHELD_NUMBERS:
        raise CallerUnidentified(
            f"From {text!r} is a withheld caller ID: the call cannot be linked to a customer or called back"
        )
    if ":" in text:  # client:alice, sip:alice@example.com
        raise CallerUnidentified(
            f"From {text!r} is a Twilio Client or SIP address, not a phone number that can be called back"
        )
    try:
        return normalize_phone(text)
    except ValueError as exc:
        raise CallerUnidentified(
            f"From {exc}: the call cannot be linked to a customer or called back"
        ) from exc


def wait_sentence(expected_wait_s: int | None) -> str:
    """The greeting's sentence about the wait, rounded up (a callback sooner than said is welcome, a later
    one is not): to whole minutes under an hour, to half hours from an hour on."""
    if expected_wait_s is None:
        return "We will get back to you as soon as we can."
    if expected_wait_s < 0:
        raise ValueError("the expected wait cannot be negative")
    minutes = max(1, math.ceil(expected_wait_s / 60))
    if minutes < 60:
        return f"Our expected wait is about {minutes} minute{'s' if minutes != 1 else ''}."
    hours, half = divmod(math.ceil(minutes / 30), 2)
    if hours == 1:
        spoken = "an hour and a half" if half else "1 hour"
    else:
        spoken = f"{hours} and a half hours" if half else f"{hours} hours"
    return f"Our expected wait is about {spoken}."


def _say(parent: ET.Element, text: str) -> None:
    ET.SubElement(parent, "Say").text = _NOT_XML.sub("", text)


def _document(response: ET.Element) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(response, encoding="unicode")


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise PayloadInvalid(f"{name} is missing")
    return value
