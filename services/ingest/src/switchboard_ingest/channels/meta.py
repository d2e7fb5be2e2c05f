"""What WhatsApp Cloud API, Messenger and Instagram share: they are all Meta Graph webhooks, signed the
same way, verified by the same GET handshake, and their send APIs answer with the same Graph errors.

Pure helpers, no I/O: the adapters in ``whatsapp.py`` and ``messenger.py`` build on them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from switchboard_ingest.channels.base import (
    PayloadInvalid,
    SendOutcome,
    SendResult,
    SignatureInvalid,
    WebhookRequest,
    constant_time_equal,
    http_outcome,
    retry_after_seconds,
)

JSONObject = dict[str, Any]

SIGNATURE_HEADER = "x-hub-signature-256"

# Graph answers throttling and temporary trouble with HTTP 400 and one of these codes, so the status alone
# would make a rate-limited reply fail for good. Graph: 2 temporary service error, 4 app rate limit,
# 17 user rate limit, 32 page rate limit, 613 custom rate limit; WhatsApp: 80007 account rate limit,
# 130429 throughput reached, 131056 pair rate limit (one customer written to too often).
TRANSIENT_GRAPH_CODES = frozenset({"2", "4", "17", "32", "613", "80007", "130429", "131056"})


# --- inbound: signature and handshake -------------------------------------------------------------------


def verify_signature(app_secret: str, request: WebhookRequest) -> None:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``, compared in constant time."""
    if not app_secret:
        # Fail closed: an HMAC keyed with "" is one anybody can compute.
        raise SignatureInvalid("no app secret is configured")
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        raise SignatureInvalid("missing X-Hub-Signature-256 header")
    scheme, _, received = header.strip().partition("=")
    if scheme != "sha256" or not received:
        raise SignatureInvalid("malformed X-Hub-Signature-256 header")
    expected = hmac.new(app_secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not constant_time_equal(expected, received):
        raise SignatureInvalid("X-Hub-Signature-256 does not match the body")


def handshake(verify_token: str, query: Mapping[str, str]) -> str:
    """The ``hub.challenge`` to answer Meta's GET verification with (200, as the plain body), when
    ``hub.mode`` is ``subscribe`` and ``hub.verify_token`` is ours; else ``SignatureInvalid`` (answer 403)."""
    mode = query.get("hub.mode")
    token = query.get("hub.verify_token")
    challenge = query.get("hub.challenge")
    if mode != "subscribe" or token is None or challenge is None or not verify_token:
        raise SignatureInvalid("not a subscription handshake")
    if not constant_time_equal(token, verify_token):
        raise SignatureInvalid("hub.verify_token does not match")
    return challenge


# --- inbound: reading the JSON --------------------------------------------------------------------------


def load_object(body: bytes) -> JSONObject:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PayloadInvalid("body is not JSON") from exc
    if not isinstance(data, dict):
        raise PayloadInvalid("body is not a JSON object")
    return data


def require_object(value: object, where: str) -> JSONObject:
    if not isinstance(value, dict):
        raise PayloadInvalid(f"{where} must be an object")
    return value


def object_list(value: object, where: str, *, required: bool = False) -> list[JSONObject]:
    """A list of objects; an absent one is empty unless ``required``."""
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PayloadInvalid(f"{where} must be a list of objects")
    return value


def require_str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise PayloadInvalid(f"{where} must be a non-empty string")
    return value


def optional_str(value: object) -> str | None:
    """A display field: anything but a non-empty string counts as absent."""
    return value if isinstance(value, str) and value else None


def unix_time(value: object, where: str, *, millis: bool = False) -> datetime | None:
    """A unix timestamp (seconds, or milliseconds), as a number or a string of digits, in aware UTC."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadInvalid(f"{where} must be a unix timestamp")
    try:
        return datetime.fromtimestamp(value / 1000 if millis else value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise PayloadInvalid(f"{where} is out of range") from exc


# --- outbound: the Graph send APIs' answers -------------------------------------------------------------


def response_object(response: httpx.Response) -> JSONObject | None:
    """The answer's JSON object, if it is one (a proxy's HTML error page is not)."""
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def graph_outcome(response: httpx.Response, body: JSONObject | None, external_id: str | None) -> SendOutcome:
    """The outcome of a Graph send, with ``{"error": {"message", "type", "code", "error_subcode",
    "fbtrace_id"}}`` read for the code and reason. Throttling and temporary errors are retried whatever the
    HTTP status (see ``TRANSIENT_GRAPH_CODES``); Graph also flags some errors ``is_transient``."""
    error = body.get("error") if body is not None else None
    if not isinstance(error, dict):
        return http_outcome(response, external_id, None, None)
    code = error.get("code")
    error_code = (
        str(code) if isinstance(code, int | str) and not isinstance(code, bool) and code != "" else None
    )
    reason = optional_str(error.get("message"))
    transient = error.get("is_transient") is True or error_code in TRANSIENT_GRAPH_CODES
    if transient and 400 <= response.status_code < 500:
        return SendOutcome(
            SendResult.RETRY,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
            error_code=error_code,
            error_reason=reason or f"HTTP {response.status_code}",
        )
    return http_outcome(response, external_id, error_code, reason)
