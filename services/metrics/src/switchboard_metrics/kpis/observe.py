"""What the stored facts add to the KPI rollups: pure functions.

A KPI rollup is a table of cells, each a count and a sum of seconds: per minute, metric, channel, queue,
agent, tag and sketch bin (``Cell``). Every cell is a function of the fact rows alone (``cells_of``), so
when a call changes a fact row, the rollup changes by the difference between the row's cells after and
before (``delta``): a duration told late, an assignment that arrives before the conversation's opening,
a first reply earlier than the one known, each moves the observation from its old cell to its new one.
So the rollups always equal a recomputation from the facts, whatever the order and the number of times
events arrive, and a window or a filter is a sum of cells: sketches merge exactly by adding bin counts.

The durations are binned by DDSketch's logarithmic mapping at 1 % relative accuracy: a percentile read
from merged bins is within 1 % of the exact one. Counts and the sums behind means are exact.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import NamedTuple

from ddsketch.mapping import LogarithmicMapping

from switchboard_common.events import Direction
from switchboard_metrics.kpis.facts import ConversationFacts, DeliveryFacts, MessageFacts

RELATIVE_ACCURACY = 0.01
# Durations are clamped to this (seconds): clocks of different services may disagree by a little, and a
# logarithmic bin needs a positive value.
MIN_SECONDS = 0.001
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
COUNT_BIN = 0  # the bin of plain counts (no duration)
NONE = ""  # a dimension not known or not applicable


class Metric:
    """The rollup's metric names (values stored in the table)."""

    # Counts.
    MESSAGES_IN = "messages_in"
    MESSAGES_OUT = "messages_out"
    OPENED = "opened"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    ABANDONED = "abandoned"
    RESOLVED_FIRST_CONTACT = "resolved_first_contact"
    REOPENED = "reopened"
    MULTICHANNEL = "multichannel"
    ASSIGNMENT = "assignment"  # every assignment of any conversation, by agent only
    # Durations (sketches).
    WAIT = "wait"
    FIRST_RESPONSE = "first_response"
    REPLY = "reply"
    RESOLUTION = "resolution"
    HANDLE = "handle"
    # Deliveries of outbound messages, each observed at its first report (see ``delivery_cells_of``).
    DELIVERY_REPORTED = "delivery_reported"
    DELIVERY_SENT = "delivery_sent"
    DELIVERY_DELIVERED = "delivery_delivered"
    DELIVERY_READ = "delivery_read"
    DELIVERY_FAILED = "delivery_failed"
    DELIVERY_LATENCY = "delivery_latency"  # a duration: sent to delivered


DURATIONS = frozenset(
    {
        Metric.WAIT,
        Metric.FIRST_RESPONSE,
        Metric.REPLY,
        Metric.RESOLUTION,
        Metric.HANDLE,
        Metric.DELIVERY_LATENCY,
    }
)
DELIVERY_METRICS = frozenset(
    {
        Metric.DELIVERY_REPORTED,
        Metric.DELIVERY_SENT,
        Metric.DELIVERY_DELIVERED,
        Metric.DELIVERY_READ,
        Metric.DELIVERY_FAILED,
        Metric.DELIVERY_LATENCY,
    }
)
# Metrics that have no queue, agent or tag (messages and deliveries are counted by channel; assignments by
# agent): a filter on a dimension they lack does not exclude them.
BY_CHANNEL_ONLY = frozenset({Metric.MESSAGES_IN, Metric.MESSAGES_OUT, *DELIVERY_METRICS})
BY_AGENT_ONLY = frozenset({Metric.ASSIGNMENT})


# A tuple, not a dataclass: a call hashes, compares and sorts thousands of cells, which tuples do in C.
class Cell(NamedTuple):
    minute: datetime
    metric: str
    channel: str
    queue: str
    agent: str
    tag: str
    bin: int


@dataclass(frozen=True, slots=True)
class Tally:
    count: int
    seconds: float


