"""SES receiving through SNS: SNS message signatures (v1 SHA1, v2 SHA256) made here with a key and a
self-signed certificate generated for the test, over the canonical string as AWS documents it
(https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html), built here by hand;
the certificate URL rules; SES receipt notifications with the mail in ``content``; the certificate cache."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from switchboard_common.errors import Unavailable
from switchboard_ingest.channels.base import PayloadInvalid, SignatureInvalid
from switchboard_ingest.channels.email import parse_mime
from switchboard_ingest.channels.ses import (
    CertificateCache,
    is_sns_certificate_url,
    is_sns_url,
    parse_sns,
    ses_mime,
    sns_string_to_sign,
    verify_sns,
)

CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
)
TOPIC = "arn:aws:sns:us-east-1:123456789012:inbound-mail"

MIME = (
    "From: Jane Doe <jane@example.org>\r\n"
    "To: support@example.com\r\n"
    "Subject: Parcel missing\r\n"
    "Date: Tue, 4 Mar 2025 10:00:00 +0000\r\n"
    "Message-ID: <ses-sample-1@example.org>\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "\r\n"
    "My parcel never came. \u2013 Jane\r\n"
)


def make_certificate(common_name: str = "sns.amazonaws.com") -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


KEY, CERT_PEM = make_certificate()


def receipt(content: str, encoding: str | None) -> str:
    action: dict[str, Any] = {"type": "SNS", "topicArn": TOPIC}
    if encoding is not None:
        action["encoding"] = encoding
    # The shape of "Notification of an SNS action" in the SES developer guide.
    return json.dumps(
        {
            "notificationType": "Received",
            "receipt": {
                "timestamp": "2025-03-04T10:00:01.936Z",
                "processingTimeMillis": 222,
                "recipients": ["support@example.com"],
                "spamVerdict": {"status": "PASS"},
                "virusVerdict": {"status": "PASS"},
                "spfVerdict": {"status": "PASS"},
                "dkimVerdict": {"status": "PASS"},
                "action": action,
            },
            "mail": {
                "timestamp": "2025-03-04T10:00:01.936Z",
                "source": "jane@example.org",
                "messageId": "d6iitobk75ur44p8kdnnp7g2n800",
                "destination": ["support@example.com"],
                "headersTruncated": False,
            },
            "content": content,
        }
    )


def canonical(message: dict[str, Any]) -> bytes:
    """The string to sign, as AWS's documentation spells it out, field by field."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = ""
    for name in names:
        if name in message:
            text += f"{name}\n{message[name]}\n"
    return text.encode()


def signed(message: dict[str, Any], version: str = "1", key: rsa.RSAPrivateKey = KEY) -> dict[str, Any]:
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    signature = key.sign(canonical(message), padding.PKCS1v15(), algorithm)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": CERT_URL,
    }


def notification(content: str = MIME, encoding: str | None = "UTF8", **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Receipt Notification",
        "Message": receipt(content, encoding),
        "Timestamp": "2025-03-04T10:00:02.655Z",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
        **extra,
    }


CONFIRMATION = {
    "Type": "SubscriptionConfirmation",
    "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
    "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
    "TopicArn": TOPIC,
    "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
    "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=2336",
    "Timestamp": "2025-03-04T09:59:59.807Z",
}


# --- signatures ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_notification_signed_by_the_certificate_verifies(version: str) -> None:
    verify_sns(signed(notification(), version), CERT_PEM)


def test_a_subscription_confirmation_verifies() -> None:
    verify_sns(signed(CONFIRMATION, "2"), CERT_PEM)


def test_a_notification_without_subject_verifies() -> None:
    message = notification()
    del message["Subject"]

    verify_sns(signed(message), CERT_PEM)


def test_the_string_to_sign_is_the_documented_one() -> None:
    message = notification()

    assert sns_string_to_sign(message) == canonical(message)
    assert sns_string_to_sign(CONFIRMATION) == canonical(CONFIRMATION)
    assert sns_string_to_sign(CONFIRMATION).startswith(b"Message\nYou have chosen")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: {**m, "Message": m["Message"].replace("Parcel missing", "Refund now")},
        lambda m: {**m, "TopicArn": "arn:aws:sns:us-east-1:999999999999:attacker"},
        lambda m: {**m, "Subject": "Another subject"},
        lambda m: {k: v for k, v in m.items() if k != "Subject"},
        lambda m: {**m, "SignatureVersion": "2"},  # a v1 signature read as v2
        lambda m: {**m, "SignatureVersion": "3"},
        lambda m: {**m, "Signature": "not base64 !"},
        lambda m: {**m, "Signature": base64.b64encode(b"\x00" * 256).decode()},
    ],
    ids=[
        "message",
        "topic",
        "subject",
        "subject-removed",
        "version-swapped",
        "version-unknown",
        "not-base64",
        "zeros",
    ],
)
def test_a_tampered_message_is_refused(tamper: Any) -> None:
    with pytest.raises(SignatureInvalid):
        verify_sns(tamper(signed(notification(), "1")), CERT_PEM)


def test_a_signature_by_another_key_is_refused() -> None:
    other_key, _ = make_certificate()

    with pytest.raises(SignatureInvalid):
        verify_sns(signed(notification(), "2", key=other_key), CERT_PEM)


def test_a_certificate_that_is_no_certificate_is_refused() -> None:
    with pytest.raises(SignatureInvalid):
        verify_sns(signed(notification()), b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


# --- the certificate URL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://SNS.US-EAST-1.AMAZONAWS.COM/SimpleNotificationService-abc.pem",
    ],
)
def test_sns_certificate_urls_are_accepted(url: str) -> None:
    assert is_sns_certificate_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-abc.pem",
        "https://user:pass@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com:/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com./SimpleNotificationService-abc.pem",
        "https://s3.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://evilsns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.txt",
        "https://sns.us-east-1.amazonaws.com/x.pem?redirect=https://evil.com/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem#frag",
        " https://sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem\n",
        "https://sns.us-east-1.amazonaws.com:99999999/x.pem",
        "",
    ],
)
def test_other_certificate_urls_are_refused(url: str) -> None:
    assert not is_sns_certificate_url(url)


