"""The KPI rollups and formulas, pure: the cells a stream of events adds, cut into calls in any way and with
repeats, always equal a recomputation from the final facts; and each formula against answers worked out by
hand (percentiles against exact ones, within the sketch's 1 %)."""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard_common.events import (
    AgentStatus,
    AgentStatusChanged,
    Channel,
    ConversationAssigned,
    ConversationMessageAdded,
    ConversationOpened,
    ConversationQueued,
    ConversationReopened,
    ConversationRequeued,
    ConversationResolved,
    ConversationTagsChanged,
    CustomerIdentity,
    DeliveryState,
    DeliveryStatusChanged,
    Direction,
    IdentityKind,
    MessageOutbound,
    MessageReceived,
    Payload,
    RequeueReason,
)
from switchboard_metrics.kpis import observe, report, repository, service
from switchboard_metrics.kpis.facts import (
    ConversationFacts,
    DeliveryFacts,
    DeliveryKey,
    HandoffKind,
    MessageFacts,
    merge,
    news_of,
    then,
)
from switchboard_metrics.kpis.observe import Cell, Metric, Tally, bin_of, quantile, within
from switchboard_metrics.kpis.report import OpenNow, ServiceLevel, Sketch
from switchboard_metrics.kpis.schemas import Window, WindowName

# A base on a minute boundary plus a few seconds, so events 30 s apart fall in several minutes.
BASE = datetime(2026, 11, 23, 10, 0, 7, tzinfo=UTC)


# --- (a) the rollups equal a recomputation from the facts ----------------------------------------------------

CIDS = [uuid.uuid4() for _ in range(3)]
AGENTS = [uuid.uuid4() for _ in range(3)]
CUSTOMERS = [uuid.uuid4() for _ in range(2)]
# Inbound messages may be told by message.received and by conversation.message_added; replies by
# message.outbound and by conversation.message_added (outbound). Each message belongs to one conversation.
INBOUND = [(uuid.uuid4(), CIDS[n % len(CIDS)]) for n in range(5)]
REPLIES = [(uuid.uuid4(), CIDS[n % len(CIDS)]) for n in range(5)]
CHANNELS = [Channel.WHATSAPP, Channel.EMAIL, Channel.SMS]
# A small grid of instants, so that ties and minute boundaries happen often.
TIMES = [BASE + timedelta(seconds=25 * k) for k in range(12)]

times = st.sampled_from(TIMES)
cids = st.sampled_from(CIDS)
agents = st.sampled_from(AGENTS)
queues = st.sampled_from([None, "default", "sales"])


def _opened(cid: uuid.UUID, at: datetime, channel: Channel, customer: uuid.UUID, tags: list[str]) -> Payload:
    return ConversationOpened(
        conversation_id=cid,
        customer_id=customer,
        channel=channel,
        required_skills=[],
        priority=0,
        opened_at=at,
        tags=tags,
    )


def _queued(cid: uuid.UUID, at: datetime, queue: str | None) -> Payload:
    return ConversationQueued(conversation_id=cid, required_skills=[], priority=0, queued_at=at, queue=queue)


def _assigned(
    cid: uuid.UUID, agent: uuid.UUID, queued_at: datetime, at: datetime, queue: str | None
) -> Payload:
    return ConversationAssigned(
        conversation_id=cid, agent_id=agent, queued_at=queued_at, assigned_at=at, queue=queue
    )


def _requeued(cid: uuid.UUID, agent: uuid.UUID, at: datetime) -> Payload:
    return ConversationRequeued(
        conversation_id=cid, agent_id=agent, reason=RequeueReason.NO_ANSWER, queued_at=BASE, requeued_at=at
    )


def _resolved(cid: uuid.UUID, agent: uuid.UUID | None, at: datetime) -> Payload:
    return ConversationResolved(conversation_id=cid, agent_id=agent, resolved_at=at)


def _reopened(cid: uuid.UUID, at: datetime) -> Payload:
    return ConversationReopened(
        conversation_id=cid,
        customer_id=CUSTOMERS[0],
        channel=Channel.EMAIL,
        required_skills=[],
        priority=0,
        reopened_at=at,
        previous_agent_id=None,
    )


