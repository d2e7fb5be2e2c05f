"""Logical topic names. Physical names add ``Settings.topic_prefix``; each has a ``<topic>.dlq`` twin."""

MESSAGES_INBOUND = "messages.inbound"
MESSAGES_OUTBOUND = "messages.outbound"
DELIVERY_EVENTS = "delivery.events"
CONVERSATION_EVENTS = "conversation.events"
ROUTING_EVENTS = "routing.events"
AGENT_EVENTS = "agent.events"

ALL = (
    MESSAGES_INBOUND,
    MESSAGES_OUTBOUND,
    DELIVERY_EVENTS,
    CONVERSATION_EVENTS,
    ROUTING_EVENTS,
    AGENT_EVENTS,
)
DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"
