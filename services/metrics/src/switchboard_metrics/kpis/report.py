"""The KPI formulas: pure functions from summed rollup cells (and the few live aggregates) to the report.
Each formula is written down in docs/metrics.md."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard_metrics.kpis.facts import OFFER_KINDS, OccurrenceKind
from switchboard_metrics.kpis.observe import Metric, bin_value, quantile, within
from switchboard_metrics.kpis.schemas import (
    AgentOffers,
    AgentRow,
    Breakdown,
    ChannelDelivery,
    DeliveryFigures,
    DeliveryReport,
    Distribution,
    OfferFigures,
    Point,
    QueueEscalations,
    QueueRow,
    Rates,
    RoutingReport,
    Volume,
    Window,
    WindowName,
)

WINDOWS: dict[WindowName, timedelta] = {
    WindowName.LIVE: timedelta(minutes=15),
    WindowName.HOUR: timedelta(hours=1),
}


def window(name: WindowName, now: datetime, start: datetime | None, end: datetime | None) -> Window:
    """The window's bounds. A range is the caller's; the others end now."""
    if name is WindowName.RANGE:
        assert start is not None
        assert end is not None
        return Window(name=name, start=start, end=end)
    if name is WindowName.TODAY:
        return Window(
            name=name, start=now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0), end=now
        )
    return Window(name=name, start=now - WINDOWS[name], end=now)


def series_step(w: Window) -> str:
    """Minutes up to two hours, hours up to three days, else days (PostgreSQL date_trunc units)."""
    span = w.end - w.start
    if span <= timedelta(hours=2):
        return "minute"
    return "hour" if span <= timedelta(days=3) else "day"


@dataclass
class Sketch:
    """Summed cells of one metric: bin -> count, and the exact total of seconds."""

    bins: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0

    def add(self, bin_: int, count: int, seconds: float) -> None:
        self.bins[bin_] += count
        self.seconds += seconds

    @property
    def count(self) -> int:
        return sum(self.bins.values())


Sketches = dict[str, Sketch]  # metric -> summed cells


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def distribution(s: Sketch | None) -> Distribution:
    bins = {k: n for k, n in (s.bins if s else {}).items() if n > 0}
    n = sum(bins.values())
    if s is None or n == 0:
        return Distribution(count=0, mean=None, p50=None, p90=None, p99=None, max=None)
    return Distribution(
        count=n,
        mean=_r(s.seconds / n),
        p50=_r(quantile(bins, 0.5)),
        p90=_r(quantile(bins, 0.9)),
        p99=_r(quantile(bins, 0.99)),
        max=_r(bin_value(max(bins))),
    )


def count(s: Sketches, metric: str) -> int:
    sketch = s.get(metric)
    return 0 if sketch is None else sketch.count


def ratio(numerator: int | float, denominator: int | float) -> float | None:
    return None if denominator <= 0 else round(numerator / denominator, 4)


@dataclass(frozen=True, slots=True)
class ServiceLevel:
    default_s: int
    targets_s: Mapping[str, int]

    def target(self, channel: str) -> int:
        return self.targets_s.get(channel, self.default_s)


def rates(s: Sketches, wait_by_channel: Mapping[str, Sketch], level: ServiceLevel) -> Rates:
    """Service level: answered within the channel's target / (answered + abandoned); abandonment:
    abandoned / (abandoned + assigned); resolution: resolved / opened; FCR: resolved and never reopened /
    resolved; reopen rate: conversations reopened / resolved."""
    met = sum(within(dict(sk.bins), level.target(ch)) for ch, sk in wait_by_channel.items())
    answered = sum(sk.count for sk in wait_by_channel.values())
    abandoned, assigned = count(s, Metric.ABANDONED), count(s, Metric.ASSIGNED)
    resolved = count(s, Metric.RESOLVED)
    return Rates(
        service_level=ratio(met, answered + abandoned),
        service_level_met=met,
        abandonment_rate=ratio(abandoned, abandoned + assigned),
        resolution_rate=ratio(resolved, count(s, Metric.OPENED)),
        first_contact_resolution=ratio(count(s, Metric.RESOLVED_FIRST_CONTACT), resolved),
        reopen_rate=ratio(count(s, Metric.REOPENED), resolved),
    )


@dataclass
class Summed:
    """The rows of the per-(metric, queue, channel, bin) read, summed every way the report needs."""

    total: Sketches = field(default_factory=lambda: defaultdict(Sketch))
    by_queue: dict[str, Sketches] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Sketch)))
    by_channel: dict[str, Sketches] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Sketch)))
    # queue -> channel -> wait sketch (service level is judged per channel)
    wait: dict[str, dict[str, Sketch]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Sketch))
    )


def summed(rows: Iterable[Any]) -> Summed:
    out = Summed()
    for metric, queue, channel, bin_, n, seconds in rows:
        for sketches in (out.total, out.by_queue[queue], out.by_channel[channel]):
            sketches[metric].add(bin_, int(n), float(seconds))
        if metric == Metric.WAIT:
            out.wait[queue][channel].add(bin_, int(n), float(seconds))
    return out


def wait_by_channel(s: Summed, queue: str | None = None) -> dict[str, Sketch]:
    merged: dict[str, Sketch] = defaultdict(Sketch)
    for q, channels in s.wait.items():
        if queue is None or q == queue:
            for ch, sk in channels.items():
                for b, n in sk.bins.items():
                    merged[ch].add(b, n, 0.0)
    return merged


def volume(s: Sketches, customers: int) -> Volume:
    opened = count(s, Metric.OPENED)
    return Volume(
        messages_in=count(s, Metric.MESSAGES_IN),
        messages_out=count(s, Metric.MESSAGES_OUT),
        conversations_opened=opened,
        conversations_assigned=count(s, Metric.ASSIGNED),
        conversations_resolved=count(s, Metric.RESOLVED),
        conversations_reopened=count(s, Metric.REOPENED),
        conversations_abandoned=count(s, Metric.ABANDONED),
        customers=customers,
        conversations_per_customer=ratio(opened, customers),
        multichannel_share=ratio(count(s, Metric.MULTICHANNEL), opened),
    )


def delivery_figures(s: Sketches) -> DeliveryFigures:
    """Sent, delivered, read and failed, each over the messages reported; the latency sent to delivered."""
    reported = count(s, Metric.DELIVERY_REPORTED)
    delivered, read, failed = (
        count(s, Metric.DELIVERY_DELIVERED),
        count(s, Metric.DELIVERY_READ),
        count(s, Metric.DELIVERY_FAILED),
    )
    return DeliveryFigures(
        reported=reported,
        sent=count(s, Metric.DELIVERY_SENT),
        delivered=delivered,
        read=read,
        failed=failed,
        delivered_rate=ratio(delivered, reported),
        read_rate=ratio(read, reported),
        failed_rate=ratio(failed, reported),
        latency=distribution(s.get(Metric.DELIVERY_LATENCY)),
    )


def delivery(s: Summed) -> DeliveryReport:
    """The delivery figures in total and per channel (the channels with a report in the window)."""
    return DeliveryReport(
        **delivery_figures(s.total).model_dump(),
        by_channel=[
            ChannelDelivery(channel=ch, **delivery_figures(sk).model_dump())
            for ch, sk in sorted(s.by_channel.items())
            if ch and count(sk, Metric.DELIVERY_REPORTED)
        ],
    )


def breakdown(key: str, s: Sketches) -> Breakdown:
    return Breakdown(
        key=key,
        conversations_opened=count(s, Metric.OPENED),
        conversations_resolved=count(s, Metric.RESOLVED),
        messages_in=count(s, Metric.MESSAGES_IN),
        wait_p90=distribution(s.get(Metric.WAIT)).p90,
    )


def by_tag(rows: Iterable[Any]) -> list[Breakdown]:
    tags: dict[str, Sketches] = defaultdict(lambda: defaultdict(Sketch))
    for tag, metric, bin_, n, seconds in rows:
        tags[tag][metric].add(bin_, int(n), float(seconds))
    return [breakdown(tag, s) for tag, s in sorted(tags.items())]


@dataclass(frozen=True, slots=True)
class OpenNow:
    """Waiting and held conversations right now."""

    waiting: dict[str, int]  # queue -> waiting
    longest: dict[str, float]  # queue -> seconds the longest waiter has waited
    active: dict[uuid.UUID, int]  # agent -> conversations they hold


def open_now(rows: Iterable[Any]) -> OpenNow:
    waiting: dict[str, int] = defaultdict(int)
    longest: dict[str, float] = {}
    active: dict[uuid.UUID, int] = defaultdict(int)
    for queue, is_waiting, agent_id, n, seconds in rows:
        if is_waiting:
            waiting[queue] += int(n)
            if seconds is not None:
                longest[queue] = max(longest.get(queue, 0.0), float(seconds))
        elif agent_id is not None:
            active[agent_id] += int(n)
    return OpenNow(dict(waiting), longest, dict(active))


def queues(s: Summed, now: OpenNow, level: ServiceLevel) -> list[QueueRow]:
    names = sorted(set(s.by_queue) | set(now.waiting))
    return [
        QueueRow(
            queue=q,
            waiting_now=now.waiting.get(q, 0),
            longest_wait_seconds=_r(now.longest.get(q)),
            wait=distribution(s.by_queue[q].get(Metric.WAIT)),
            rates=rates(s.by_queue[q], wait_by_channel(s, q), level),
            conversations_opened=count(s.by_queue[q], Metric.OPENED),
        )
        for q in names
        if q != "" or count(s.by_queue[q], Metric.OPENED) or now.waiting.get(q)
    ]


def agents(
    cell_rows: Iterable[Any], status_rows: Iterable[Any], now: OpenNow, agent: uuid.UUID | None
) -> list[AgentRow]:
    """Per agent: assignments and their share, handled (resolved) and handle time, time per status and the
    latest status, conversations held now against their capacity; occupancy is handle time over online
    time."""
    sketches: dict[uuid.UUID, Sketches] = defaultdict(lambda: defaultdict(Sketch))
    for agent_id, metric, bin_, n, seconds in cell_rows:
        sketches[uuid.UUID(agent_id)][metric].add(bin_, int(n), float(seconds))
    seconds_in: dict[uuid.UUID, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    latest: dict[uuid.UUID, str] = {}
    capacity: dict[uuid.UUID, int] = {}
    for agent_id, status, is_latest, seconds, told_capacity in status_rows:
        seconds_in[agent_id][status] += max(float(seconds), 0.0)
        if is_latest:
            latest[agent_id] = status
            if told_capacity is not None:
                capacity[agent_id] = int(told_capacity)
    ids = set(sketches) | set(seconds_in) | set(now.active)
    if agent is not None:
        ids &= {agent}
    all_assignments = sum(count(s, Metric.ASSIGNMENT) for s in sketches.values())
    rows = []
    for a in sorted(ids, key=str):
        s = sketches[a]
        handle = s.get(Metric.HANDLE)
        online = seconds_in[a].get("online", 0.0)
        rows.append(
            AgentRow(
                agent_id=a,
                status=latest.get(a),
                status_seconds={k: round(v, 1) for k, v in sorted(seconds_in[a].items())},
                active_conversations=now.active.get(a, 0),
                capacity=capacity.get(a),
                # A capacity of 0 (an agent taking nothing) has no share to fill: none, like a rate over 0.
                capacity_used=None if a not in capacity else ratio(now.active.get(a, 0), capacity[a]),
                assignments=count(s, Metric.ASSIGNMENT),
                assignment_share=ratio(count(s, Metric.ASSIGNMENT), all_assignments),
                handled=count(s, Metric.RESOLVED),
                handle=distribution(handle),
                occupancy=ratio(handle.seconds if handle else 0.0, online),
            )
        )
    return rows


def series(rows: Iterable[Any]) -> list[Point]:
    points: dict[datetime, Sketches] = defaultdict(lambda: defaultdict(Sketch))
    for at, metric, bin_, n in rows:
        points[at][metric].add(bin_, int(n), 0.0)
    return [
        Point(
            at=at,
            messages_in=count(s, Metric.MESSAGES_IN),
            conversations_opened=count(s, Metric.OPENED),
            wait_p50=distribution(s.get(Metric.WAIT)).p50,
            wait_p90=distribution(s.get(Metric.WAIT)).p90,
        )
        for at, s in sorted(points.items())
    ]


def _offers(n: Mapping[str, int]) -> dict[str, Any]:
    accepted = n.get(OccurrenceKind.OFFER_ACCEPTED, 0)
    declined = n.get(OccurrenceKind.OFFER_DECLINED, 0)
    timed_out = n.get(OccurrenceKind.OFFER_TIMED_OUT, 0)
    return {
        "offered": n.get(OccurrenceKind.OFFERED, 0),
        "accepted": accepted,
        "declined": declined,
        "timed_out": timed_out,
        "acceptance_rate": ratio(accepted, accepted + declined + timed_out),
    }


def routing(rows: Iterable[Any]) -> RoutingReport:
    """Offers by agent and in all, escalations and SLA breaches by queue and in all, from counts of routing
    occurrences by (kind, agent, queue)."""
    total: Counter[str] = Counter()
    by_agent: defaultdict[uuid.UUID, Counter[str]] = defaultdict(Counter)
    by_queue: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for kind, agent_id, queue, n in rows:
        total[kind] += n
        if kind in OFFER_KINDS and agent_id is not None:
            by_agent[agent_id][kind] += n
        elif kind not in OFFER_KINDS and queue is not None:
            by_queue[queue][kind] += n
    return RoutingReport(
        offers=OfferFigures(**_offers(total)),
        offers_by_agent=[AgentOffers(agent_id=a, **_offers(n)) for a, n in sorted(by_agent.items())],
        escalations=total[OccurrenceKind.ESCALATED],
        sla_breaches=total[OccurrenceKind.SLA_BREACHED],
        by_queue=[
            QueueEscalations(
                queue=q, escalations=n[OccurrenceKind.ESCALATED], sla_breaches=n[OccurrenceKind.SLA_BREACHED]
            )
            for q, n in sorted(by_queue.items())
        ],
    )