def _received(message: tuple[uuid.UUID, uuid.UUID], channel: Channel, at: datetime) -> Payload:
    return MessageReceived(
        message_id=message[0],
        channel=channel,
        external_id=str(message[0]),
        sender=CustomerIdentity(kind=IdentityKind.API, value="cust"),
        text="hi",
        sent_at=at,
        received_at=at + timedelta(seconds=1),
    )


def _added(
    message: tuple[uuid.UUID, uuid.UUID], channel: Channel, at: datetime, direction: Direction
) -> Payload:
    return ConversationMessageAdded(
        conversation_id=message[1], message_id=message[0], channel=channel, direction=direction, sent_at=at
    )


def _reply(
    message: tuple[uuid.UUID, uuid.UUID], channel: Channel, agent: uuid.UUID, at: datetime, automated: bool
) -> Payload:
    return MessageOutbound(
        message_id=message[0],
        conversation_id=message[1],
        customer_id=CUSTOMERS[0],
        channel=channel,
        agent_id=agent,
        text="reply",
        sent_at=at,
        automated=automated,
    )


def _status(agent: uuid.UUID, at: datetime) -> Payload:
    return AgentStatusChanged(
        agent_id=agent, status=AgentStatus.ONLINE, previous_status=AgentStatus.AWAY, changed_at=at
    )


def _report(subject: str, status: DeliveryState, at: datetime) -> Payload:
    # Two providers' ids and one of ours (a send given up on): reports of each state, in any order.
    if subject == "ours":
        return DeliveryStatusChanged(channel=Channel.SMS, message_id=REPLIES[0][0], status=status, at=at)
    return DeliveryStatusChanged(channel=Channel.WHATSAPP, external_id=subject, status=status, at=at)


def _retagged(cid: uuid.UUID, tags: list[str], at: datetime) -> Payload:
    return ConversationTagsChanged(
        conversation_id=cid, tags=tags, added=tags, removed=[], agent_id=None, changed_at=at
    )


channels = st.sampled_from(CHANNELS)
events = st.one_of(
    st.builds(_retagged, cids, st.lists(st.sampled_from(["vip", "billing", "refund"]), max_size=2), times),
    st.builds(
        _report, st.sampled_from(["wamid.1", "wamid.2", "ours"]), st.sampled_from(DeliveryState), times
    ),
    st.builds(
        _opened,
        cids,
        times,
        channels,
        st.sampled_from(CUSTOMERS),
        st.lists(st.sampled_from(["vip", "billing"]), max_size=2),
    ),
    st.builds(_queued, cids, times, queues),
    st.builds(_assigned, cids, agents, times, times, queues),
    st.builds(_requeued, cids, agents, times),
    st.builds(_resolved, cids, st.none() | agents, times),
    st.builds(_reopened, cids, times),
    st.builds(_received, st.sampled_from(INBOUND), channels, times),
    st.builds(_added, st.sampled_from(INBOUND), channels, times, st.just(Direction.INBOUND)),
    st.builds(_added, st.sampled_from(REPLIES), channels, times, st.just(Direction.OUTBOUND)),
    st.builds(_reply, st.sampled_from(REPLIES), channels, agents, times, st.booleans()),
    st.builds(_status, agents, times),
)


def _add(into: dict[Cell, Tally], cells: Mapping[Cell, Tally]) -> None:
    for cell, t in cells.items():
        seen = into.get(cell, Tally(0, 0.0))
        total = Tally(seen.count + t.count, seen.seconds + t.seconds)
        if total.count == 0 and abs(total.seconds) < 1e-6:
            into.pop(cell, None)
        else:
            into[cell] = total


