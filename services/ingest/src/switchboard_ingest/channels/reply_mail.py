"""What an agent's email reply says, whichever way it leaves (SMTP, Mailgun's API).

The reply carries ``In-Reply-To`` and ``References`` naming the customer's message, and a Message-ID of our
own (``<message id>@<our domain>``), so the customer's answer to it names ours and joins the same thread.
"""

from __future__ import annotations

from email import policy
from email.headerregistry import AddressHeader

from switchboard_ingest.channels.base import OutboundMessage

DEFAULT_SUBJECT = "Your conversation with us"
# RFC 5322 suggests trimming References; the newest ids are the ones mail clients thread by.
MAX_REFERENCES = 20


class InvalidRecipient(ValueError):
    """The reply's recipient is not one email address."""


class ReplyHeaders:
    """The headers of our replies from ``from_address``."""

    def __init__(self, from_address: str) -> None:
        # The domain of our Message-IDs, from the address ("Support <support@example.com>" included).
        self.domain = single_address(from_address).rpartition("@")[2]
        self.from_address = from_address

    def message_id(self, message: OutboundMessage) -> str:
        """The Message-ID our reply carries, without brackets (the reply's provider id)."""
        return f"{message.message_id}@{self.domain}"

    def of(self, message: OutboundMessage) -> dict[str, str]:
        """From, To, Subject, Message-ID, and In-Reply-To and References when the customer's message had
        usable ids. ``InvalidRecipient`` unless the recipient is one address."""
        headers = {
            "From": self.from_address,
            "To": single_address(message.recipient),
            "Subject": reply_subject(message.subject),
            "Message-ID": f"<{self.message_id(message)}>",
        }
        parent = _valid_id(message.in_reply_to)
        if parent:
            headers["In-Reply-To"] = f"<{parent}>"
        references = [ref for ref in map(_valid_id, message.references) if ref][-MAX_REFERENCES:]
        if references:
            headers["References"] = " ".join(f"<{ref}>" for ref in references)
        return headers


def reply_subject(subject: str | None) -> str:
    """``Re: <subject>`` (not doubled), or a neutral subject for a conversation that had none."""
    text = " ".join((subject or "").split())  # a customer's subject must not break our header
    if not text:
        return DEFAULT_SUBJECT
    return text if text[:3].lower() == "re:" else f"Re: {text}"


def single_address(value: str) -> str:
    """The one address in ``value`` (``InvalidRecipient`` otherwise)."""
    try:
        header = policy.SMTP.header_factory("to", value)
    except (ValueError, IndexError, TypeError) as exc:
        raise InvalidRecipient(f"not an email address: {value!r}") from exc
    addresses = header.addresses if isinstance(header, AddressHeader) else ()
    if len(addresses) != 1 or not (addresses[0].username and addresses[0].domain) or header.defects:
        raise InvalidRecipient(f"not one email address: {value!r}")
    return addresses[0].addr_spec


def _valid_id(value: str | None) -> str | None:
    """A Message-ID fit for our headers (brackets added there): anything with whitespace or brackets, which
    could break or inject a header, is left out."""
    text = (value or "").strip().removeprefix("<").removesuffix(">")
    if not (text.isascii() and text.isprintable()) or "@" not in text or any(c in " <>" for c in text):
        return None
    return text
