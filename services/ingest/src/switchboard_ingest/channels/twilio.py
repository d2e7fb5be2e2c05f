"""Twilio Programmable Messaging (SMS/MMS): incoming-message webhooks and status callbacks in, the Messages
API out.

Formats, from Twilio's documentation:
- incoming message webhook (form-encoded POST: MessageSid, SmsSid, AccountSid, MessagingServiceSid, From,
  To, Body, NumMedia, MediaUrl{N}, MediaContentType{N}, ProfileName, SmsStatus=received, ...):
  https://www.twilio.com/docs/messaging/guides/webhook-request
- status callbacks (the same form plus MessageStatus, ErrorCode, ErrorMessage, RawDlrDoneDate):
  https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
- signatures: https://www.twilio.com/docs/usage/webhooks/webhooks-security, and the twilio package's
  ``RequestValidator``, whose behaviour ``verify`` reproduces exactly (the tests use it as the oracle).
- sending: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth, answered 201 with
  the message's ``sid``, errors as ``{"code", "message", "more_info", "status"}``:
  https://www.twilio.com/docs/messaging/api/message-resource
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import defaultdict
from urllib.parse import ParseResult, parse_qs, parse_qsl, quote, urlparse

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
    SignatureInvalid,
    WebhookRequest,
    constant_time_equal,
    http_outcome,
    json_object,
)
from switchboard_ingest.normalize import normalize_phone

SIGNATURE_HEADER = "x-twilio-signature"

# What each MessageStatus of an outbound message says. Absent statuses are skipped: queued, accepted,
# scheduled and sending say no more than the "queued" the thread already shows; receiving/received are
# inbound; partially_delivered concerns group MMS (our sends have one recipient); and Twilio adds statuses
# without notice, so an unknown one is ignored rather than refused.
STATUS_STATES: dict[str, DeliveryState] = {
    "sent": DeliveryState.SENT,  # handed to the carrier
    "delivered": DeliveryState.DELIVERED,  # the carrier's delivery receipt
    "read": DeliveryState.READ,  # channels with read receipts (RCS, WhatsApp)
    "undelivered": DeliveryState.FAILED,  # the carrier could not deliver it (ErrorCode says why)
    "failed": DeliveryState.FAILED,  # Twilio could not send it
    "canceled": DeliveryState.FAILED,  # a scheduled message canceled before it left
}

_MEDIA_KINDS = {"image": AttachmentKind.IMAGE, "audio": AttachmentKind.AUDIO, "video": AttachmentKind.VIDEO}


def public_url(configured_base: str | None, path: str, query: str, fallback: str) -> str:
    """The URL Twilio called, which is what it signed: the configured public base URL (behind a proxy,
    e.g. ``https://hooks.example.com``) joined with the request's path and query string, both as received
    (undecoded), else ``fallback``, the URL as the server saw it."""
    if not configured_base:
        return fallback
    url = configured_base.rstrip("/") + "/" + path.lstrip("/")
    return f"{url}?{query}" if query else url


class TwilioSmsChannel:
    """Inbound and outbound adapter for Twilio SMS/MMS (``Channel.SMS``)."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base: str,
        status_callback_url: str | None,
    ) -> None:
        if not auth_token:
            # An HMAC keyed with nothing is one anybody can compute.
            raise ValueError("the Twilio auth token must not be empty")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from_number = from_number
        self._api_base = api_base.rstrip("/")
        self._status_callback_url = status_callback_url

    # --- inbound ------------------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        """Twilio's signature (see ``verify_signature``)."""
        verify_signature(self._auth_token, request)

    def parse(self, request: WebhookRequest) -> Parsed:
        """An incoming message (no MessageStatus, or ``received``) or a status callback on a message we
        sent (MessageStatus, see ``STATUS_STATES``)."""
        form = parse_form(request.body)
        sid = form.get("MessageSid")
        if not sid:
            raise PayloadInvalid("MessageSid is missing")
        status = form.get("MessageStatus")
        if status is None or status == "received":
            return Parsed(messages=(self._message(sid, form),))
        state = STATUS_STATES.get(status)
        if state is None:
            return Parsed()
        failed = state is DeliveryState.FAILED
        return Parsed(
            statuses=(
                ParsedStatus(
                    channel=Channel.SMS,
                    external_id=sid,
                    status=state,
                    # RawDlrDoneDate is not used for ``at``: it is the carrier's minute, in no stated zone.
                    error_code=(form.get("ErrorCode") or None) if failed else None,
                    error_reason=(form.get("ErrorMessage") or status) if failed else None,
                ),
            )
        )

    def _message(self, sid: str, form: dict[str, str]) -> ParsedMessage:
        sender = form.get("From")
        if not sender:
            raise PayloadInvalid("From is missing")
        if ":" in sender:
            # whatsapp:+1..., messenger:..., rcs:...: another channel's address, sent to the SMS webhook.
            raise PayloadInvalid("From is another channel's address (such as whatsapp:), not an SMS number")
        try:
            phone = normalize_phone(sender)
        except ValueError as exc:
            raise PayloadInvalid(f"From {exc}") from exc
        return ParsedMessage(
            channel=Channel.SMS,
            external_id=sid,
            sender=CustomerIdentity(kind=IdentityKind.PHONE, value=phone),
            text=form.get("Body", ""),
            display_name=form.get("ProfileName") or None,
            attachments=_attachments(form),
        )

    # --- outbound -----------------------------------------------------------------------------------------

    def build(self, message: OutboundMessage) -> httpx.Request:
        """The Messages API request sending ``message.text`` to ``message.recipient`` (E.164). A
        ``from_number`` that is a Messaging Service SID (``MG...``) is sent as MessagingServiceSid."""
        sender_field = "MessagingServiceSid" if self._from_number.startswith("MG") else "From"
        fields = {"To": message.recipient, sender_field: self._from_number, "Body": message.text}
        if self._status_callback_url:
            fields["StatusCallback"] = self._status_callback_url
        credentials = base64.b64encode(f"{self._account_sid}:{self._auth_token}".encode()).decode()
        return httpx.Request(
            "POST",
            f"{self._api_base}/2010-04-01/Accounts/{quote(self._account_sid, safe='')}/Messages.json",
            data=fields,
            headers={"Authorization": f"Basic {credentials}", "Accept": "application/json"},
        )

    def outcome(self, response: httpx.Response) -> SendOutcome:
        """The message's ``sid`` on success; Twilio's error otherwise (see ``api_outcome``)."""
        return api_outcome(response)


