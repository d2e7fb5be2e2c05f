"""Queue positions and estimated waits, pure.

* Queue: the queue a routing rule put the conversation in (``tasks.queue``; ``default`` when no rule
  matched). Position k means k - 1 conversations of the same queue are served before this one (queue
  order: priority, high first, then the oldest, then the id, as ``policy.queue_order``).
* Slots: the queue is served by the online agents able to take at least one conversation waiting in it
  (every required skill at its minimum level, and the language when one is required): S is the sum of
  their capacities and F the part of it free right now (``Slots``, computed in SQL for every queue of a
  view or a batch at once).
* Handle time H: the mean of ``closed_at - assigned_at`` over the most recently closed assignments of the
  same queue; when none of those is among them, of all recent ones; when nothing has been measured, the
  configured prior (``estimate_basis`` says which: ``measured`` or ``prior``).
* Wait: the first F conversations are taken by the free slots at the next routing pass (wait 0). Beyond
  them every slot is busy; with handle times of mean H and no memory, the S busy slots free up one every
  H / S seconds on average, so the k-th waits for k - F of them:

      wait(k) = ceil(max(k - F, 0) · H / S) seconds,   None ("unknown") when S = 0.

  The time a busy slot has already spent on its conversation is ignored (the memoryless assumption), and
  so are agents shared with other queues (an agent able to serve two queues counts fully in both) and
  capacities per workload: an explainable estimate, not a promise.

Nothing here touches the database or the clock: the same inputs give the same answer.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from switchboard_router.routing.policy import Waiting, queue_order


class EstimateBasis(StrEnum):
    MEASURED = "measured"
    PRIOR = "prior"


@dataclass(frozen=True, slots=True)
class Slots:
    """The capacity of the online agents able to serve a queue, and the part of it free now."""

    total: int
    free: int  # never negative (an agent whose capacity was lowered below their load has none free)


@dataclass(frozen=True, slots=True)
class Sample:
    """Measured handle time: how many closed assignments, and their mean duration in seconds."""

    count: int
    mean_seconds: float


@dataclass(frozen=True, slots=True)
class HandleTimes:
    """What was measured over the recent closed assignments: per queue, and over them all."""

    by_queue: Mapping[str, Sample]
    overall: Sample | None

    @staticmethod
    def none() -> HandleTimes:
        return HandleTimes({}, None)


@dataclass(frozen=True, slots=True)
class Estimate:
    position: int  # 1-based, within the conversation's queue
    wait_seconds: int | None  # None when no online agent can serve the queue
    basis: EstimateBasis


def handle_time(queue: str, measured: HandleTimes, prior_seconds: float) -> tuple[float, EstimateBasis]:
    """The mean handle time to expect for a queue: its own measurement, else the overall one, else the
    prior."""
    sample = measured.by_queue.get(queue)
    if sample is not None and sample.count > 0:
        return sample.mean_seconds, EstimateBasis.MEASURED
    if measured.overall is not None and measured.overall.count > 0:
        return measured.overall.mean_seconds, EstimateBasis.MEASURED
    return prior_seconds, EstimateBasis.PRIOR


def wait_seconds(position: int, total: int, free: int, handle_seconds: float) -> int | None:
    """``ceil(max(position - free, 0) · handle / total)``; None when there is no slot at all."""
    if total <= 0:
        return None
    ahead = max(position - min(max(free, 0), total), 0)
    # Rounded to the microsecond first, so a float error never turns an exact whole second into the next.
    return math.ceil(round(ahead * handle_seconds / total, 6))


def estimate_one(
    position: int,
    queue: str,
    slots: Mapping[str, Slots],
    measured: HandleTimes,
    prior_seconds: float,
) -> Estimate:
    """The estimate of the conversation at ``position`` in ``queue``; a queue missing from ``slots`` has
    no online agent able to serve it."""
    handle, basis = handle_time(queue, measured, prior_seconds)
    served = slots.get(queue, Slots(0, 0))
    return Estimate(position, wait_seconds(position, served.total, served.free, handle), basis)


def estimate(
    tasks: Sequence[Waiting],
    slots: Mapping[str, Slots],
    measured: HandleTimes,
    prior_seconds: float,
) -> dict[uuid.UUID, Estimate]:
    """Every waiting task's position in its queue and its estimate.

    ``tasks`` must hold, for each task, every task queued before it in its queue (the whole queue, or a
    head of it in queue order, as the queue view reads it); they are ordered here.
    """
    seen: dict[str, int] = {}
    out: dict[uuid.UUID, Estimate] = {}
    for task in sorted(tasks, key=queue_order):
        position = seen.get(task.queue, 0) + 1
        seen[task.queue] = position
        out[task.conversation_id] = estimate_one(position, task.queue, slots, measured, prior_seconds)
    return out
