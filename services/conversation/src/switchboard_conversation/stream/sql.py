"""SQL fragments the writers of the feed share, so an item of one kind has one shape whoever writes it.

Feed rows are inserted inside the statements that make the change they report (one statement per
batch, whatever its size); ``ON CONFLICT DO NOTHING`` on the item's natural key
``(agent_id, kind, item_key)`` makes a redelivered event add nothing. A trigger on the table notifies the
streams when the transaction commits.
"""

from __future__ import annotations


def micros(at: str) -> str:
    """An instant as exact integer microseconds since the epoch: part of an item key, so the key does not
    depend on the session's time zone or its text format."""
    return f"(extract(epoch FROM {at}) * 1000000)::bigint::text"


def message_data(row: str) -> str:
    """A ``message`` item's data from a row with the columns of ``conversation.messages``."""
    return (
        f"jsonb_build_object('message_id', {row}.id, 'direction', {row}.direction, 'channel', {row}.channel, "
        f"'text', {row}.body, 'sent_at', {row}.sent_at, 'author_agent_id', {row}.author_agent_id, "
        f"'delivery_status', {row}.delivery_status)"
    )


INSERT = "INSERT INTO conversation.agent_feed (agent_id, kind, item_key, conversation_id, data)"