def test_sns_urls_include_the_subscribe_url_and_refuse_other_hosts() -> None:
    assert is_sns_url(str(CONFIRMATION["SubscribeURL"]))
    assert is_sns_url(CERT_URL)
    assert not is_sns_url("https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription")
    assert not is_sns_url("https://x@sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")
    assert not is_sns_url("http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")
    assert not is_sns_certificate_url(str(CONFIRMATION["SubscribeURL"]))  # no certificate there


# --- the SNS body and the SES notification ------------------------------------------------------------------


def test_parse_sns_reads_a_signed_notification() -> None:
    message = signed(notification())

    parsed = parse_sns(json.dumps(message).encode())

    assert parsed["Type"] == "Notification"
    assert parsed["TopicArn"] == TOPIC
    assert parsed["SigningCertURL"] == CERT_URL


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        json.dumps({k: v for k, v in signed(notification()).items() if k != "Signature"}).encode(),
        json.dumps({**signed(notification()), "Type": "Surprise"}).encode(),
        json.dumps({**signed(notification()), "Message": {"nested": "object"}}).encode(),
    ],
    ids=["text", "array", "not-utf8", "no-signature", "unknown-type", "message-not-string"],
)
def test_parse_sns_refuses_what_sns_does_not_send(body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        parse_sns(body)


def test_ses_mime_reads_utf8_content() -> None:
    raw = ses_mime(notification(MIME, "UTF8"))

    assert raw == MIME.encode()
    assert parse_mime(raw).text == "My parcel never came. \u2013 Jane"


def test_ses_mime_without_encoding_is_utf8() -> None:
    assert ses_mime(notification(MIME, None)) == MIME.encode()


def test_ses_mime_reads_base64_content() -> None:
    latin1 = (
        MIME.replace("UTF-8", "ISO-8859-1").replace("\u2013", "-").replace("never", "nie gekommen, Grüße")
    )
    raw = latin1.encode("iso-8859-1")

    assert ses_mime(notification(base64.b64encode(raw).decode(), "BASE64")) == raw
    assert "Grüße" in parse_mime(ses_mime(notification(base64.b64encode(raw).decode(), "BASE64"))).text


def test_ses_mime_refuses_a_notification_without_content() -> None:
    s3_alert = notification()
    s3_alert["Message"] = json.dumps({"notificationType": "Received", "receipt": {"action": {"type": "S3"}}})

    with pytest.raises(PayloadInvalid, match="S3 action is not supported"):
        ses_mime(s3_alert)


def test_ses_mime_refuses_what_is_not_a_notification() -> None:
    with pytest.raises(PayloadInvalid):
        ses_mime(CONFIRMATION)
    with pytest.raises(PayloadInvalid):
        ses_mime(notification() | {"Message": "plain text, not a receipt"})


# --- the certificate cache ---------------------------------------------------------------------------------


class CertificateServer:
    """An SNS host serving one certificate, counting the fetches."""

    def __init__(self, status: int = 200, body: bytes = CERT_PEM) -> None:
        self.fetches: list[str] = []
        self.status = status
        self.body = body

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches.append(str(request.url))
        return httpx.Response(self.status, content=self.body)


async def test_the_cache_fetches_each_certificate_once() -> None:
    server = CertificateServer()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as client:
        cache = CertificateCache(client)

        assert await cache.get(CERT_URL) == CERT_PEM
        assert await cache.get(CERT_URL) == CERT_PEM

    assert server.fetches == [CERT_URL]


async def test_an_expired_entry_is_fetched_again() -> None:
    server = CertificateServer()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as client:
        cache = CertificateCache(client, ttl_s=0)

        await cache.get(CERT_URL)
        await cache.get(CERT_URL)

    assert server.fetches == [CERT_URL, CERT_URL]


async def test_the_cache_refuses_other_hosts_without_fetching() -> None:
    server = CertificateServer()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as client:
        with pytest.raises(SignatureInvalid):
            await CertificateCache(client).get("https://evil.example.com/SimpleNotificationService-abc.pem")

    assert server.fetches == []


async def test_what_is_not_a_certificate_is_refused_and_not_cached() -> None:
    server = CertificateServer(body=b"<html>not a certificate</html>")
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as client:
        cache = CertificateCache(client)
        for _ in range(2):
            with pytest.raises(SignatureInvalid):
                await cache.get(CERT_URL)

    assert len(server.fetches) == 2


async def test_a_missing_certificate_is_a_bad_signature_and_an_outage_is_unavailable() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(CertificateServer(404).handle)) as client:
        with pytest.raises(SignatureInvalid):
            await CertificateCache(client).get(CERT_URL)
    async with httpx.AsyncClient(transport=httpx.MockTransport(CertificateServer(503).handle)) as client:
        with pytest.raises(Unavailable):
            await CertificateCache(client).get(CERT_URL)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(Unavailable):
            await CertificateCache(client).get(CERT_URL)


async def test_a_fetched_certificate_verifies_the_notification() -> None:
    message = parse_sns(json.dumps(signed(notification(), "2")).encode())
    async with httpx.AsyncClient(transport=httpx.MockTransport(CertificateServer().handle)) as client:
        pem = await CertificateCache(client).get(message["SigningCertURL"])

    verify_sns(message, pem)
    assert parse_mime(ses_mime(message)).external_id == "ses-sample-1@example.org"
