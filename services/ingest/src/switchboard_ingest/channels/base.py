"""The one small protocol every provider adapter implements.

Inbound: ``verify`` checks the request's signature on the raw bytes (before anything is parsed), then
``parse`` turns the provider's payload into canonical messages and delivery statuses. Outbound: ``build``
makes the provider's send request for one message, and ``outcome`` reads the provider's answer. Adapters
are pure: no I/O, no clock except what the request carries, so each is unit-tested against the payload
samples of its provider's documentation.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

import httpx

from switchboard_common.events import Attachment, Channel, CustomerIdentity, DeliveryState


class SignatureInvalid(Exception):
    """The request does not carry a valid signature of its provider (answered 401, nothing parsed)."""


class PayloadInvalid(Exception):
    """The payload is not what the provider sends (answered 400 with this reason)."""


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider's request as it arrived."""

    body: bytes  # the raw bytes: signatures are computed over them, never over a re-serialization
    headers: Mapping[str, str]  # names in lower case
    url: str  # the URL the provider called (the configured public URL when behind a proxy), query included
    query: Mapping[str, str] = field(default_factory=dict)
    # When it arrived: what freshness checks (a signed timestamp's age) compare against.
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A customer's message in canonical form. ``external_id`` is the provider's id, unique within
    ``channel``: a provider's retry carries the same one."""

    channel: Channel
    external_id: str
    sender: CustomerIdentity
    text: str
    sent_at: datetime | None = None
    identities: tuple[CustomerIdentity, ...] = ()  # further identities the provider vouches for
    display_name: str | None = None
    attachments: tuple[Attachment, ...] = ()
    content_kind: str | None = None  # see MessageReceived.content_kind
    # Email: the subject; the whole text as written (``text`` is what is shown: quoted history and the
    # signature stripped); the Message-IDs it answers (In-Reply-To first, then References, newest first).
    subject: str | None = None
    original_text: str | None = None
    thread_refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedStatus:
    """A provider's report on a message we sent: ``external_id`` is the id the provider gave it."""

    channel: Channel
    external_id: str
    status: DeliveryState
    at: datetime | None = None
    error_code: str | None = None
    error_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    messages: tuple[ParsedMessage, ...] = ()
    statuses: tuple[ParsedStatus, ...] = ()
    # Single-use values the provider signed (Mailgun's token): recorded with the items, so the same value
    # presented again with other content is refused as a replay.
    replay_keys: tuple[str, ...] = ()


class InboundAdapter(Protocol):
    def verify(self, request: WebhookRequest) -> None:
        """Raise ``SignatureInvalid`` unless the request is signed by the provider (constant time)."""

    def parse(self, request: WebhookRequest) -> Parsed:
        """The messages and statuses in a verified request; ``PayloadInvalid`` when it is malformed."""


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One reply to send: ``recipient`` is the customer's address on ``channel``. Email replies carry the
    subject and the Message-IDs of the customer's message they answer, so they thread in the customer's
    mail client."""

    message_id: uuid.UUID
    channel: Channel
    recipient: str
    text: str
    subject: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


class SendResult(StrEnum):
    SENT = "sent"  # the provider took it; ``external_id`` is its id
    RETRY = "retry"  # try again later (429, 5xx, a timeout); ``retry_after`` when the provider said
    FAILED = "failed"  # final: the provider refused it (a permanent 4xx)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    result: SendResult
    external_id: str | None = None
    retry_after: float | None = None  # seconds
    error_code: str | None = None
    error_reason: str | None = None


@runtime_checkable
class OutboundAdapter(Protocol):
    """A provider reached over HTTP: the dispatcher sends what ``build`` makes on its shared client."""

    def build(self, message: OutboundMessage) -> httpx.Request:
        """The provider's send request for ``message``, authenticated."""

    def outcome(self, response: httpx.Response) -> SendOutcome:
        """What the provider's answer means (see ``http_outcome``)."""


class Sender(Protocol):
    """A channel that delivers by other means than one HTTP request (SMTP, the web chat stream)."""

    async def send(self, message: OutboundMessage) -> SendOutcome:
        """Deliver ``message``; never raises for the provider's failures (they are outcomes)."""


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds, from its delay-seconds or HTTP-date form; none when absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; a malformed one may lack the zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def json_object(response: httpx.Response) -> dict[str, object]:
    """A provider's answer as a JSON object; empty when it is not one (a proxy's HTML page, plain text)."""
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return {}
    return body if isinstance(body, dict) else {}


def http_outcome(
    response: httpx.Response, external_id: str | None, error_code: str | None, error_reason: str | None
) -> SendOutcome:
    """The common reading of a provider's HTTP answer: 2xx with an id is sent; 429, 408 and 5xx are
    retried (honouring ``Retry-After``); any other 4xx is final. The adapter extracts the id and the
    provider's error from the body."""
    status = response.status_code
    if 200 <= status < 300:
        # Taken even without an id (then later status callbacks cannot be matched to it); sending it
        # again would reach the customer twice.
        return SendOutcome(SendResult.SENT, external_id=external_id or None)
    reason = error_reason or f"HTTP {status}"
    if status in (408, 429) or status >= 500:
        return SendOutcome(
            SendResult.RETRY,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
            error_code=error_code,
            error_reason=reason,
        )
    return SendOutcome(SendResult.FAILED, error_code=error_code or str(status), error_reason=reason)
