"""What an agent's stream carries: the kinds of item, and the JSON of each (``docs/agent-stream.md``)."""

from __future__ import annotations

from enum import StrEnum


class FeedKind(StrEnum):
    """The SSE ``event`` name of an item; its ``data`` always has ``agent_id``, ``conversation_id`` and
    ``at`` besides what the kind adds."""

    MESSAGE = "message"  # a customer's message, an agent's reply or an internal note in my conversation
    DELIVERY = "delivery"  # a reply of my conversation moved on: sent, delivered, read or failed
    ASSIGNED = "assigned"  # a conversation was assigned to me
    REQUEUED = "requeued"  # a conversation was taken from me and waits again
    RESOLVED = "resolved"  # my conversation was resolved
    REOPENED = "reopened"  # a conversation I had, resolved, came back (it waits for an agent)
    OFFERED = "offered"  # the router offers me a conversation, until expires_at
    OFFER_DECLINED = "offer_declined"  # an offer to me ended: I declined it
    OFFER_TIMED_OUT = "offer_timed_out"  # an offer to me ended: it lapsed
