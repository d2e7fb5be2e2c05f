"""Replies by email through a real SMTP server: aiosmtpd on 127.0.0.1, recording what it accepts and told
to refuse the next RCPT or DATA with a given reply, as a real mail server would."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from switchboard_common.events import Channel
from switchboard_devstack.ports import free_port
from switchboard_ingest.channels.base import OutboundMessage, SendResult
from switchboard_ingest.channels.reply_mail import reply_subject
from switchboard_ingest.channels.smtp import SmtpSender
from tests.fakes.smtp import MailServer, Running, mail_server

FROM = "Example Support <support@example.com>"


@pytest.fixture
def smtp_server() -> Iterator[Running]:
    with mail_server() as running:
        yield running


def sender(port: int, **overrides: Any) -> SmtpSender:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": None,
        "password": None,
        "starttls": False,
        "timeout_s": 5.0,
        "from_address": FROM,
    }
    return SmtpSender(**(settings | overrides))


def reply(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": uuid.UUID("0b6f3c1e-8d0a-4f3e-9a51-2c7d4e5f6a7b"),
        "channel": Channel.EMAIL,
        "recipient": "jane.doe@example.org",
        "text": "Hello Jane,\n\nyour replacement ships today.\n\nKind regards, Support",
        "subject": "Order 1234 has not arrived",
        "in_reply_to": "CAF=7mA3xQ+ZK1b9nY0@mail.gmail.com",
        "references": ("first-0001@example.org", "CAF=7mA3xQ+ZK1b9nY0@mail.gmail.com"),
    }
    return OutboundMessage(**(fields | overrides))


async def test_a_reply_is_delivered_threaded_to_the_customer(smtp_server: Running) -> None:
    outcome = await sender(smtp_server.port).send(reply())

    expected_id = "0b6f3c1e-8d0a-4f3e-9a51-2c7d4e5f6a7b@example.com"
    assert outcome.result is SendResult.SENT
    assert outcome.external_id == expected_id
    (received,) = smtp_server.handler.received
    assert received.mail_from == "support@example.com"
    assert received.rcpt_tos == ["jane.doe@example.org"]
    mail = received.message
    assert mail["From"] == FROM
    assert mail["To"] == "jane.doe@example.org"
    assert mail["Subject"] == "Re: Order 1234 has not arrived"
    assert mail["Message-ID"] == f"<{expected_id}>"
    assert mail["In-Reply-To"] == "<CAF=7mA3xQ+ZK1b9nY0@mail.gmail.com>"
    assert mail["References"] == "<first-0001@example.org> <CAF=7mA3xQ+ZK1b9nY0@mail.gmail.com>"
    assert mail["Date"] is not None
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content().replace("\r\n", "\n")  # the wire's line endings
    assert body == "Hello Jane,\n\nyour replacement ships today.\n\nKind regards, Support\n"


async def test_non_ascii_text_and_subject_arrive_intact(smtp_server: Running) -> None:
    message = reply(subject="Bestellung für München", text="Grüße aus dem Support \u2013 wir kümmern uns.")

    outcome = await sender(smtp_server.port).send(message)

    assert outcome.result is SendResult.SENT
    mail = smtp_server.handler.received[0].message
    assert mail["Subject"] == "Re: Bestellung für München"
    assert mail.get_content().rstrip() == "Grüße aus dem Support \u2013 wir kümmern uns."


async def test_a_reply_without_thread_has_no_threading_headers(smtp_server: Running) -> None:
    outcome = await sender(smtp_server.port).send(reply(subject=None, in_reply_to=None, references=()))

    assert outcome.result is SendResult.SENT
    mail = smtp_server.handler.received[0].message
    assert mail["Subject"] == "Your conversation with us"
    assert mail["In-Reply-To"] is None
    assert mail["References"] is None


@pytest.mark.parametrize(
    ("refusal", "result", "code"),
    [
        ("rcpt", SendResult.RETRY, "451"),
        ("rcpt", SendResult.FAILED, "550"),
        ("data", SendResult.RETRY, "451"),
        ("data", SendResult.FAILED, "550"),
    ],
)
async def test_refusals_are_retried_when_temporary_and_final_when_permanent(
    smtp_server: Running, refusal: str, result: SendResult, code: str
) -> None:
    text = "4.7.1 Greylisted, try again later" if code == "451" else "5.1.1 No such user here"
    if refusal == "rcpt":
        smtp_server.handler.refuse_rcpt = f"{code} {text}"
    else:
        smtp_server.handler.refuse_data = f"{code} {text}"

    outcome = await sender(smtp_server.port).send(reply())

    assert outcome.result is result
    assert outcome.error_code == code
    assert text in (outcome.error_reason or "")
    assert outcome.external_id is None
    assert smtp_server.handler.received == []


async def test_nothing_listening_is_retried() -> None:
    outcome = await sender(free_port()).send(reply())

    assert outcome.result is SendResult.RETRY
    assert outcome.error_code == "connection"


async def test_a_server_that_never_answers_is_retried_after_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await sender(port, timeout_s=0.3).send(reply())
    finally:
        server.close()
        await server.wait_closed()

    assert outcome.result is SendResult.RETRY


def accept_only(username: bytes, password: bytes) -> Any:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (username, password)
        return AuthResult(success=ok, handled=False)

    return authenticate


@pytest.fixture
def smtp_server_with_login() -> Iterator[Running]:
    handler = MailServer()
    port = free_port()
    # Plain-text AUTH is allowed only because this server is on the loopback interface of a test.
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=accept_only(b"agent-mailer", b"right-password"),
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield Running(handler, port)
    finally:
        controller.stop()


async def test_login_is_used_and_a_refused_login_is_retried(smtp_server_with_login: Running) -> None:
    port = smtp_server_with_login.port

    good = await sender(port, username="agent-mailer", password="right-password").send(reply())
    bad = await sender(port, username="agent-mailer", password="wrong-password").send(reply())

    assert good.result is SendResult.SENT
    assert bad.result is SendResult.RETRY  # our credentials are wrong, not the reply
    assert bad.error_code == "535"
    assert len(smtp_server_with_login.handler.received) == 1


async def test_starttls_required_but_not_offered_is_retried(smtp_server: Running) -> None:
    outcome = await sender(smtp_server.port, starttls=True).send(reply())

    assert outcome.result is SendResult.RETRY
    assert smtp_server.handler.received == []


@pytest.mark.parametrize(
    "recipient",
    ["not an address", "jane@example.org, mallory@example.net", "jane@example.org\r\nBcc: x@example.net", ""],
)
async def test_an_unusable_recipient_fails_without_sending(smtp_server: Running, recipient: str) -> None:
    outcome = await sender(smtp_server.port).send(reply(recipient=recipient))

    assert outcome.result is SendResult.FAILED
    assert outcome.error_code == "invalid_recipient"
    assert smtp_server.handler.received == []


async def test_message_ids_that_could_break_a_header_are_left_out(smtp_server: Running) -> None:
    message = reply(in_reply_to="evil>\r\nBcc: x@example.net", references=("ok@example.org", "bad id@x"))

    outcome = await sender(smtp_server.port).send(message)

    assert outcome.result is SendResult.SENT
    mail = smtp_server.handler.received[0].message
    assert mail["In-Reply-To"] is None
    assert mail["References"] == "<ok@example.org>"
    assert mail["Bcc"] is None


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Order 1234", "Re: Order 1234"),
        ("Re: Order 1234", "Re: Order 1234"),
        ("RE: Order 1234", "RE: Order 1234"),
        ("re:Order 1234", "re:Order 1234"),
        ("  Order\r\n 1234 ", "Re: Order 1234"),
        (None, "Your conversation with us"),
        ("   ", "Your conversation with us"),
    ],
)
def test_reply_subject(subject: str | None, expected: str) -> None:
    assert reply_subject(subject) == expected


@pytest.mark.parametrize("address", ["support", "Support <>", "a@example.com, b@example.com", ""])
def test_the_from_address_must_be_one_address(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        sender(25, from_address=address)