_ZERO = Tally(0, 0.0)


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def bin_of(seconds: float) -> int:
    return int(MAPPING.key(max(seconds, MIN_SECONDS)))


def bin_value(key: int) -> float:
    """The value a bin stands for (within the relative accuracy of every value in it)."""
    return float(MAPPING.value(key))


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), MIN_SECONDS)


def _agent(agent_id: uuid.UUID | None) -> str:
    return NONE if agent_id is None else str(agent_id)


def _observations(f: ConversationFacts) -> Iterator[tuple[str, datetime, float | None, str]]:
    """(metric, when, seconds or None for a count, agent) of one conversation's facts."""
    assigned_to = _agent(f.agent_id)
    if f.opened_at is not None:
        yield Metric.OPENED, f.opened_at, None, assigned_to
        if f.channels is not None and len(f.channels) > 1:
            yield Metric.MULTICHANNEL, f.opened_at, None, assigned_to
    if f.assigned_at is not None:
        yield Metric.ASSIGNED, f.assigned_at, None, assigned_to
        start = f.queued_at or f.opened_at
        if start is not None:
            yield Metric.WAIT, f.assigned_at, _seconds(start, f.assigned_at), assigned_to
    if f.first_reply_at is not None and f.opened_at is not None:
        yield Metric.FIRST_RESPONSE, f.first_reply_at, _seconds(f.opened_at, f.first_reply_at), assigned_to
    if f.first_reopened_at is not None:
        yield Metric.REOPENED, f.first_reopened_at, None, assigned_to
    if f.resolved_at is not None:
        # Resolution work is the resolving agent's (the one it was first assigned to may have passed it on).
        by = _agent(f.resolved_by) if f.resolved_by is not None else assigned_to
        yield Metric.RESOLVED, f.resolved_at, None, by
        if f.first_reopened_at is None:
            yield Metric.RESOLVED_FIRST_CONTACT, f.resolved_at, None, by
        if f.opened_at is not None:
            yield Metric.RESOLUTION, f.resolved_at, _seconds(f.opened_at, f.resolved_at), by
        if f.assigned_at is not None:
            yield Metric.HANDLE, f.resolved_at, _seconds(f.assigned_at, f.resolved_at), by
        else:
            yield Metric.ABANDONED, f.resolved_at, None, by


def _replies(messages: Iterable[MessageFacts]) -> Iterator[tuple[str, datetime, float | None, str]]:
    """Reply times: each human reply that answers customer messages, timed from the earliest of those not
    answered yet (messages in the order they were sent; an automatic reply answers nothing)."""
    waiting_since: datetime | None = None
    timed = [m for m in messages if m.sent_at is not None and m.direction is not None]
    # Ties: a customer's message before a reply sent at the same instant; then by agent, so the order
    # the rows come in does not matter.
    timed.sort(key=lambda m: (m.sent_at, m.direction != Direction.INBOUND.value, str(m.agent_id)))
    for m in timed:
        assert m.sent_at is not None
        if m.direction == Direction.INBOUND.value:
            waiting_since = waiting_since or m.sent_at
        elif waiting_since is not None and not m.automated:
            yield Metric.REPLY, m.sent_at, _seconds(waiting_since, m.sent_at), _agent(m.agent_id)
            waiting_since = None


def cells_of(f: ConversationFacts | None, messages: Iterable[MessageFacts] = ()) -> dict[Cell, Tally]:
    """The rollup cells one conversation's facts and messages make: each observation once in the
    all-tags series (tag ``""``) and once per tag of the conversation."""
    out: dict[Cell, Tally] = {}
    if f is None:
        return out
    channel = f.channel or NONE
    queue = f.queue or NONE
    tags = (NONE, *(f.tags or ()))
    for metric, at, seconds, agent in chain(_observations(f), _replies(messages)):
        b = COUNT_BIN if seconds is None else bin_of(seconds)
        total = seconds or 0.0
        at_minute = minute(at)
        for tag in tags:
            cell = Cell(at_minute, metric, channel, queue, agent, tag, b)
            seen = out.get(cell)
            out[cell] = Tally(1, total) if seen is None else Tally(seen.count + 1, seen.seconds + total)
    return out