@dataclass
class Store:
    """The metrics tables, in memory: what ``record_batch`` reads and writes, call by call."""

    messages: dict[uuid.UUID, MessageFacts] = field(default_factory=dict)
    conversations: dict[uuid.UUID, ConversationFacts] = field(default_factory=dict)
    # conversation_handoffs: keyed (conversation, at, kind) like its primary key.
    handoffs: dict[tuple[uuid.UUID, datetime, HandoffKind], uuid.UUID] = field(default_factory=dict)
    deliveries: dict[DeliveryKey, DeliveryFacts] = field(default_factory=dict)
    cells: dict[Cell, Tally] = field(default_factory=dict)

    def call(self, payloads: Sequence[Payload]) -> None:
        """One ``record_batch`` call, as its statements do it."""
        batch = merge(payloads)
        touched = batch.conversations.keys() | {
            m.conversation_id for m in batch.messages.values() if m.conversation_id is not None
        }
        # The claim: the before-image of every key of the call, a missing row created empty.
        claimed_m = {k: self.messages.setdefault(k, MessageFacts()) for k in batch.messages}
        claimed_c = {k: self.conversations.setdefault(k, ConversationFacts()) for k in touched}
        claimed_d = {k: self.deliveries.setdefault(k, DeliveryFacts()) for k in batch.deliveries}
        news = news_of(batch, claimed_m, claimed_c, claimed_d)
        # The stored messages (before this call) of every conversation with news or a message told in it.
        rethreaded = set(news.conversations) | {
            cid
            for k, m in news.messages.items()
            if (cid := then(claimed_m[k], m).conversation_id) in claimed_c
        }
        threads = {
            cid: {k: m for k, m in self.messages.items() if m.conversation_id == cid} for cid in rethreaded
        }
        for k, mnew in news.messages.items():
            self.messages[k] = then(self.messages[k], mnew)
        for k, cnew in news.conversations.items():
            self.conversations[k] = then(self.conversations[k], cnew)
        for dk, dnew in news.deliveries.items():
            self.deliveries[dk] = then(self.deliveries[dk], dnew)
        assignments = []
        for h in sorted(batch.handoffs):  # sorted, the first of equal keys is inserted
            key = (h.conversation_id, h.at, h.kind)
            if key not in self.handoffs:
                self.handoffs[key] = h.agent_id
                if h.kind is HandoffKind.ASSIGNED:
                    assignments.append((h.agent_id, h.at))
        changes = repository.Changes(0, 0, assignments)
        _add(self.cells, service.rollup_delta(news, claimed_m, claimed_c, threads, changes, claimed_d))

    def recomputed(self) -> dict[Cell, Tally]:
        out: dict[Cell, Tally] = {}
        threads: dict[uuid.UUID, list[MessageFacts]] = defaultdict(list)
        for m in self.messages.values():
            _add(out, observe.message_cells_of(m))
            if m.conversation_id is not None:
                threads[m.conversation_id].append(m)
        for cid, f in self.conversations.items():
            _add(out, observe.cells_of(f, threads[cid]))
        for (channel, _), d in self.deliveries.items():
            _add(out, observe.delivery_cells_of(channel, d))
        for (_, at, kind), agent in self.handoffs.items():
            if kind is HandoffKind.ASSIGNED:
                _add(out, {observe.assignment_cell(agent, at): Tally(1, 0.0)})
        return out


def _same(actual: Mapping[Cell, Tally], expected: Mapping[Cell, Tally]) -> None:
    assert actual.keys() == expected.keys()
    for cell, t in expected.items():
        assert actual[cell].count == t.count, cell
        assert actual[cell].seconds == pytest.approx(t.seconds, abs=1e-6), cell


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=40), st.data())
def test_rollups_always_equal_a_recomputation_from_the_facts(
    stream: list[Payload], data: st.DataObject
) -> None:
    """Whatever the order, the cuts into calls and the repeats (redeliveries, replayed polls), the cells
    the deltas add up to are the cells of the final facts."""
    calls: list[list[Payload]] = []
    start = 0
    while start < len(stream):
        end = start + data.draw(st.integers(min_value=1, max_value=6), label="call size")
        calls.append(stream[start:end])
        start = end
    # Some calls again later (a replayed poll), and some events again inside a call (a redelivery).
    for n in data.draw(st.lists(st.integers(min_value=0, max_value=max(len(calls) - 1, 0)), max_size=3)):
        if calls:
            calls.insert(data.draw(st.integers(min_value=n, max_value=len(calls))), list(calls[n]))
    redelivered: bool = data.draw(st.booleans(), label="a redelivery inside a call")
    if redelivered:
        calls.append([*stream[:3], *stream[:3]])
    store = Store()
    for call in calls:
        store.call(call)
        _same(store.cells, store.recomputed())


