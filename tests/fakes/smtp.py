"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, recording what it accepts and told to refuse the
next RCPT or DATA with a given reply, as a real mail server would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from switchboard_devstack.ports import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class MailServer:
    """aiosmtpd handler: records each accepted message; ``refuse_rcpt`` / ``refuse_data`` answer the next
    RCPT / DATA with the given reply instead."""

    received: list[Received] = field(default_factory=list)
    refuse_rcpt: str | None = None
    refuse_data: str | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse_rcpt is not None:
            reply, self.refuse_rcpt = self.refuse_rcpt, None
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_data is not None:
            reply, self.refuse_data = self.refuse_data, None
            return reply
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        return "250 2.0.0 Ok: queued"


@dataclass
class Running:
    handler: MailServer
    port: int


@contextmanager
def mail_server() -> Iterator[Running]:
    handler = MailServer()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Running(handler, port)
    finally:
        controller.stop()
