"""Email out: an agent's reply sent over SMTP with aiosmtplib, threaded into the customer's conversation.

The reply carries ``In-Reply-To`` and ``References`` naming the customer's message, and a Message-ID of our
own (``<message id>@<our domain>``), so the customer's answer to it names ours and joins the same thread.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from switchboard_common.events import Channel
from switchboard_ingest.channels.base import OutboundMessage, SendOutcome, SendResult
from switchboard_ingest.channels.reply_mail import ReplyHeaders


class SmtpSender:
    """Sends replies on ``Channel.EMAIL`` through one SMTP server (a ``Sender``)."""

    channels = (Channel.EMAIL,)  # the channels whose replies ``send`` delivers

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        starttls: bool,
        timeout_s: float,
        from_address: str,
    ) -> None:
        self._headers = ReplyHeaders(from_address)
        self._host = host
        self._port = port
        self._username = username or None
        self._password = password or None
        self._starttls = starttls
        self._timeout_s = timeout_s

    def message_id(self, message: OutboundMessage) -> str:
        """The Message-ID our reply carries, without brackets (what ``send`` reports as its id)."""
        return self._headers.message_id(message)

    def compose(self, message: OutboundMessage) -> EmailMessage:
        """The reply as a text/plain mail. ``InvalidRecipient`` unless the recipient is one address."""
        mail = EmailMessage(policy=policy.SMTP)
        for name, value in self._headers.of(message).items():
            mail[name] = value
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail.set_content(message.text)
        return mail

    async def send(self, message: OutboundMessage) -> SendOutcome:
        """SENT with the Message-ID; RETRY on a 4xx reply, a refused login, or no connection or answer in
        time; FAILED on a 5xx reply (the recipient refused included) or an unusable recipient. Never raises
        for the server's failures."""
        try:
            mail = self.compose(message)
        except ValueError as exc:  # InvalidRecipient, or a header the policy refuses (a line break)
            return SendOutcome(SendResult.FAILED, error_code="invalid_recipient", error_reason=str(exc))
        try:
            # One connection per reply: replies are few and far between next to what a connection costs
            # to keep alive, and a fresh one never reuses a session the server has quietly dropped.
            await aiosmtplib.send(
                mail,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            if refused is None:
                return SendOutcome(SendResult.FAILED, error_code="recipient_refused", error_reason=str(exc))
            return _reply_outcome(refused.code, refused.message)
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our credentials, not the reply: retried, so replies go out once they are fixed (and are dead
            # lettered after the bounded attempts if they never are).
            return SendOutcome(SendResult.RETRY, error_code=str(exc.code), error_reason=exc.message)
        except aiosmtplib.SMTPResponseException as exc:
            return _reply_outcome(exc.code, exc.message)
        except ValueError as exc:
            # aiosmtplib refuses a command carrying a control character: this reply can never be sent.
            return SendOutcome(SendResult.FAILED, error_code="invalid_message", error_reason=str(exc))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # No connection, no answer in time, a dropped session, STARTTLS or AUTH not offered. A timeout
            # after DATA may mean the server took it: the retry then carries the same Message-ID, by which
            # mail clients recognise the repeat.
            return SendOutcome(SendResult.RETRY, error_code="connection", error_reason=str(exc) or repr(exc))
        return SendOutcome(SendResult.SENT, external_id=self.message_id(message))


def _reply_outcome(code: int, reply: str) -> SendOutcome:
    result = SendResult.FAILED if 500 <= code < 600 else SendResult.RETRY
    return SendOutcome(result, error_code=str(code), error_reason=reply or f"SMTP {code}")
