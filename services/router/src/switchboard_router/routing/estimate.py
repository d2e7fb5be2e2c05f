"""Queue positions and estimated waits, pure.

* Queue: a conversation's queue is its required skill set. Conversations needing the same skills wait
  for the same agents, so a position counts only those: position k means k - 1 conversations with the
  same required skills are served before this one (queue order: priority, high first, then the oldest,
  then the id, as ``policy.queue_order``).
* Slots: the queue is served by the online agents who have every required skill; S is the sum of their
  capacities and F the part of it free right now.
* Handle time H: the mean of ``closed_at - assigned_at`` over the most recently closed assignments of the
  same skill set; when none of those is among them, of all recent ones; when nothing has been measured,
  the configured prior (``estimate_basis`` says which: ``measured`` or ``prior``).
* Wait: the first F conversations are taken by the free slots at the next routing pass (wait 0). Beyond
  them every slot is busy; with handle times of mean H and no memory, the S busy slots free up one every
  H / S seconds on average, so the k-th waits for k - F of them:

      wait(k) = ceil(max(k - F, 0) · H / S) seconds,   None ("unknown") when S = 0.

  The time a busy slot has already spent on its conversation is ignored (the memoryless assumption),
  and so are conversations of other queues competing for agents with several skills: an explainable
  estimate, not a promise.

Nothing here touches the database or the clock: the same inputs give the same answer.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from switchboard_router.routing.policy import Waiting, queue_order


class EstimateBasis(StrEnum):
    MEASURED = "measured"
    PRIOR = "prior"


@dataclass(frozen=True, slots=True)
class Server:
    """Online agents with these skills (one agent, or several with identical skills summed: the estimate
    only adds capacities up)."""

    skills: frozenset[str]
    capacity: int
    free: int  # capacity not in use; never negative (an agent whose capacity was lowered has none)


@dataclass(frozen=True, slots=True)
class Sample:
    """Measured handle time: how many closed assignments, and their mean duration in seconds."""

    count: int
    mean_seconds: float


@dataclass(frozen=True, slots=True)
class HandleTimes:
    """What was measured over the recent closed assignments: per required skill set, and over them all."""

    by_skills: Mapping[frozenset[str], Sample]
    overall: Sample | None

    @staticmethod
    def none() -> HandleTimes:
        return HandleTimes({}, None)


@dataclass(frozen=True, slots=True)
class Estimate:
    position: int  # 1-based, within the conversation's queue (its required skill set)
    wait_seconds: int | None  # None when no online agent can serve the queue
    basis: EstimateBasis


def handle_time(
    skills: frozenset[str], measured: HandleTimes, prior_seconds: float
) -> tuple[float, EstimateBasis]:
    """The mean handle time to expect for a queue: its own measurement, else the overall one, else the
    prior."""
    sample = measured.by_skills.get(skills)
    if sample is not None and sample.count > 0:
        return sample.mean_seconds, EstimateBasis.MEASURED
    if measured.overall is not None and measured.overall.count > 0:
        return measured.overall.mean_seconds, EstimateBasis.MEASURED
    return prior_seconds, EstimateBasis.PRIOR


def slots(skills: frozenset[str], servers: Iterable[Server]) -> tuple[int, int]:
    """(total, free) capacity of the servers who have every skill in ``skills``."""
    total = free = 0
    for server in servers:
        if skills <= server.skills:
            total += server.capacity
            free += max(server.free, 0)
    return total, min(free, total)


def wait_seconds(position: int, total: int, free: int, handle_seconds: float) -> int | None:
    """``ceil(max(position - free, 0) · handle / total)``; None when there is no slot at all."""
    if total <= 0:
        return None
    ahead = max(position - free, 0)
    # Rounded to the microsecond first, so a float error never turns an exact whole second into the next.
    return math.ceil(round(ahead * handle_seconds / total, 6))


def estimate_one(
    position: int,
    skills: frozenset[str],
    servers: Sequence[Server],
    measured: HandleTimes,
    prior_seconds: float,
) -> Estimate:
    """The estimate of the conversation at ``position`` in the queue of ``skills``."""
    handle, basis = handle_time(skills, measured, prior_seconds)
    total, free = slots(skills, servers)
    return Estimate(position, wait_seconds(position, total, free, handle), basis)


def estimate(
    tasks: Sequence[Waiting],
    servers: Sequence[Server],
    measured: HandleTimes,
    prior_seconds: float,
) -> dict[uuid.UUID, Estimate]:
    """Every waiting task's position and estimate.

    ``tasks`` must hold, for each task, every task queued before it in its queue (the whole queue, or a
    head of it in queue order, as the queue view reads it); they are ordered here.
    """
    seen: dict[frozenset[str], int] = {}
    out: dict[uuid.UUID, Estimate] = {}
    for task in sorted(tasks, key=queue_order):
        position = seen.get(task.required_skills, 0) + 1
        seen[task.required_skills] = position
        out[task.conversation_id] = estimate_one(
            position, task.required_skills, servers, measured, prior_seconds
        )
    return out
