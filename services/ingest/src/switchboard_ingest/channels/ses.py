"""Amazon SES receiving, delivered through Amazon SNS to an HTTPS subscription.

An SES receipt rule with an SNS action publishes each mail to a topic; SNS POSTs a JSON notification whose
``Message`` is the SES receipt notification, carrying the raw MIME in ``content`` (UTF-8 text or Base64,
per the action's encoding). Only the SNS action carries the mail: the S3 action (for mails over SNS's
150 KB) only says where it was stored, and is not supported.

SNS signs each POST (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):
RSA PKCS#1 v1.5 over a canonical string of the message's fields, SHA1 for SignatureVersion 1 and SHA256
for 2, with the key of the X.509 certificate at ``SigningCertURL``, which is trusted only when it is served
over HTTPS by an ``sns.<region>.amazonaws.com`` host. The caller also checks ``TopicArn`` against the
topics it subscribed to: anybody can publish signed SNS messages from a topic of their own.

Everything here is pure except ``CertificateCache.get``, the one fetch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from switchboard_common.errors import Unavailable
from switchboard_ingest.channels.base import PayloadInvalid, SignatureInvalid

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The fields each type's signature covers, in the order SNS joins them.
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: _CONFIRMATION_FIELDS,
    UNSUBSCRIBE_CONFIRMATION: _CONFIRMATION_FIELDS,
}
_OPTIONAL_FIELDS = frozenset({"Subject"})  # signed when present
_REQUIRED_FIELDS = ("Type", "MessageId", "TopicArn", "Message", "Timestamp")
_SIGNATURE_FIELDS = ("SignatureVersion", "Signature", "SigningCertURL")
_HASHES: dict[str, type[hashes.SHA1] | type[hashes.SHA256]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")


def is_sns_url(url: str) -> bool:
    """Whether ``url`` is on SNS's own endpoint: ``https://sns.<region>.amazonaws.com[.cn]/…``, with no
    user info or port that could make a client go elsewhere (a SubscribeURL, a certificate URL)."""
    if not url.isascii() or any(c <= " " or c == "\\" for c in url):
        return False  # whitespace, control characters and backslashes parse differently between clients
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = parts.hostname or ""
    return (
        parts.scheme == "https"
        and port is None
        and parts.netloc.lower() == host  # no user info, no empty port ("host:")
        and _SNS_HOST.fullmatch(host) is not None
    )


def is_sns_certificate_url(url: str) -> bool:
    """Whether ``url`` can serve an SNS signing certificate: an SNS URL (``is_sns_url``) whose path ends in
    ``.pem``, with no query or fragment."""
    parts = urlsplit(url) if is_sns_url(url) else None
    return parts is not None and parts.path.endswith(".pem") and not parts.query and not parts.fragment


def parse_sns(body: bytes) -> Mapping[str, Any]:
    """An SNS HTTP(S) message: a JSON object with string ``Type`` (Notification, SubscriptionConfirmation,
    UnsubscribeConfirmation), ``MessageId``, ``TopicArn``, ``Message``, ``Timestamp``,
    ``SignatureVersion``, ``Signature`` and ``SigningCertURL``. ``PayloadInvalid`` otherwise."""
    try:
        message = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise PayloadInvalid("body is not JSON") from exc
    if not isinstance(message, dict):
        raise PayloadInvalid("body is not a JSON object")
    for name in (*_REQUIRED_FIELDS, *_SIGNATURE_FIELDS):
        if not isinstance(message.get(name), str):
            raise PayloadInvalid(f"{name} is missing or not a string")
    if message["Type"] not in _SIGNED_FIELDS:
        raise PayloadInvalid(f"unknown Type {message['Type']!r}")
    return message


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical string SNS signs: ``name\\nvalue\\n`` for each signed field of the message's type, in
    SNS's order (Subject only when present). ``PayloadInvalid`` when a field it needs is missing."""
    kind = message.get("Type")
    fields = _SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise PayloadInvalid(f"unknown Type {kind!r}")
    lines: list[str] = []
    for name in fields:
        value = message.get(name)
        if value is None and name in _OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise PayloadInvalid(f"{name} is missing or not a string")
        lines += [name, value]
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def verify_sns(message: Mapping[str, Any], certificate_pem: bytes) -> None:
    """Raise ``SignatureInvalid`` unless ``Signature`` is the signature of the message's canonical string
    by the key of ``certificate_pem`` (which the caller fetched from the message's ``SigningCertURL``
    through ``CertificateCache``), with the hash its ``SignatureVersion`` names."""
    algorithm = _HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise SignatureInvalid("unsupported SignatureVersion")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        data = sns_string_to_sign(message)
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except (binascii.Error, ValueError, PayloadInvalid) as exc:
        raise SignatureInvalid(f"the message cannot be verified: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalid("the signing certificate does not hold an RSA key")
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise SignatureInvalid("Signature does not match the message") from exc


def ses_mime(message: Mapping[str, Any]) -> bytes:
    """The raw MIME of the mail in an SNS ``Notification`` from an SES receipt rule's SNS action.
    ``PayloadInvalid`` for other notifications, and for those without ``content`` (the S3 action's: not
    supported)."""
    if message.get("Type") != NOTIFICATION:
        raise PayloadInvalid("not an SNS Notification")
    try:
        receipt = json.loads(str(message.get("Message")))
    except ValueError as exc:
        raise PayloadInvalid("Message is not an SES receipt notification (not JSON)") from exc
    if not isinstance(receipt, dict):
        raise PayloadInvalid("Message is not an SES receipt notification")
    content = receipt.get("content")
    if not isinstance(content, str) or not content:
        raise PayloadInvalid(
            "the SES notification carries no content: only a receipt rule's SNS action includes the mail "
            "(the S3 action is not supported)"
        )
    if _encoding(receipt) == "BASE64":
        try:
            return base64.b64decode(content, validate=False)
        except binascii.Error as exc:
            raise PayloadInvalid("content is not Base64") from exc
    # UTF8 (the default): the mail as text. A lone surrogate (an escape in the JSON) cannot be encoded.
    return content.encode("utf-8", "replace")


def _encoding(receipt: Mapping[str, Any]) -> str:
    """``receipt.action.encoding``: "UTF8" (also when absent, SES's default) or "BASE64"."""
    details = receipt.get("receipt")
    action = details.get("action") if isinstance(details, dict) else None
    encoding = action.get("encoding") if isinstance(action, dict) else None
    return encoding.upper() if isinstance(encoding, str) else "UTF8"


class CertificateCache:
    """SNS signing certificates by URL, fetched once per ``ttl_s`` (SNS rotates them rarely), only from
    SNS hosts. Fetch failures are ``Unavailable`` (SNS retries the POST); a URL that is not an SNS one, or
    an answer that is not a certificate, is ``SignatureInvalid``."""

    def __init__(self, client: httpx.AsyncClient, ttl_s: float = 3600) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._lock = asyncio.Lock()  # a burst of notifications fetches a new certificate once

    async def get(self, url: str) -> bytes:
        if not is_sns_certificate_url(url):
            raise SignatureInvalid("SigningCertURL is not an Amazon SNS certificate URL")
        cached = self._fresh(url)
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._fresh(url)
            if cached is not None:
                return cached
            pem = await self._fetch(url)
            self._entries[url] = (time.monotonic() + self._ttl_s, pem)
            return pem

    def _fresh(self, url: str) -> bytes | None:
        entry = self._entries.get(url)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    async def _fetch(self, url: str) -> bytes:
        try:
            # No redirects: the host that was checked is the host that answers.
            response = await self._client.get(url, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the SNS signing certificate could not be fetched: {exc!r}") from exc
        status = response.status_code
        if status >= 500 or status == 429:
            raise Unavailable(f"the SNS signing certificate could not be fetched: HTTP {status}")
        if status != 200:
            raise SignatureInvalid(f"no SNS signing certificate at SigningCertURL (HTTP {status})")
        try:
            x509.load_pem_x509_certificate(response.content)
        except ValueError as exc:
            raise SignatureInvalid("SigningCertURL does not serve a PEM certificate") from exc
        return response.content
