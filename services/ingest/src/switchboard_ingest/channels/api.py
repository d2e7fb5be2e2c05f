"""The generic API channel's way out: a reply is POSTed as JSON to the integrator's URL, signed the way
Slack signs its requests (``v0=hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + body))``), so the
receiver can check it came from Switchboard and is fresh. Its way in is ``POST /v1/messages``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from switchboard_ingest.channels.base import OutboundMessage, SendOutcome, http_outcome

SIGNATURE_HEADER = "X-Switchboard-Signature"
TIMESTAMP_HEADER = "X-Switchboard-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


class ApiChannel:
    def __init__(self, *, reply_url: str, reply_secret: str) -> None:
        self._url = reply_url
        self._secret = reply_secret

    def build(self, message: OutboundMessage) -> httpx.Request:
        body = json.dumps(
            {
                "message_id": str(message.message_id),
                "customer": {"id": message.recipient},
                "text": message.text,
            },
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        return httpx.Request(
            "POST",
            self._url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Switchboard-Message-Id": str(message.message_id),
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(self._secret, timestamp, body),
            },
        )

    def outcome(self, response: httpx.Response) -> SendOutcome:
        # The receiver has no id of its own to give: ours identifies the reply to it.
        message_id = response.request.headers.get("x-switchboard-message-id")
        return http_outcome(response, message_id, None, None)