# --- shared by the Twilio adapters (SMS and Voice) ---------------------------------------------------------


def verify_signature(auth_token: str, request: WebhookRequest) -> None:
    """Twilio's signature: base64 HMAC-SHA1 under the auth token of the URL followed by every POST
    parameter's name and value, sorted. As ``RequestValidator`` does, the URL is tried with and without its
    port (Twilio is inconsistent about the standard one), and a JSON body is covered by its SHA-256 in the
    URL's ``bodySHA256`` parameter instead of by the parameters. Raises ``SignatureInvalid``."""
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise SignatureInvalid("missing X-Twilio-Signature header")
    try:
        parts = urlparse(request.url)
        variants = (_without_port(parts), _with_port(parts))
    except ValueError as exc:  # an unreadable port
        raise SignatureInvalid("the request URL is not valid") from exc

    body_hash = parse_qs(parts.query).get("bodySHA256")
    if body_hash:
        if not constant_time_equal(hashlib.sha256(request.body).hexdigest(), body_hash[0]):
            raise SignatureInvalid("body does not match bodySHA256")
        params: dict[str, list[str]] = {}
    else:
        # Lenient decoding: whatever it yields must still match the signature.
        params = _multidict(
            parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True, errors="replace")
        )

    # Both compared, whichever matches, so the time taken does not tell which variant was signed.
    matches = [constant_time_equal(_signature(auth_token, url, params), signature) for url in variants]
    if not any(matches):
        raise SignatureInvalid("X-Twilio-Signature does not match")


def parse_form(body: bytes) -> dict[str, str]:
    """The form's parameters; each appears once in what Twilio sends, so a repeated one is refused rather
    than one of its values picked. Raises ``PayloadInvalid``."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError as exc:  # UnicodeDecodeError included
        raise PayloadInvalid(
            "body is not a form-encoded (application/x-www-form-urlencoded) payload"
        ) from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise PayloadInvalid(f"parameter {name} appears more than once")
        form[name] = value
    return form


def api_outcome(response: httpx.Response) -> SendOutcome:
    """A Twilio REST answer (Messages, Calls): the created resource's ``sid`` on success; Twilio's error
    ``code`` and ``message`` otherwise (also read from the RFC 9457 shape some newer Twilio APIs answer
    with)."""
    body = json_object(response)
    sid = body.get("sid")
    code = body.get("code")
    reason = body.get("message") or body.get("detail") or body.get("title")
    return http_outcome(
        response,
        external_id=sid if isinstance(sid, str) else None,
        error_code=str(code) if isinstance(code, int | str) and code != "" else None,
        error_reason=reason if isinstance(reason, str) else None,
    )


# --- helpers -----------------------------------------------------------------------------------------------


def _signature(auth_token: str, url: str, params: dict[str, list[str]]) -> str:
    # RequestValidator's order: names sorted, and under each name its distinct values sorted.
    text = url + "".join(name + value for name in sorted(params) for value in sorted(set(params[name])))
    return base64.b64encode(hmac.new(auth_token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def _without_port(parts: ParseResult) -> str:
    # As twilio's remove_port: any port is dropped (and userinfo with it, as theirs does).
    if not parts.port:
        return parts.geturl()
    return parts._replace(netloc=parts.netloc.split(":")[0]).geturl()


def _with_port(parts: ParseResult) -> str:
    # As twilio's add_port: the scheme's standard port when none is given.
    if parts.port:
        return parts.geturl()
    port = 443 if parts.scheme == "https" else 80
    return parts._replace(netloc=f"{parts.netloc}:{port}").geturl()


def _multidict(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    values: defaultdict[str, list[str]] = defaultdict(list)
    for name, value in pairs:
        values[name].append(value)
    return dict(values)


def _attachments(form: dict[str, str]) -> tuple[Attachment, ...]:
    count_text = form.get("NumMedia", "0") or "0"
    if not (count_text.isascii() and count_text.isdigit()):
        raise PayloadInvalid("NumMedia must be a non-negative integer")
    attachments = []
    for index in range(int(count_text)):
        url = form.get(f"MediaUrl{index}")
        if not url:
            raise PayloadInvalid(f"NumMedia is {count_text} but MediaUrl{index} is missing")
        content_type = form.get(f"MediaContentType{index}") or None
        attachments.append(Attachment(kind=_kind(content_type), url=url, content_type=content_type))
    return tuple(attachments)


def _kind(content_type: str | None) -> AttachmentKind:
    if content_type is None:
        return AttachmentKind.FILE
    major = content_type.split("/", 1)[0].strip().lower()
    if major in _MEDIA_KINDS:
        return _MEDIA_KINDS[major]
    # PDFs, vCards, calendars, office files: something to read rather than to play or show.
    return AttachmentKind.DOCUMENT if major in ("application", "text") else AttachmentKind.FILE
