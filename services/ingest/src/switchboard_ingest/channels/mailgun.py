"""Mailgun: inbound routes (the ``forward()`` action's POST to ``/webhooks/email/mailgun``), and replies out
through the messages API (``MailgunSender``).

Format (https://documentation.mailgun.com/docs/mailgun/user-manual/receive-forward-store/receive-http):
application/x-www-form-urlencoded, or multipart/form-data when the mail has attachments, with ``sender``
(MAIL FROM), ``from`` (the From header), ``recipient``, ``subject``, ``body-plain``, ``stripped-text``,
``stripped-signature``, ``body-html``, ``message-headers`` (a JSON list of ``[name, value]`` pairs, in
order), ``Message-Id``, ``attachment-count`` and the files ``attachment-1`` .. ``attachment-N``.

Security (https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks):
``signature`` = hex HMAC-SHA256(webhook signing key, ``timestamp`` + ``token``). It does not cover the rest
of the form, so a stale ``timestamp`` is refused here and the ``token`` is returned as a replay key: the
same token with other content is refused as a replay where the items are recorded.

Sending (https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages):
``POST {api base}/v3/{domain}/messages`` with HTTP Basic auth ``api:<API key>`` and the form fields
``from``, ``to``, ``subject``, ``text`` and ``h:<Header>`` for any other header of the mail (here
``h:Message-ID``, ``h:In-Reply-To``, ``h:References``); answered ``200 {"id": "<Message-ID>", "message":
"Queued. Thank you."}``, errors as ``{"message": ...}`` (401 for a wrong key, 400 for a refused field,
429 when throttled, 5xx). The API base is ``https://api.mailgun.net``, or ``https://api.eu.mailgun.net``
for a domain in the EU region.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from urllib.parse import parse_qsl, quote

import httpx

from switchboard_common.events import Attachment, Channel, CustomerIdentity, IdentityKind
from switchboard_ingest.channels import email
from switchboard_ingest.channels.base import (
    OutboundMessage,
    Parsed,
    ParsedMessage,
    PayloadInvalid,
    SendOutcome,
    SignatureInvalid,
    WebhookRequest,
    constant_time_equal,
    http_outcome,
    json_object,
)
from switchboard_ingest.channels.reply_mail import ReplyHeaders

_ATTACHMENT_FIELD = re.compile(r"attachment-([1-9][0-9]{0,5})")


class _FormPolicy(Compat32):
    """compat32 (only a name, a filename and the bytes are read from each part: policy.default's header
    objects would cost ten times as much), with 8-bit header values returned as the bytes they were
    (surrogate-escaped) rather than replaced by unknown-8bit placeholders, so UTF-8 filenames survive."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_FORM_POLICY = _FormPolicy()


@dataclass(frozen=True, slots=True)
class _File:
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class _Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, _File] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def only(self, name: str) -> str | None:
        """A field that must appear at most once: one of several values is not to be picked."""
        values = self.fields.get(name, [])
        if len(values) > 1:
            raise PayloadInvalid(f"{name} appears more than once")
        return values[0] if values else None


