"""The routing policy, pure: who may take a conversation, and who should.

* Eligible: online (the SQL only fetches online agents), every required skill, capacity left.
* Choice: the lowest load share (active / capacity), then the agent idle longest (never assigned first),
  then the agent id, so the result is deterministic.
* Queue order: priority (high first), then the oldest, then the conversation id.

The SQL fetches and locks candidates and writes the outcome; nothing here touches the database, so the
policy is unit-tested with plain values and a fixed clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Candidate:
    agent_id: uuid.UUID
    skills: frozenset[str]
    capacity: int
    active: int
    last_assigned_at: datetime | None


@dataclass(frozen=True, slots=True)
class Waiting:
    conversation_id: uuid.UUID
    required_skills: frozenset[str]
    priority: int
    enqueued_at: datetime


@dataclass(frozen=True, slots=True)
class Match:
    conversation_id: uuid.UUID
    agent_id: uuid.UUID


def queue_order(task: Waiting) -> tuple[int, datetime, uuid.UUID]:
    return (-task.priority, task.enqueued_at, task.conversation_id)


def match(tasks: Sequence[Waiting], candidates: Sequence[Candidate], now: datetime) -> list[Match]:
    """Assign tasks in queue order, each to the best eligible candidate given the assignments before it."""
    active = {c.agent_id: c.active for c in candidates}
    last = {c.agent_id: c.last_assigned_at or _NEVER for c in candidates}
    out: list[Match] = []
    for task in sorted(tasks, key=queue_order):
        best: Candidate | None = None
        best_key: tuple[float, datetime, uuid.UUID] | None = None
        for c in candidates:
            if active[c.agent_id] >= c.capacity or not task.required_skills <= c.skills:
                continue
            key = (active[c.agent_id] / c.capacity, last[c.agent_id], c.agent_id)
            if best_key is None or key < best_key:
                best, best_key = c, key
        if best is not None:
            active[best.agent_id] += 1
            last[best.agent_id] = now
            out.append(Match(task.conversation_id, best.agent_id))
    return out
