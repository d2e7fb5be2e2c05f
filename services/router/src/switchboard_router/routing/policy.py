"""The routing policy, pure: who may take a conversation, and who should.

* Eligible: online (the SQL only fetches online agents), every required skill, capacity left.
* Choice: the lowest load share (active / capacity), then the agent idle longest (never assigned first),
  then the agent id, so the result is deterministic.
* Queue order: priority (high first), then the oldest, then the conversation id.

The SQL fetches and locks candidates and writes the outcome; nothing here touches the database, so the
policy is unit-tested with plain values and a fixed clock.
"""

from __future__ import annotations

import heapq
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


def rank(active: int, capacity: int, last_assigned_at: datetime | None, agent_id: uuid.UUID) -> Rank:
    """The candidate order: lowest load share, then idle longest (never assigned first), then id. The
    repository orders its candidate fetch by the same key, so a fetch limited to the best ones is exact."""
    return (active / capacity, last_assigned_at or _NEVER, agent_id)


Rank = tuple[float, datetime, uuid.UUID]


def match(tasks: Sequence[Waiting], candidates: Sequence[Candidate], now: datetime) -> list[Match]:
    """Assign tasks in queue order, each to the best eligible candidate given the assignments before it.

    One heap of eligible candidates per distinct skill set; an agent's rank only grows as it is given
    work, so a stale heap entry is simply re-pushed with its current rank when it surfaces.
    """
    unique = list({c.agent_id: c for c in candidates}.values())
    active = [c.active for c in unique]
    last: list[datetime | None] = [c.last_assigned_at for c in unique]

    def current(i: int) -> Rank:
        return rank(active[i], unique[i].capacity, last[i], unique[i].agent_id)

    heaps: dict[frozenset[str], list[tuple[Rank, int]]] = {}
    out: list[Match] = []
    for task in sorted(tasks, key=queue_order):
        heap = heaps.get(task.required_skills)
        if heap is None:
            heap = [
                (current(i), i)
                for i, c in enumerate(unique)
                if c.active < c.capacity and task.required_skills <= c.skills
            ]
            heapq.heapify(heap)
            heaps[task.required_skills] = heap
        while heap:
            key, i = heap[0]
            if active[i] >= unique[i].capacity:
                heapq.heappop(heap)
            elif key != current(i):
                heapq.heapreplace(heap, (current(i), i))
            else:
                break
        if not heap:
            continue
        _, i = heap[0]
        active[i] += 1
        last[i] = now
        heapq.heapreplace(heap, (current(i), i))
        out.append(Match(task.conversation_id, unique[i].agent_id))
    return out