class MailgunChannel:
    """Inbound adapter for Mailgun routes (``Channel.EMAIL``)."""

    def __init__(self, *, signing_key: str, max_age_s: int) -> None:
        if not signing_key:
            raise ValueError("the Mailgun signing key must not be empty")  # an HMAC anybody can compute
        self._signing_key = signing_key.encode()
        self._max_age_s = max_age_s

    def verify(self, request: WebhookRequest) -> None:
        try:
            form = _read_form(request)
            timestamp, token, signature = form.only("timestamp"), form.only("token"), form.only("signature")
        except PayloadInvalid as exc:
            # Without a readable form there is no signature: the caller is told no more than that.
            raise SignatureInvalid(f"no readable signature: {exc}") from exc
        if not (timestamp and token and signature):
            raise SignatureInvalid("missing timestamp, token or signature")
        expected = hmac.new(self._signing_key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not constant_time_equal(expected, signature.strip()):
            raise SignatureInvalid("signature does not match timestamp and token")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise SignatureInvalid("timestamp is not a number of seconds")
        if abs(request.received_at.timestamp() - int(timestamp)) > self._max_age_s:
            raise SignatureInvalid("stale timestamp")

    def parse(self, request: WebhookRequest) -> Parsed:
        form = _read_form(request)
        token = form.only("token")
        if not token:
            raise PayloadInvalid("token is missing")
        headers = _message_headers(form.get("message-headers"))

        def header(name: str) -> str | None:
            # A top-level field first (Mailgun posts some headers as fields too), else message-headers.
            return form.get(name) or next((v for k, v in headers if k.lower() == name.lower()), None)

        # The From header first: it is the address the customer writes from and our reply goes to, where
        # ``sender`` (MAIL FROM) may be a bounce address unique to each message (VERP, mailing lists).
        sender = email.parse_address(form.get("from") or header("From")) or email.parse_address(
            form.get("sender")
        )
        if sender is None:
            raise PayloadInvalid("neither from nor sender holds an email address")
        address, display_name = sender

        original = (form.get("body-plain") or "").replace("\r\n", "\n")
        if not original.strip() and (html := form.get("body-html")):
            original = email.html_to_text(html)  # Mailgun makes body-plain from HTML, but not always
        # Mailgun's own stripping (stripped-text) when it did any; else ours.
        stripped = (form.get("stripped-text") or "").replace("\r\n", "\n").strip()
        text = email.storable(stripped) if stripped else email.shown_text(original)

        subject = form.get("subject") or header("Subject")
        external_id = email.message_id(form.get("Message-Id") or header("Message-Id")) or _derived_id(
            address, subject, header("Date"), original
        )
        message = ParsedMessage(
            channel=Channel.EMAIL,
            external_id=external_id,
            sender=CustomerIdentity(kind=IdentityKind.EMAIL, value=address),
            display_name=display_name,
            subject=email.subject(subject),
            sent_at=email.sent_at(header("Date"), request.received_at),
            text=text,
            original_text=email.storable(original.strip()),
            thread_refs=email.thread_refs(header("In-Reply-To"), header("References")),
            attachments=_attachments(form, external_id),
        )
        return Parsed(messages=(message,), replay_keys=(token,))


# --- the form ---------------------------------------------------------------------------------------------


def _read_form(request: WebhookRequest) -> _Form:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return _multipart(content_type, request.body)
    if media_type in ("application/x-www-form-urlencoded", ""):
        return _urlencoded(request.body)
    raise PayloadInvalid(f"unexpected content type {media_type!r}: Mailgun posts form data")


def _urlencoded(body: bytes) -> _Form:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:  # UnicodeDecodeError included
        raise PayloadInvalid("body is not form-encoded") from exc
    form = _Form()
    for name, value in pairs:
        form.fields.setdefault(name, []).append(value)
    return form


def _multipart(content_type: str, body: bytes) -> _Form:
    """multipart/form-data read by the stdlib's MIME parser: a form is a MIME multipart, so its body is
    parsed under a synthetic Content-Type header carrying the request's boundary."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=_FORM_POLICY).parsebytes(head + body)
    parts = message.get_payload()
    if not message.is_multipart() or message.get_boundary() is None or not isinstance(parts, list):
        raise PayloadInvalid("multipart/form-data without a boundary or parts")
    form = _Form()
    for part in parts:
        if not isinstance(part, Message):
            raise PayloadInvalid("a form part is not a MIME part")
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise PayloadInvalid("a form part has no name")
        filename = part.get_filename()
        if filename is not None:
            # Clients send raw UTF-8 names (not RFC 2231), which the parser holds as escaped bytes.
            filename = filename.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            explicit_type = "content-type" in part
            form.files[name] = _File(filename or None, part.get_content_type() if explicit_type else None)
            continue
        payload = part.get_payload(decode=True)
        value = payload if isinstance(payload, bytes) else b""
        form.fields.setdefault(name, []).append(value.decode("utf-8", "replace"))
    return form


def _message_headers(value: str | None) -> list[tuple[str, str]]:
    if not value:
        return []
    try:
        pairs = json.loads(value)
    except ValueError as exc:
        raise PayloadInvalid("message-headers is not JSON") from exc
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs
    ):
        raise PayloadInvalid("message-headers must be a list of [name, value] pairs")
    return [(name, value) for name, value in pairs]


def _attachments(form: _Form, external_id: str) -> tuple[Attachment, ...]:
    numbered = sorted(
        (int(match.group(1)), file)
        for name, file in form.files.items()
        if (match := _ATTACHMENT_FIELD.fullmatch(name))
    )
    count = form.get("attachment-count")
    if count is not None and (not (count.isascii() and count.isdigit()) or int(count) != len(numbered)):
        raise PayloadInvalid(f"attachment-count is {count!r} but {len(numbered)} attachments were posted")
    return tuple(
        Attachment(
            kind=email.attachment_kind(file.content_type),
            filename=email.storable(file.filename) if file.filename else None,
            content_type=file.content_type,
            media_id=f"{external_id}/attachment-{number}",
        )
        for number, file in numbered
    )


def _derived_id(address: str, subject: str | None, date: str | None, body: str) -> str:
    """An id for a mail without Message-ID: a digest of what the customer wrote, so a redelivery is
    recognised whatever its timestamp, token and signature."""
    text = "\x00".join((address, subject or "", date or "", body))
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


class MailgunSender:
    """Replies on ``Channel.EMAIL`` through Mailgun's messages API (an ``OutboundAdapter``: the dispatcher
    sends the request, so timeouts and unreachable hosts are retried like every HTTP provider's)."""

    channels = (Channel.EMAIL,)

    def __init__(self, *, api_key: str, domain: str, api_base: str, from_address: str) -> None:
        if not api_key or not domain:
            raise ValueError("the Mailgun API key and domain must not be empty")
        credentials = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._auth = {"Authorization": f"Basic {credentials}", "Accept": "application/json"}
        self._url = f"{api_base.rstrip('/')}/v3/{quote(domain, safe='')}/messages"
        self._headers = ReplyHeaders(from_address)

    def build(self, message: OutboundMessage) -> httpx.Request:
        """The send request: the reply's addresses, subject and text as fields, its threading headers as
        ``h:`` fields. ``InvalidRecipient`` (a ``ValueError``) unless the recipient is one address."""
        headers = self._headers.of(message)
        fields = {
            "from": headers.pop("From"),
            "to": headers.pop("To"),
            "subject": headers.pop("Subject"),
            "text": message.text,
            **{f"h:{name}": value for name, value in headers.items()},
        }
        return httpx.Request("POST", self._url, data=fields, headers=self._auth)

    def outcome(self, response: httpx.Response) -> SendOutcome:
        """Sent with the Message-ID Mailgun reports (ours, which it keeps; brackets removed); 429 and 5xx
        retried, any other 4xx final with Mailgun's message."""
        fields = json_object(response)  # 401 answers a plain "Forbidden"
        sent_id = fields.get("id")
        reason = fields.get("message")
        return http_outcome(
            response,
            external_id=sent_id.strip().strip("<>") if isinstance(sent_id, str) else None,
            error_code=None,
            error_reason=reason if isinstance(reason, str) else (response.text[:200] or None),
        )