def test_rollups_follow_a_late_earlier_reply_and_a_retracted_first_contact() -> None:
    """A known example: facts arriving late move observations out of the cells they were in."""
    cid, agent = uuid.uuid4(), AGENTS[0]
    store = Store()
    store.call([_opened(cid, TIMES[0], Channel.EMAIL, CUSTOMERS[0], [])])
    store.call([_assigned(cid, agent, TIMES[0], TIMES[2], "sales"), _resolved(cid, agent, TIMES[6])])
    assert [t.count for c, t in store.cells.items() if c.metric == Metric.RESOLVED_FIRST_CONTACT] == [1]
    store.call([_reopened(cid, TIMES[8])])  # the resolution was not final after all
    assert not [c for c in store.cells if c.metric == Metric.RESOLVED_FIRST_CONTACT]
    store.call([_reply((uuid.uuid4(), cid), Channel.EMAIL, agent, TIMES[5], False)])
    store.call([_reply((uuid.uuid4(), cid), Channel.EMAIL, agent, TIMES[1], True)])  # automatic: no response
    store.call([_reply((uuid.uuid4(), cid), Channel.EMAIL, agent, TIMES[3], False)])  # earlier, told later
    firsts = [(c.minute, t) for c, t in store.cells.items() if c.metric == Metric.FIRST_RESPONSE]
    assert firsts == [(observe.minute(TIMES[3]), Tally(1, 75.0))]
    _same(store.cells, store.recomputed())


# --- (b) the formulas ------------------------------------------------------------------------------------------


def _bins(values: Iterable[float]) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for v in values:
        out[bin_of(v)] += 1
    return dict(out)


def _sketch(values: Iterable[float]) -> Sketch:
    s = Sketch()
    for v in values:
        s.add(bin_of(v), 1, v)
    return s


