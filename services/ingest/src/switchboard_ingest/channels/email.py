"""Email in: raw RFC 5322 messages, and the pieces every email route shares.

``parse_mime`` reads one message with the stdlib ``email`` package (``policy.default``: RFC 2047 subjects
and names, RFC 2231 filenames, charsets decoded). The shown text is the text/plain body (else the HTML body
through ``html2text``) with quoted history and the signature stripped by ``mail-parser-reply``; the whole
text is kept beside it. Threading uses Message-ID, In-Reply-To and References.

``MimeChannel`` takes such messages from your own MTA at ``/webhooks/email/mime``, authenticated by a
Bearer token. Mailgun (``mailgun.py``) and SES through SNS (``ses.py``) build on the helpers here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.errors import MessageError
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

import html2text
from mailparser_reply import EmailMessage as ReplyText  # type: ignore[import-untyped]

from switchboard_common.events import Attachment, AttachmentKind, Channel, CustomerIdentity, IdentityKind
from switchboard_ingest.channels.base import (
    Parsed,
    ParsedMessage,
    PayloadInvalid,
    SignatureInvalid,
    WebhookRequest,
    constant_time_equal,
)
from switchboard_ingest.normalize import normalize_email

# The languages whose reply headers ("On ... wrote:", "Am ... schrieb:") and sign-offs are recognised. Each
# adds patterns, and with them the chance of cutting a customer's own sentence, so only the common ones.
REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl")

# The stdlib's header parser raises these (rather than recording a defect) on some malformed headers.
_HEADER_ERRORS = (MessageError, ValueError, IndexError, TypeError, AttributeError)

_BRACKETED_ID = re.compile(r"<([^<>\s]+)>")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_DOCUMENT_TYPES = re.compile(
    r"application/(pdf|rtf|msword|vnd\.ms-|vnd\.openxmlformats-|vnd\.oasis\.opendocument\.)"
)


class MimeChannel:
    """Raw RFC 5322 messages POSTed by your own MTA (or relayed from SES), with
    ``Authorization: Bearer <token>``."""

    def __init__(self, *, token: str) -> None:
        if not token:
            raise ValueError("the MIME webhook token must not be empty")  # "" would let anybody in
        self._token = token

    def verify(self, request: WebhookRequest) -> None:
        scheme, _, credential = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise SignatureInvalid("missing Authorization: Bearer token")
        if not constant_time_equal(credential.strip(), self._token):
            raise SignatureInvalid("wrong Bearer token")

    def parse(self, request: WebhookRequest) -> Parsed:
        return Parsed(messages=(parse_mime(request.body, received_at=request.received_at),))


def parse_mime(raw: bytes, *, received_at: datetime | None = None) -> ParsedMessage:
    """One raw RFC 5322 message as a customer's message on ``Channel.EMAIL``.

    - ``external_id``: the Message-ID without its brackets; a message without one gets
      ``sha256:<hex of the raw bytes>``, so a redelivery of the same bytes is still recognised.
    - ``sender``: the From address, lower-cased; ``display_name`` its name.
    - ``sent_at``: the Date header in UTC (none when missing or unreadable; never later than
      ``received_at``: a sender's clock running fast must not order the message after later ones).
    - ``text``: what is shown (quoted history and signature stripped), ``original_text`` all of it.
    - ``thread_refs``: In-Reply-To, then References newest first, unique, without brackets.
    - ``attachments``: references only (kind, filename, content type, ``media_id`` =
      ``<external_id>/<part index>``): the bytes are not kept, nor is anything else stored from them.

    Raises ``PayloadInvalid`` when the message has no usable From address.
    """
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)  # what policy.default makes
    sender = parse_address(_header(message, "from"))
    if sender is None:
        raise PayloadInvalid("the message has no From address")
    address, display_name = sender
    external_id = message_id(_header(message, "message-id")) or "sha256:" + hashlib.sha256(raw).hexdigest()

    body = _body_part(message)
    original = _body_text(body) if body is not None else ""
    return ParsedMessage(
        channel=Channel.EMAIL,
        external_id=external_id,
        sender=CustomerIdentity(kind=IdentityKind.EMAIL, value=address),
        display_name=display_name,
        subject=subject(_header(message, "subject")),
        sent_at=sent_at(_header(message, "date"), received_at),
        text=shown_text(original),
        original_text=storable(original),
        thread_refs=thread_refs(_header(message, "in-reply-to"), _header(message, "references")),
        attachments=tuple(_attachments(message, body, external_id)),
    )


# --- shared by the email routes ----------------------------------------------------------------------------


def shown_text(text: str) -> str:
    """``text`` without quoted history and signature; all of it when stripping would leave nothing (a
    message that is only a forward, or a reply written below the quote)."""
    if not text.strip():
        return storable(text.strip())
    # keep_hyphen_lists: the library's default also cuts at "- item" lines, taking a customer's list for a
    # signature. A fresh list of languages each time: the library appends to the one it is given.
    replies = ReplyText(text=text, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True).read().replies
    stripped = replies[0].body if replies else ""
    return storable(stripped if stripped.strip() else text.strip())


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: links kept as ``[text](url)``, images and emphasis marks left out,
    no hard wrapping (the agent's screen wraps)."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True  # keep accented letters and typographic quotes as written
    return converter.handle(html).strip()


def parse_address(value: str | None) -> tuple[str, str | None] | None:
    """(lower-cased address, display name) of the first address in a From-style header value; none when
    there is no address with a local part and a domain."""
    if not value:
        return None
    try:
        header = policy.default.header_factory("from", value)
        addresses = header.addresses if isinstance(header, AddressHeader) else ()
    except _HEADER_ERRORS:
        return None
    for address in addresses:
        if address.username and address.domain:
            name = storable(" ".join(address.display_name.split()))
            return normalize_email(storable(address.addr_spec)), name or None
    return None


def message_id(value: str | None) -> str | None:
    """The Message-ID in a header value, without its brackets (a bare one, as some mailers write it,
    taken as it is)."""
    ids = message_ids(value)
    return ids[0] if ids else None


def message_ids(value: str | None) -> list[str]:
    """The Message-IDs in an In-Reply-To or References value, in order, without brackets."""
    if not value:
        return []
    found = _BRACKETED_ID.findall(value)
    if not found:  # no brackets at all: whitespace-separated ids, as some mailers write them
        found = [token for token in value.split() if "@" in token]
    return [storable(item) for item in found]


def thread_refs(in_reply_to: str | None, references: str | None) -> tuple[str, ...]:
    """The Message-IDs a message answers, nearest first: In-Reply-To, then References (written oldest
    first, so reversed), each once."""
    ordered = [*message_ids(in_reply_to), *reversed(message_ids(references))]
    return tuple(dict.fromkeys(ordered))


def subject(value: str | None) -> str | None:
    text = storable(" ".join((value or "").split()))  # unfolded, and no line breaks from encoded words
    return text or None


def sent_at(value: str | None, received_at: datetime | None) -> datetime | None:
    """A Date header in UTC; a date without a zone (``-0000``: "unknown") is taken as UTC."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(when, received_at) if received_at is not None else when


def attachment_kind(content_type: str | None) -> AttachmentKind:
    content_type = (content_type or "").strip().lower()
    major = content_type.split("/", 1)[0]
    if major in ("image", "audio", "video"):
        return AttachmentKind(major)
    if major == "text" or _DOCUMENT_TYPES.match(content_type):
        return AttachmentKind.DOCUMENT  # something to read: PDFs, office files, calendars, plain text
    return AttachmentKind.FILE


def storable(text: str) -> str:
    """``text`` without what PostgreSQL cannot store (NUL, lone surrogates): mail is decoded leniently, so
    such characters can appear, and they must not fail the message downstream."""
    return _UNSTORABLE.sub(lambda match: "" if match.group() == "\x00" else "\ufffd", text)


# --- MIME -------------------------------------------------------------------------------------------------


def _header(message: EmailMessage, name: str) -> str | None:
    try:
        value = message.get(name)
        return None if value is None else str(value)
    except _HEADER_ERRORS:
        return None


def _body_part(message: EmailMessage) -> EmailMessage | None:
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except _HEADER_ERRORS:
        return None
    return part if isinstance(part, EmailMessage) else None


def _body_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (*_HEADER_ERRORS, LookupError):
        return ""
    if not isinstance(content, str):
        return ""
    content = content.replace("\r\n", "\n")  # the wire's CRLF: the text is stored and shown with \n
    return html_to_text(content) if part.get_content_subtype() == "html" else content.strip()


def _parts(message: EmailMessage) -> Iterator[EmailMessage]:
    """Every part, depth first, in order; a forwarded message (message/rfc822) is one part, not opened.
    Iterative: a maliciously deep nesting must not exhaust the stack."""
    stack = [message]
    while stack:
        part = stack.pop()
        yield part
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            stack.extend(reversed([p for p in part.iter_parts() if isinstance(p, EmailMessage)]))


def _attachments(message: EmailMessage, body: EmailMessage | None, external_id: str) -> Iterator[Attachment]:
    for index, part in enumerate(_parts(message)):
        if part is body:
            continue
        # Read once: each read of a header under policy.default parses it again.
        content_type = part.get_content_type()
        if content_type.startswith("multipart/"):
            continue
        try:
            filename = part.get_filename()
            disposition = part.get_content_disposition()
        except _HEADER_ERRORS:
            filename = disposition = None
        # The other alternative of the body (the HTML beside the plain text) is not an attachment.
        if content_type in ("text/plain", "text/html") and not filename and disposition != "attachment":
            continue
        yield Attachment(
            kind=attachment_kind(content_type),
            filename=storable(filename) if filename else None,
            content_type=content_type,
            media_id=f"{external_id}/{index}",
        )
