"""The web chat channel's way out: the dispatcher hands a reply to ``WebchatSender``, which stores it for the
visitor's streams (``ingest.webchat_outbox``) and wakes them. "Sent" means durable and on its way to every
open stream of the identity, and to any that connects later; the widget's read report says more."""

from __future__ import annotations

import logging
from functools import partial

from switchboard_common.db.database import after_commit, database_unavailable
from switchboard_ingest.channels.base import OutboundMessage, SendOutcome, SendResult
from switchboard_ingest.webchat import repository
from switchboard_ingest.webchat.stream import WebchatHub
from switchboard_ingest.webchat.tokens import USER_PREFIX, VISITOR_PREFIX

log = logging.getLogger(__name__)

EXTERNAL_ID_PREFIX = "webchat:"


def external_id(seq: int) -> str:
    """The reply's id on this channel, which read reports name: its stream event id."""
    return f"{EXTERNAL_ID_PREFIX}{seq}"


class WebchatSender:
    """Implements ``channels.base.Sender`` for ``Channel.WEBCHAT``."""

    def __init__(self, hub: WebchatHub) -> None:
        self._hub = hub

    async def send(self, message: OutboundMessage) -> SendOutcome:
        recipient = message.recipient
        if not recipient.startswith((USER_PREFIX, VISITOR_PREFIX)):
            return SendOutcome(
                SendResult.FAILED,
                error_code="unsendable",
                error_reason=f"not a web chat identity: {recipient[:80]!r}",
            )
        try:
            async with self._hub.unit_of_work() as session:
                seq, new = await repository.record_reply(session, recipient, message.message_id, message.text)
                if new:
                    after_commit(session, partial(self._hub.wake, recipient))
        except Exception as exc:
            # Never raised to the dispatcher: a failure is an outcome, retried on its schedule.
            if database_unavailable(exc):
                return SendOutcome(SendResult.RETRY, error_code="unavailable", error_reason=repr(exc))
            log.exception("storing a web chat reply failed", extra={"message_id": str(message.message_id)})
            return SendOutcome(SendResult.RETRY, error_code="internal_error", error_reason=repr(exc))
        return SendOutcome(SendResult.SENT, external_id=external_id(seq))