def message_cells_of(f: MessageFacts | None) -> dict[Cell, Tally]:
    """A message's cells: received (a customer's) or sent (an agent's or automation's), by channel only."""
    if f is None or f.channel is None:
        return {}
    if f.received_at is not None:
        return {
            Cell(minute(f.received_at), Metric.MESSAGES_IN, f.channel, NONE, NONE, NONE, 0): Tally(1, 0.0)
        }
    if f.direction == Direction.OUTBOUND.value and f.sent_at is not None:
        return {Cell(minute(f.sent_at), Metric.MESSAGES_OUT, f.channel, NONE, NONE, NONE, 0): Tally(1, 0.0)}
    return {}


def delivery_cells_of(channel: str, f: DeliveryFacts | None) -> dict[Cell, Tally]:
    """A delivery's cells, all at the minute of its first report (the send, or whichever report came
    first in time when the send was not told), by channel only: so a window's delivery figures are about
    the messages sent in it, and its rates stay within 0 and 1. A ``read`` implies ``delivered`` and a
    ``delivered`` implies ``sent``, whichever report is missing; the latency is sent to delivered, both
    reported."""
    if f is None:
        return {}
    reported = [t for t in (f.accepted_at, f.delivered_at, f.read_at, f.failed_at) if t is not None]
    if not reported:
        return {}
    at = minute(min(reported))
    delivered = f.delivered_at is not None or f.read_at is not None
    metrics = [
        (Metric.DELIVERY_REPORTED, True),
        (Metric.DELIVERY_SENT, f.accepted_at is not None or delivered),
        (Metric.DELIVERY_DELIVERED, delivered),
        (Metric.DELIVERY_READ, f.read_at is not None),
        (Metric.DELIVERY_FAILED, f.failed_at is not None),
    ]
    out = {
        Cell(at, metric, channel, NONE, NONE, NONE, COUNT_BIN): Tally(1, 0.0) for metric, on in metrics if on
    }
    if f.accepted_at is not None and f.delivered_at is not None:
        seconds = _seconds(f.accepted_at, f.delivered_at)
        out[Cell(at, Metric.DELIVERY_LATENCY, channel, NONE, NONE, NONE, bin_of(seconds))] = Tally(1, seconds)
    return out


def assignment_cell(agent_id: uuid.UUID, at: datetime) -> Cell:
    return Cell(minute(at), Metric.ASSIGNMENT, NONE, NONE, str(agent_id), NONE, COUNT_BIN)


def delta(before: dict[Cell, Tally], after: dict[Cell, Tally], into: dict[Cell, Tally]) -> None:
    """Add ``after - before`` to ``into`` (cells that cancel out are dropped)."""
    for cell in before.keys() | after.keys():
        a = after.get(cell, _ZERO)
        b = before.get(cell, _ZERO)
        seen = into.get(cell, _ZERO)
        count = seen.count + a.count - b.count
        seconds = seen.seconds + a.seconds - b.seconds
        if count == 0 and abs(seconds) < 1e-9:
            into.pop(cell, None)
        else:
            into[cell] = Tally(count, seconds)


# --- reading a sketch ------------------------------------------------------------------------------------


def quantile(bins: dict[int, int], q: float) -> float | None:
    """The q-quantile of merged sketch bins (DDSketch's rank rule: the bin holding rank q * (n - 1))."""
    n = sum(bins.values())
    if n <= 0:
        return None
    rank = q * (n - 1)
    seen = 0
    for key in sorted(bins):
        seen += bins[key]
        if seen > rank:
            return bin_value(key)
    return bin_value(max(bins))


def within(bins: dict[int, int], seconds: float) -> int:
    """How many observations are at most ``seconds`` (a bin counts when its value is within the target)."""
    return sum(n for key, n in bins.items() if bin_value(key) <= seconds * (1 + RELATIVE_ACCURACY))
