"""What each event tells about its conversation: pure functions, dispatched by payload type."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import datetime

from switchboard_common.events import (
    ConversationAssigned,
    ConversationOpened,
    ConversationQueued,
    ConversationResolved,
    Payload,
)


@dataclass(frozen=True, slots=True)
class Facts:
    """The ``conversation_facts`` columns one or more events set; ``None`` means "not known here"."""

    channel: str | None = None
    agent_id: uuid.UUID | None = None
    opened_at: datetime | None = None
    queued_at: datetime | None = None
    assigned_at: datetime | None = None
    resolved_at: datetime | None = None

    def then(self, later: Facts) -> Facts:
        """These facts followed by ``later``: a column already known keeps its value (first wins, as the
        stored row does), so applying an event twice, or in any order, gives the same row."""
        known = {column: value for column in COLUMNS if (value := getattr(self, column)) is not None}
        return replace(later, **known)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Facts))


@functools.singledispatch
def facts_of(payload: Payload) -> tuple[uuid.UUID, Facts] | None:
    """The conversation and the facts an event sets; ``None`` for events that are only counted."""
    return None


@facts_of.register
def _opened(payload: ConversationOpened) -> tuple[uuid.UUID, Facts] | None:
    return payload.conversation_id, Facts(opened_at=payload.opened_at, channel=payload.channel.value)


@facts_of.register
def _queued(payload: ConversationQueued) -> tuple[uuid.UUID, Facts] | None:
    return payload.conversation_id, Facts(queued_at=payload.queued_at)


@facts_of.register
def _assigned(payload: ConversationAssigned) -> tuple[uuid.UUID, Facts] | None:
    # A conversation assigned at once has no conversation.queued event: its queued_at comes from here.
    return payload.conversation_id, Facts(
        queued_at=payload.queued_at, assigned_at=payload.assigned_at, agent_id=payload.agent_id
    )


@facts_of.register
def _resolved(payload: ConversationResolved) -> tuple[uuid.UUID, Facts] | None:
    return payload.conversation_id, Facts(resolved_at=payload.resolved_at)


def merge_facts(payloads: Iterable[Payload]) -> dict[uuid.UUID, Facts]:
    """The facts of ``payloads``, one entry per conversation (in order: the first value of a column wins),
    ready for one upsert, which may touch each row only once."""
    merged: dict[uuid.UUID, Facts] = {}
    for payload in payloads:
        found = facts_of(payload)
        if found is not None:
            conversation_id, facts = found
            earlier = merged.get(conversation_id)
            merged[conversation_id] = facts if earlier is None else earlier.then(facts)
    return merged