def _exact(values: Sequence[float], q: float) -> float:
    """The sketch's rank rule on the exact values: the value at rank q * (n - 1), rounded down."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([42.0], id="one value"),
        pytest.param([7.5] * 50, id="many equal values"),
        pytest.param([0.001, 0.002, 1.0, 60.0, 3600.0, 86400.0], id="1 ms to 1 day"),
        pytest.param([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], id="one to ten"),
        pytest.param(
            [math.exp(random.Random(7).uniform(math.log(0.001), math.log(86400))) for _ in range(1000)],
            id="log-uniform 1 ms to 1 day",
        ),
        pytest.param([random.Random(3).expovariate(1 / 30) + 0.001 for _ in range(500)], id="exponential"),
    ],
)
def test_quantiles_are_within_one_percent_of_the_exact_ones(values: list[float]) -> None:
    bins = _bins(values)
    for q in (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        assert quantile(bins, q) == pytest.approx(_exact(values, q), rel=0.0101), q


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.001, max_value=86400, allow_nan=False), min_size=1, max_size=200),
    st.sampled_from([0.5, 0.9, 0.99]),
)
def test_quantiles_of_any_durations_are_within_one_percent(values: list[float], q: float) -> None:
    assert quantile(_bins(values), q) == pytest.approx(_exact(values, q), rel=0.0101)


def test_quantiles_of_merged_sketches_are_those_of_all_values() -> None:
    """Windows and filters sum cells: bins merged by adding counts are the sketch of all the values."""
    rng = random.Random(11)
    parts = [[rng.uniform(1, 600) for _ in range(rng.randint(1, 40))] for _ in range(8)]
    merged: dict[int, int] = defaultdict(int)
    for part in parts:
        for b, n in _bins(part).items():
            merged[b] += n
    everything = [v for part in parts for v in part]
    assert dict(merged) == _bins(everything)
    assert quantile(dict(merged), 0.9) == pytest.approx(_exact(everything, 0.9), rel=0.0101)


def test_a_quantile_of_nothing_is_none() -> None:
    assert quantile({}, 0.5) is None
    assert quantile({bin_of(3.0): 0}, 0.5) is None


def test_within_counts_the_observations_up_to_a_target() -> None:
    bins = _bins([5.0, 10.0, 19.0, 20.0, 20.5, 21.0, 40.0, 3600.0])
    assert within(bins, 20) == 4  # 5, 10, 19 and 20 itself; 20.5 is beyond the sketch's 1 %
    assert within(bins, 3600) == 8
    assert within(bins, 1) == 0
    assert within({}, 20) == 0


def test_a_distribution_has_an_exact_count_mean_and_max_and_sketched_percentiles() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 100.0]
    d = report.distribution(_sketch(values))
    assert (d.count, d.mean) == (5, 22.0)
    assert d.p50 == pytest.approx(3.0, rel=0.011)
    assert d.p90 == pytest.approx(4.0, rel=0.011)  # rank 3.6: the fourth value
    assert d.p99 == pytest.approx(4.0, rel=0.011)
    assert d.max == pytest.approx(100.0, rel=0.011)
    empty = report.distribution(None)
    assert empty.model_dump() == {
        "count": 0,
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
    }
    assert report.distribution(Sketch()).count == 0


def _counts(**metrics: int) -> dict[str, Sketch]:
    out: dict[str, Sketch] = {}
    for metric, n in metrics.items():
        out[metric] = Sketch()
        out[metric].add(0, n, 0.0)
    return out


def test_rates_judge_the_service_level_per_channel_and_divide_by_what_they_say() -> None:
    level = ServiceLevel(default_s=20, targets_s={"email": 3600, "sms": 60})
    waits = {
        "webchat": _sketch([5, 15, 25, 90]),  # default 20 s: 2 of 4
        "email": _sketch([60, 1800, 7200]),  # 1 h: 2 of 3
        "sms": _sketch([59, 61]),  # 60 s: 1 of 2
    }
    s = _counts(
        **{
            Metric.ASSIGNED: 9,
            Metric.ABANDONED: 3,
            Metric.OPENED: 16,
            Metric.RESOLVED: 8,
            Metric.RESOLVED_FIRST_CONTACT: 6,
            Metric.REOPENED: 2,
        }
    )
    r = report.rates(s, waits, level)
    # Answered within the target / (answered + abandoned): an abandoned conversation missed its target.
    assert (r.service_level_met, r.service_level) == (5, round(5 / (9 + 3), 4))
    assert r.abandonment_rate == 0.25  # 3 / (3 + 9)
    assert r.resolution_rate == 0.5  # 8 / 16
    assert r.first_contact_resolution == 0.75  # 6 / 8
    assert r.reopen_rate == 0.25  # 2 / 8


def test_rates_with_nothing_to_divide_by_are_none() -> None:
    r = report.rates({}, {}, ServiceLevel(20, {}))
    assert r.model_dump() == {
        "service_level": None,
        "service_level_met": 0,
        "abandonment_rate": None,
        "resolution_rate": None,
        "first_contact_resolution": None,
        "reopen_rate": None,
    }
    opened_only = report.rates(_counts(**{Metric.OPENED: 4}), {}, ServiceLevel(20, {}))
    assert (opened_only.resolution_rate, opened_only.first_contact_resolution) == (0.0, None)


def test_a_tag_change_moves_every_observation_of_the_conversation_to_its_tags_now() -> None:
    cid, agent = uuid.uuid4(), AGENTS[0]
    store = Store()
    store.call([_opened(cid, TIMES[0], Channel.EMAIL, CUSTOMERS[0], ["vip"])])
    store.call([_assigned(cid, agent, TIMES[0], TIMES[2], "sales")])
    later, earlier = _retagged(cid, ["refund"], TIMES[6]), _retagged(cid, ["billing"], TIMES[4])
    store.call([later])
    store.call([earlier])  # told after, happened before: changes nothing
    store.call([later, earlier])  # again
    tags = {(c.metric, c.tag) for c in store.cells if c.tag}
    assert tags == {(Metric.OPENED, "refund"), (Metric.ASSIGNED, "refund"), (Metric.WAIT, "refund")}
    _same(store.cells, store.recomputed())


def test_a_delivery_is_observed_at_its_first_report_and_read_implies_delivered_implies_sent() -> None:
    sent, delivered, read = TIMES[0], TIMES[1], TIMES[4]
    whole = observe.delivery_cells_of(
        "sms", DeliveryFacts(accepted_at=sent, delivered_at=delivered, read_at=read)
    )
    at = observe.minute(sent)
    counts = {c.metric for c in whole if c.metric != Metric.DELIVERY_LATENCY}
    assert counts == {
        Metric.DELIVERY_REPORTED,
        Metric.DELIVERY_SENT,
        Metric.DELIVERY_DELIVERED,
        Metric.DELIVERY_READ,
    }
    assert {c.minute for c in whole} == {at} and {c.channel for c in whole} == {"sms"}
    [latency] = [(c, t) for c, t in whole.items() if c.metric == Metric.DELIVERY_LATENCY]
    assert latency[1] == Tally(1, 25.0) and latency[0].bin == bin_of(25.0)
    # A read without its delivered (nor the send): delivered and sent all the same, no latency, at the read.
    only_read = observe.delivery_cells_of("sms", DeliveryFacts(read_at=read))
    assert {c.metric for c in only_read} == counts
    assert {c.minute for c in only_read} == {observe.minute(read)}
    # A send given up on: reported and failed, never sent.
    failed = observe.delivery_cells_of("sms", DeliveryFacts(failed_at=sent))
    assert {c.metric for c in failed} == {Metric.DELIVERY_REPORTED, Metric.DELIVERY_FAILED}
    assert observe.delivery_cells_of("sms", DeliveryFacts()) == {}


def test_delivery_figures_divide_by_the_messages_reported() -> None:
    s = _counts(
        **{
            Metric.DELIVERY_REPORTED: 10,
            Metric.DELIVERY_SENT: 9,
            Metric.DELIVERY_DELIVERED: 8,
            Metric.DELIVERY_READ: 5,
            Metric.DELIVERY_FAILED: 2,
        }
    )
    s[Metric.DELIVERY_LATENCY] = _sketch([1.0, 2.0, 3.0, 4.0])
    d = report.delivery_figures(s)
    assert (d.reported, d.sent, d.delivered, d.read, d.failed) == (10, 9, 8, 5, 2)
    assert (d.delivered_rate, d.read_rate, d.failed_rate) == (0.8, 0.5, 0.2)
    assert d.latency.count == 4 and d.latency.mean == 2.5
    assert d.latency.p50 == pytest.approx(2.0, rel=0.011)
    none = report.delivery_figures({})
    assert (none.reported, none.delivered_rate, none.latency.p50) == (0, None, None)


NOW = datetime(2026, 11, 23, 15, 42, 13, 500000, tzinfo=UTC)


def test_windows_end_now_but_a_range() -> None:
    assert report.window(WindowName.LIVE, NOW, None, None) == Window(
        name=WindowName.LIVE, start=NOW - timedelta(minutes=15), end=NOW
    )
    assert report.window(WindowName.HOUR, NOW, None, None).start == NOW - timedelta(hours=1)
    assert report.window(WindowName.TODAY, NOW, None, None).start == datetime(2026, 11, 23, tzinfo=UTC)
    # Today is the UTC day, whatever zone "now" comes in.
    late_in_tokyo = datetime(2026, 11, 24, 1, 0, tzinfo=timezone(timedelta(hours=9)))
    assert report.window(WindowName.TODAY, late_in_tokyo, None, None).start == datetime(
        2026, 11, 23, tzinfo=UTC
    )
    start, end = NOW - timedelta(days=2), NOW - timedelta(days=1)
    assert report.window(WindowName.RANGE, NOW, start, end) == Window(
        name=WindowName.RANGE, start=start, end=end
    )


@pytest.mark.parametrize(
    ("span", "step"),
    [
        (timedelta(minutes=15), "minute"),
        (timedelta(hours=2), "minute"),
        (timedelta(hours=2, seconds=1), "hour"),
        (timedelta(days=3), "hour"),
        (timedelta(days=3, seconds=1), "day"),
        (timedelta(days=30), "day"),
    ],
)
def test_the_series_step_grows_with_the_window(span: timedelta, step: str) -> None:
    assert report.series_step(Window(name=WindowName.RANGE, start=NOW - span, end=NOW)) == step


A1, A2, A3 = sorted((uuid.uuid4() for _ in range(3)), key=str)


def test_agents_share_assignments_and_their_occupancy_is_handle_time_over_online_time() -> None:
    cell_rows = [
        (str(A1), Metric.ASSIGNMENT, 0, 3, 0.0),
        (str(A2), Metric.ASSIGNMENT, 0, 1, 0.0),
        (str(A1), Metric.RESOLVED, 0, 2, 0.0),
        (str(A1), Metric.HANDLE, bin_of(600), 1, 600.0),
        (str(A1), Metric.HANDLE, bin_of(1200), 1, 1200.0),
    ]
    status_rows = [
        (A1, "online", False, 3000.0, None),
        (A1, "away", False, 600.0, None),
        (A1, "online", True, 600.0, 4),  # the latest: online again, with a capacity of 4
        (A2, "online", False, 100.0, None),
        (A2, "offline", True, 50.0, None),  # the router never told their capacity
        (A3, "away", True, 30.0, 0),  # takes nothing
    ]
    now = OpenNow(waiting={}, longest={}, active={A1: 2, A3: 1})
    rows = {r.agent_id: r for r in report.agents(cell_rows, status_rows, now, None)}
    assert list(rows) == [A1, A2, A3]
    a1, a2, a3 = rows[A1], rows[A2], rows[A3]
    assert (a1.assignments, a1.assignment_share, a2.assignments, a2.assignment_share) == (3, 0.75, 1, 0.25)
    assert a3.assignment_share == 0.0
    assert sum(r.assignment_share or 0 for r in rows.values()) == 1
    assert (a1.handled, a1.handle.count, a1.handle.mean) == (2, 2, 900.0)
    assert a1.occupancy == 0.5  # 1800 s of handling / 3600 s online
    assert a2.occupancy == 0.0
    assert a3.occupancy is None  # never online
    assert a1.status_seconds == {"away": 600.0, "online": 3600.0}
    assert (a1.status, a2.status, a3.status) == ("online", "offline", "away")
    assert (a1.active_conversations, a2.active_conversations, a3.active_conversations) == (2, 0, 1)
    # Held now against capacity: 2 of 4; no capacity told, none; a capacity of 0 has no share.
    assert (a1.capacity, a1.capacity_used) == (4, 0.5)
    assert (a2.capacity, a2.capacity_used) == (None, None)
    assert (a3.capacity, a3.capacity_used) == (0, None)
    # One agent asked for: their row only, their share still of everyone's assignments.
    [only] = report.agents(cell_rows, status_rows, now, A2)
    assert (only.agent_id, only.assignment_share) == (A2, 0.25)


def test_agents_with_no_assignments_have_no_share() -> None:
    [row] = report.agents([], [(A1, "online", True, 10.0, None)], OpenNow({}, {}, {}), None)
    assert (row.assignments, row.assignment_share, row.handled, row.occupancy) == (0, None, 0, 0.0)


def test_open_now_counts_the_waiting_per_queue_and_the_held_per_agent() -> None:
    now = report.open_now(
        [
            ("sales", True, None, 3, 120.0),
            ("sales", True, None, 1, 400.5),  # another group of the same queue
            ("", True, None, 2, None),
            ("sales", False, A1, 2, None),
            ("support", False, A1, 1, None),
            ("support", False, A2, 4, None),
            ("support", False, None, 1, None),  # held by nobody known: not an agent's
        ]
    )
    assert now.waiting == {"sales": 4, "": 2}
    assert now.longest == {"sales": 400.5}
    assert now.active == {A1: 3, A2: 4}


def test_offers_are_summed_by_agent_and_breaches_by_queue_with_the_acceptance_of_ended_offers() -> None:
    ada, bo = uuid.UUID(int=1), uuid.UUID(int=2)
    rows = [
        ("offered", ada, None, 5),
        ("offer_accepted", ada, None, 3),
        ("offer_declined", ada, None, 1),
        ("offer_timed_out", ada, None, 0),
        ("offered", bo, None, 2),
        ("offer_timed_out", bo, None, 2),
        ("escalated", None, "vip", 4),
        ("sla_breached", None, "vip", 1),
        ("sla_breached", None, "default", 2),
    ]
    r = report.routing(rows)
    assert (r.offers.offered, r.offers.accepted, r.offers.declined, r.offers.timed_out) == (7, 3, 1, 2)
    assert r.offers.acceptance_rate == 0.5  # 3 of the 6 that ended
    [a, b] = r.offers_by_agent
    assert (a.agent_id, a.offered, a.acceptance_rate) == (ada, 5, 0.75)
    assert (b.agent_id, b.offered, b.acceptance_rate) == (bo, 2, 0.0)
    assert (r.escalations, r.sla_breaches) == (4, 3)
    assert [(q.queue, q.escalations, q.sla_breaches) for q in r.by_queue] == [
        ("default", 0, 2),
        ("vip", 4, 1),
    ]
    # Nothing ended: no rate.
    assert report.routing([("offered", ada, None, 1)]).offers.acceptance_rate is None
