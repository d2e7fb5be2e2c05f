"""Deterministic routing simulations on the real database, with a controlled clock.

Every module of the router that reads ``utcnow`` reads a fake clock instead, advanced by hand, so each
scenario is a script of ticks: open and resolve conversations, heartbeat, answer offers, then run the
sweeper's steps in its order (each its own transaction, as ``sweeper.sweep_once`` does) and check
what the tables and the router's outbox say. Nothing here sleeps, and no assertion reads the wall clock.
Escalation and SLA timing run through the sweeper's own steps (``sweeper.steps``), to the microsecond.
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common import events as common_events
from switchboard_common.auth import Principal, Role
from switchboard_common.db.database import Database
from switchboard_common.db.outbox import Outbox
from switchboard_common.events import Channel, ConversationOpened, ConversationResolved, EventEnvelope
from switchboard_router import sweeper
from switchboard_router.agents import service as agents
from switchboard_router.agents.schemas import (
    AgentCreate,
    AgentUpdate,
    ChannelCapacity,
    EscalationStep,
    QueueUpsert,
    TeamUpsert,
)
from switchboard_router.models import AgentStatus, Task, outbox_table
from switchboard_router.routing import service
from switchboard_router.routing.policy import WORKLOADS, Workload, workload_index
from switchboard_router.routing.service import RoutingConfig
from switchboard_router.rules import service as rules_service
from switchboard_router.rules.book import RuleBook
from switchboard_router.rules.schemas import RuleCreate
from tests.conftest import Settings

ADMIN = Principal(Role.ADMIN)
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
NO_STICKY = RoutingConfig(sticky_window=timedelta(0))
CHAT = workload_index(Workload.CHAT)


class Clock:
    """The router's clock in these tests: it moves only when the script says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def at(self, instant: datetime) -> datetime:
        assert instant >= self.now, "the clock never goes back"
        self.now = instant
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Every router module that imported ``utcnow`` reads the fake clock (found, not listed, so a module
    that starts reading the clock later is covered too)."""
    fake = Clock(T0)
    patched = [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("switchboard_router") and getattr(module, "utcnow", None) is common_events.utcnow
    ]
    for name in patched:
        monkeypatch.setattr(sys.modules[name], "utcnow", fake)
    assert {"switchboard_router.routing.service", "switchboard_router.agents.service"} <= set(patched)
    return fake


@dataclass(frozen=True, slots=True)
class AgentRow:
    id: uuid.UUID
    status: str
    capacity: int
    capacities: list[int]
    active_count: int
    loads: list[int]


# The sweeper's steps (``sweeper.steps``) by the names the scenarios use.
_STEP_NAMES = {
    "offers timed out": "expired",
    "agents silent, set offline": "silenced",
    "conversations requeued from offline agents": "requeued",
    "unanswered conversations requeued": "unanswered",
    "SLA breaches raised": "breached",
    "escalation steps taken": "escalated",
    "waiting conversations placed": "swept",
}


class Sim:
    """The router driven by hand: service functions in their own transactions, on the fake clock."""

    def __init__(self, settings: Settings, clock: Clock, config: RoutingConfig = NO_STICKY) -> None:
        self.db = Database.from_settings(settings)
        self.outbox = Outbox(outbox_table, settings)
        self.clock = clock
        self.config = config
        # Agents whose desktops are alive: they heartbeat at every tick.
        self.present: set[uuid.UUID] = set()
        # The sweeper's, as ``sweeper.queue_sweeper`` keeps one across its ticks.
        self.memory = service.SweepMemory()

    async def run(self, step: Callable[[AsyncSession, Outbox], Awaitable[Any]]) -> Any:
        async with self.db.unit_of_work() as session:
            return await step(session, self.outbox)

    async def agent(self, name: str, *, online: bool = True, **fields: Any) -> uuid.UUID:
        body = AgentCreate(name=name, email=f"{name}@example.com", **fields)
        async with self.db.unit_of_work() as session:
            agent_id = (await agents.create(session, body)).id
        if online:
            await self.status(agent_id, AgentStatus.ONLINE)
            self.present.add(agent_id)
        return agent_id

    async def status(self, agent_id: uuid.UUID, status: AgentStatus) -> None:
        await self.run(lambda s, o: agents.set_status(s, o, ADMIN, agent_id, status))

    async def heartbeat(self, *agent_ids: uuid.UUID) -> None:
        async with self.db.unit_of_work() as session:
            for agent_id in agent_ids:
                await agents.heartbeat(session, ADMIN, agent_id)

    async def team(self, name: str, *, auto_accept: bool, offer_timeout_s: int = 30) -> None:
        body = TeamUpsert(auto_accept=auto_accept, offer_timeout_s=offer_timeout_s)
        async with self.db.unit_of_work() as session:
            await agents.upsert_team(session, name, body)

    async def open(
        self,
        *channels: Channel,
        customer: uuid.UUID | None = None,
        priority: int = 0,
        attributes: dict[str, str] | None = None,
        skills: list[str] | None = None,
    ) -> list[uuid.UUID]:
        """Open one conversation per channel, in one batch (as one poll of the consumer delivers them)."""
        batch = self.opened(
            *channels, customer=customer, priority=priority, attributes=attributes, skills=skills
        )
        await self.run(lambda s, o: service.on_opened(s, o, batch, self.config))
        return [e.conversation_id for _, e in batch]

    def opened(
        self,
        *channels: Channel,
        customer: uuid.UUID | None = None,
        priority: int = 0,
        attributes: dict[str, str] | None = None,
        skills: list[str] | None = None,
    ) -> list[tuple[EventEnvelope, ConversationOpened]]:
        """The events of ``open``'s batch, opened now."""
        opened = [
            ConversationOpened(
                conversation_id=uuid.uuid4(),
                customer_id=customer or uuid.uuid4(),
                channel=channel,
                required_skills=skills or [],
                priority=priority,
                opened_at=self.clock.now,
                customer_attributes=attributes or {},
            )
            for channel in channels or (Channel.API,)
        ]
        return [(EventEnvelope.wrap(e, producer="sim"), e) for e in opened]

    async def resolve(self, *cids: uuid.UUID) -> None:
        if not cids:
            return
        resolved = [
            ConversationResolved(conversation_id=c, agent_id=None, resolved_at=self.clock.now) for c in cids
        ]
        await self.run(lambda s, o: service.on_resolved(s, o, resolved))

    async def tick(self) -> dict[str, int]:
        """The present agents' heartbeats, then the sweeper's own steps in its order, each its own
        transaction (as ``sweeper.sweep_once``); returns what each step did, by a short name."""
        await self.heartbeat(*sorted(self.present))
        steps = sweeper.steps(self.config, self.memory)
        return {_STEP_NAMES[what]: await self.run(step) for what, step in steps}

    async def task(self, cid: uuid.UUID) -> Task:
        async with self.db.unit_of_work() as session:
            task = await session.get(Task, cid)
            assert task is not None
            return task

    async def agents(self) -> dict[uuid.UUID, AgentRow]:
        async with self.db.unit_of_work() as session:
            rows = await session.execute(
                sa.text("SELECT id, status, capacity, capacities, active_count, loads FROM router.agents")
            )
            return {
                r.id: AgentRow(r.id, r.status, r.capacity, list(r.capacities), r.active_count, list(r.loads))
                for r in rows
            }

    async def held(self) -> dict[uuid.UUID, list[int]]:
        """Per agent, the tasks they hold (offered or assigned), per workload, from the tasks themselves."""
        async with self.db.unit_of_work() as session:
            rows = await session.execute(
                sa.text(
                    "SELECT agent_id, workload, count(*) AS n FROM router.tasks"
                    " WHERE state IN ('offered', 'assigned') GROUP BY agent_id, workload"
                )
            )
            out: dict[uuid.UUID, list[int]] = {}
            for r in rows:
                out.setdefault(r.agent_id, [0] * len(WORKLOADS))[r.workload - 1] = int(r.n)
            return out

    async def taken(self) -> Counter[uuid.UUID]:
        """How many conversations each agent has been given (closed tasks keep their agent)."""
        async with self.db.unit_of_work() as session:
            rows = await session.execute(
                sa.text(
                    "SELECT agent_id, count(*) AS n FROM router.tasks WHERE agent_id IS NOT NULL GROUP BY 1"
                )
            )
            return Counter({r.agent_id: int(r.n) for r in rows})

    async def queued(self) -> list[Task]:
        async with self.db.unit_of_work() as session:
            stmt = sa.select(Task).where(Task.state == "queued")
            return list((await session.execute(stmt)).scalars().all())

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        """Payloads of the router's events of this type, oldest first (no relay runs here)."""
        async with self.db.unit_of_work() as session:
            rows = (await session.execute(sa.select(outbox_table.c.value).order_by(outbox_table.c.id))).all()
        envelopes = [EventEnvelope.from_bytes(bytes(r.value)) for r in rows]
        return [e.payload for e in envelopes if e.type == event_type]

    async def check_capacity(self) -> dict[uuid.UUID, AgentRow]:
        """The invariant every tick keeps: no agent over capacity, in total or on any workload, and each
        agent's counters are exactly the tasks they hold (capacity neither leaked nor released twice)."""
        rows = await self.agents()
        held = await self.held()
        for agent in rows.values():
            assert agent.active_count <= agent.capacity, agent
            for w, (load, cap) in enumerate(zip(agent.loads, agent.capacities, strict=True)):
                assert load <= cap, (agent, WORKLOADS[w])
            holds = held.get(agent.id, [0] * len(WORKLOADS))
            assert (agent.active_count, agent.loads) == (sum(holds), holds), agent
        assert set(held) <= set(rows)
        return rows


@pytest.fixture
async def sim(settings: Settings, clock: Clock) -> AsyncIterator[Sim]:
    s = Sim(settings, clock)
    try:
        yield s
    finally:
        await s.db.dispose()


async def _accept(sim: Sim, agent_id: uuid.UUID, cid: uuid.UUID) -> None:
    await sim.run(lambda s, o: service.accept_offer(s, o, agent_id, cid))


def _channel(rnd: random.Random) -> Channel:
    return rnd.choice((Channel.WEBCHAT, Channel.API, Channel.API))


# --- fairness and capacity -------------------------------------------------------------------------------


async def test_equal_agents_take_turns_and_never_exceed_capacity(sim: Sim) -> None:
    """Four equal agents (two conversations at once, one chat), two conversations every 10 s, each
    resolved after a seeded 5-19 s: an agent is always free again by their next turn (four arrivals, 20 s
    later) while others may still be busy, so least loaded then longest idle is round robin and the counts
    stay within one; and every tick, no agent holds more than their capacity in total or per workload."""
    rnd = random.Random(9)
    team = [
        await sim.agent(f"agent{i}", capacity=2, channel_capacity=ChannelCapacity(chat=1)) for i in range(4)
    ]
    ends: list[tuple[datetime, uuid.UUID]] = []
    overlapped = 0
    for k in range(100):
        tick = sim.clock.at(T0 + timedelta(seconds=10 * (k + 1)))
        await sim.resolve(*[c for at, c in ends if at <= tick])
        ends = [(at, c) for at, c in ends if at > tick]
        for _ in range(2):
            # One conversation per decision, at its own instant (batches: the next test).
            [cid] = await sim.open(_channel(rnd))
            ends.append((sim.clock.now + timedelta(seconds=rnd.randint(5, 19)), cid))
            sim.clock.advance(seconds=1)
        await sim.tick()
        rows = await sim.check_capacity()
        overlapped += sum(r.active_count for r in rows.values()) > 1
        taken = await sim.taken()
        assert max(taken[a] for a in team) - min(taken[a] for a in team) <= 1, (k, taken)
        assert not await sim.queued()
    assigned = await sim.events("conversation.assigned")
    per_agent = Counter(uuid.UUID(e["agent_id"]) for e in assigned)
    assert len({e["conversation_id"] for e in assigned}) == len(assigned) == 200
    assert sorted(per_agent.values()) == [50, 50, 50, 50]
    assert overlapped > 50  # agents really were busy while others took work


async def test_equal_agents_take_turns_when_conversations_arrive_in_batches(sim: Sim) -> None:
    """Three conversations per consumer batch, four equal agents all free when each batch arrives: the
    counts should stay within one of each other, as they do when conversations come one at a time."""
    team = [await sim.agent(f"agent{i}", capacity=2) for i in range(4)]
    previous: list[uuid.UUID] = []
    for k in range(12):
        sim.clock.at(T0 + timedelta(seconds=10 * (k + 1)))
        await sim.resolve(*previous)  # everyone is free again
        previous = await sim.open(Channel.API, Channel.API, Channel.API)
        await sim.tick()
        await sim.check_capacity()
    taken = await sim.taken()
    assert max(taken[a] for a in team) - min(taken[a] for a in team) <= 1, sorted(taken.values())


async def test_bursts_beyond_capacity_wait_and_each_conversation_is_served_once(sim: Sim) -> None:
    """Bursts of mixed chat and messaging well beyond four agents' capacity, resolved after seeded handle
    times: after every tick no agent is over capacity in total or on a workload and each agent's counters
    equal the work they hold; in the end every conversation was assigned exactly once and all capacity
    came back."""
    rnd = random.Random(17)
    team = [
        await sim.agent(f"agent{i}", capacity=2, channel_capacity=ChannelCapacity(chat=1)) for i in range(4)
    ]
    handle: dict[uuid.UUID, int] = {}
    started: dict[uuid.UUID, int] = {}  # conversation → tick it was placed
    opened = 0
    full_ticks = 0  # ticks with every agent at capacity
    longest_queue = 0
    k = 0
    while opened < 60 or handle:
        k += 1
        sim.clock.at(T0 + timedelta(seconds=10 * k))
        done = [c for c, at in started.items() if k >= at + handle[c]]
        await sim.resolve(*done)
        for c in done:
            del handle[c], started[c]
        if opened < 60:
            burst = await sim.open(*[_channel(rnd) for _ in range(min(rnd.randint(1, 6), 60 - opened))])
            opened += len(burst)
            handle.update({c: rnd.randint(1, 4) for c in burst})
        await sim.tick()
        rows = await sim.check_capacity()
        full_ticks += all(r.active_count == r.capacity for r in rows.values())
        longest_queue = max(longest_queue, len(await sim.queued()))
        async with sim.db.unit_of_work() as session:
            placed = await session.execute(
                sa.text("SELECT conversation_id FROM router.tasks WHERE state = 'assigned'")
            )
            for (cid,) in placed:
                started.setdefault(cid, k)
        assert k < 200, "the queue never drained"
    assigned = await sim.events("conversation.assigned")
    assert len({e["conversation_id"] for e in assigned}) == len(assigned) == 60
    assert all(r.active_count == 0 and r.loads == [0, 0, 0, 0] for r in (await sim.agents()).values())
    assert set(await sim.taken()) == set(team)
    assert full_ticks > 5 and longest_queue > 5  # capacity really was the limit


async def test_capacity_freed_together_takes_as_many_waiting_conversations(sim: Sim) -> None:
    """Four busy agents (one conversation each) and four conversations waiting: when the four are
    resolved in one batch, the four waiting conversations go to the four agents at once."""
    team = [await sim.agent(f"agent{i}", capacity=1) for i in range(4)]
    busy = await sim.open(*[Channel.API] * 4)
    sim.clock.advance(seconds=1)
    waiting = await sim.open(*[Channel.API] * 4)
    assert len(await sim.queued()) == 4
    sim.clock.advance(seconds=1)
    await sim.resolve(*busy)
    await sim.check_capacity()
    assert not await sim.queued()
    assert {(await sim.task(c)).agent_id for c in waiting} == set(team)


# --- offers ----------------------------------------------------------------------------------------------


async def test_an_unanswered_offer_lapses_at_its_deadline_and_moves_on(sim: Sim) -> None:
    """A team that takes offers, answer time 30 s: an offer survives every tick up to its deadline, lapses
    at it (not a microsecond before), goes to the next agent with a fresh deadline, and never returns to an
    agent who let it lapse, even the least loaded one."""
    await sim.team("tier2", auto_accept=False, offer_timeout_s=30)
    bob = await sim.agent("bob", teams=["tier2"], capacity=2)
    carol = await sim.agent("carol", teams=["tier2"], capacity=2)
    first_offer = (await sim.open())[0]
    sim.clock.advance(seconds=1)
    second_offer = (await sim.open())[0]
    holders: list[uuid.UUID] = []
    for c in (first_offer, second_offer):
        holder = (await sim.task(c)).agent_id
        assert holder is not None
        await _accept(sim, holder, c)
        holders.append(holder)
    assert sorted(map(str, holders)) == sorted(map(str, (bob, carol)))  # one each: least loaded
    alice = await sim.agent("alice", teams=["tier2"], capacity=2)
    sim.clock.advance(seconds=5)
    [cid] = await sim.open()

    expected = [alice, *holders]  # least loaded first; then, equally loaded, the one idle longest
    for n, agent_id in enumerate(expected):
        task = await sim.task(cid)
        offered_at = sim.clock.now
        deadline = offered_at + timedelta(seconds=30)
        assert (task.state, task.agent_id, task.offered_at, task.offer_expires_at) == (
            "offered",
            agent_id,
            offered_at,
            deadline,
        )
        assert task.declined_by == expected[:n]
        for seconds in (10, 20, 29):
            sim.clock.at(offered_at + timedelta(seconds=seconds))
            assert (await sim.tick())["expired"] == 0
        sim.clock.at(deadline - timedelta(microseconds=1))
        assert (await sim.tick())["expired"] == 0
        assert (await sim.task(cid)).agent_id == agent_id
        sim.clock.at(deadline)
        assert (await sim.tick())["expired"] == 1
        rows = await sim.check_capacity()
        assert rows[agent_id].active_count == (0 if agent_id == alice else 1)  # the hold is released

    # Everyone let it lapse: it waits, though Alice is free and the least loaded of all.
    task = await sim.task(cid)
    assert (task.state, task.agent_id, task.declined_by) == ("queued", None, expected)
    for _ in range(3):
        sim.clock.advance(minutes=5)
        assert (await sim.tick())["swept"] == 0
    timed_out = [
        e for e in await sim.events("conversation.offer_timed_out") if e["conversation_id"] == str(cid)
    ]
    offered = [e for e in await sim.events("conversation.offered") if e["conversation_id"] == str(cid)]
    assert [e["agent_id"] for e in timed_out] == [e["agent_id"] for e in offered] == list(map(str, expected))
    # A new agent of the team gets it at once.
    dave = await sim.agent("dave", teams=["tier2"], capacity=2)
    assert ((await sim.task(cid)).state, (await sim.task(cid)).agent_id) == ("offered", dave)
    await sim.check_capacity()


# --- presence --------------------------------------------------------------------------------------------


async def test_a_silent_agents_offers_return_at_once_and_conversations_after_the_grace(
    sim: Sim,
) -> None:
    """An agent stops heartbeating. Silent for the presence timeout (60 s) they go offline, at 60 s exactly
    (a deadline is reached at its instant); the offer they held goes to someone else in that tick; their
    assigned conversations stay theirs for the grace period (120 s) and then, in the tick that reaches it,
    go to someone else with their original queue time; capacity is released once and counters always
    equal the work held."""
    sim.config = RoutingConfig(
        sticky_window=timedelta(0),
        presence_timeout=timedelta(seconds=60),
        offline_grace=timedelta(seconds=120),
    )
    await sim.team("offers", auto_accept=False, offer_timeout_s=600)
    leaver = await sim.agent("leaver", teams=["offers"], capacity=3)
    kept = []
    for _ in range(2):
        [c] = await sim.open()
        kept.append(c)
        await _accept(sim, leaver, c)
        sim.clock.advance(seconds=1)
    [offer] = await sim.open()
    opened_at = {c: (await sim.task(c)).enqueued_at for c in kept}
    assert opened_at == {kept[0]: T0, kept[1]: T0 + timedelta(seconds=1)}
    sim.clock.advance(seconds=1)
    helper = await sim.agent("helper", capacity=5)
    assert (await sim.agents())[leaver].active_count == 3

    last_seen = T0 + timedelta(seconds=30)
    for seconds in [*range(10, 90, 10), 89.999999]:  # ticks every 10 s; the last heartbeat is at 30 s
        if sim.clock.at(T0 + timedelta(seconds=seconds)) > last_seen:
            sim.present.discard(leaver)  # the desktop is gone
        assert (await sim.tick())["silenced"] == 0, seconds  # up to last_seen + 60 s excluded
        assert (await sim.agents())[leaver].status == "online"
        assert (await sim.task(offer)).agent_id == leaver
        await sim.check_capacity()

    went_offline = sim.clock.at(last_seen + timedelta(seconds=60))
    steps = await sim.tick()
    assert (steps["silenced"], steps["requeued"]) == (1, 0)
    rows = await sim.check_capacity()
    assert (rows[leaver].status, rows[leaver].active_count) == ("offline", 2)
    task = await sim.task(offer)
    assert (task.state, task.agent_id) == ("assigned", helper)  # the offer came back and moved on at once
    assert [(await sim.task(c)).agent_id for c in kept] == [leaver, leaver]

    for seconds in (10, 60, 110):
        sim.clock.at(went_offline + timedelta(seconds=seconds))
        assert (await sim.tick())["requeued"] == 0
        assert [(await sim.task(c)).agent_id for c in kept] == [leaver, leaver]
    sim.clock.at(went_offline + timedelta(seconds=120) - timedelta(microseconds=1))
    assert (await sim.tick())["requeued"] == 0
    sim.clock.at(went_offline + timedelta(seconds=120))
    assert (await sim.tick())["requeued"] == 2
    rows = await sim.check_capacity()
    assert (rows[leaver].active_count, rows[leaver].loads) == (0, [0, 0, 0, 0])
    assert (rows[helper].active_count, rows[helper].loads) == (3, [0, 3, 0, 0])
    for c in kept:
        task = await sim.task(c)
        assert (task.state, task.agent_id, task.enqueued_at) == ("assigned", helper, opened_at[c])
    # Once: later ticks requeue nothing more, and each conversation was requeued one time.
    for _ in range(3):
        sim.clock.advance(seconds=30)
        assert (await sim.tick())["requeued"] == 0
        await sim.check_capacity()
    requeued = await sim.events("conversation.requeued")
    assert sorted(e["conversation_id"] for e in requeued) == sorted(map(str, kept))
    assert {(e["agent_id"], e["reason"]) for e in requeued} == {(str(leaver), "agent_offline")}
    reassigned = {
        e["conversation_id"]: datetime.fromisoformat(e["queued_at"])
        for e in await sim.events("conversation.assigned")
        if e["agent_id"] == str(helper)
    }
    assert {c: reassigned[str(c)] for c in kept} == opened_at  # announced with the original queue time


async def test_the_grace_counts_from_the_silence_deadline_however_late_the_sweeper_ticks(sim: Sim) -> None:
    """Presence timeout 60 s, grace 120 s: an agent last heard from at t is offline as of t + 60 s and
    their conversations are requeued at t + 180 s exactly, whenever the sweeper notices the silence. One
    agent, last heard from at T0 (coming online), is first looked at by a tick at T0 + 180 s: they go
    offline as of T0 + 60 s and lose their conversation in that same tick. The other, last heard from at
    T0 + 10 s, goes offline in that tick too (as of T0 + 70 s) but keeps theirs until T0 + 190 s."""
    sim.config = RoutingConfig(
        sticky_window=timedelta(0),
        presence_timeout=timedelta(seconds=60),
        offline_grace=timedelta(seconds=120),
    )
    early = await sim.agent("early", capacity=1)
    [first] = await sim.open()
    sim.clock.at(T0 + timedelta(seconds=10))
    late = await sim.agent("late", capacity=1)
    [second] = await sim.open()
    assert [(await sim.task(c)).agent_id for c in (first, second)] == [early, late]
    sim.present.clear()  # neither heartbeats again

    sim.clock.at(T0 + timedelta(seconds=180))
    steps = await sim.tick()
    assert (steps["silenced"], steps["requeued"]) == (2, 1)
    rows = await sim.agents()
    assert (rows[early].status, rows[late].status) == ("offline", "offline")
    async with sim.db.unit_of_work() as session:
        since: dict[uuid.UUID, datetime] = dict(
            (await session.execute(sa.text("SELECT id, status_changed_at FROM router.agents"))).all()
        )
    assert since == {early: T0 + timedelta(seconds=60), late: T0 + timedelta(seconds=70)}
    offline = [e for e in await sim.events("agent.status_changed") if e["status"] == "offline"]
    assert {(e["agent_id"], datetime.fromisoformat(e["changed_at"])) for e in offline} == {
        (str(early), T0 + timedelta(seconds=60)),
        (str(late), T0 + timedelta(seconds=70)),
    }
    assert [((await sim.task(c)).state, (await sim.task(c)).agent_id) for c in (first, second)] == [
        ("queued", None),
        ("assigned", late),
    ]

    sim.clock.at(T0 + timedelta(seconds=190) - timedelta(microseconds=1))
    assert (await sim.tick())["requeued"] == 0
    sim.clock.at(T0 + timedelta(seconds=190))
    assert (await sim.tick())["requeued"] == 1
    assert (await sim.task(second)).state == "queued"
    requeued = await sim.events("conversation.requeued")
    assert [(e["conversation_id"], e["agent_id"]) for e in requeued] == [
        (str(first), str(early)),
        (str(second), str(late)),
    ]
    await sim.check_capacity()


# --- escalation and SLA ------------------------------------------------------------------------------


async def test_escalation_steps_and_the_sla_breach_happen_at_their_exact_instants(sim: Sim) -> None:
    """A VIP conversation (queue "vip": optional skills dropped at 60 s, levels relaxed by 2 at 120 s; SLA
    90 s) waits from T0 for billing at level 4 and Spanish, which the only agent (billing 2) lacks. Each
    change happens in the tick that reaches its instant, not a microsecond before, and once: ring 1 at
    T0 + 60 s (Spanish no longer asked), the breach at T0 + 90 s (priority up one, announced), ring 2 at
    T0 + 120 s (billing 2 suffices), when the escalation routes it to the agent in the same tick."""
    sim.config = RoutingConfig(sticky_window=timedelta(0), rules=RuleBook(0, "en"))
    steps = [EscalationStep(after_s=60, drop_optional=True), EscalationStep(after_s=120, relax_levels_by=2)]
    async with sim.db.unit_of_work() as session:
        await agents.upsert_queue(session, "vip", QueueUpsert(escalation=steps))
        await rules_service.create(
            session,
            RuleCreate.model_validate(
                {
                    "name": "vip",
                    "position": 1,
                    "conditions": {"customer": {"tier": "vip"}},
                    "outcome": {
                        "queue": "vip",
                        "required_skills": {"billing": 4},
                        "optional_skills": ["spanish"],
                        "sla_target_seconds": 90,
                    },
                }
            ),
        )
    agent = await sim.agent("plain", skills=[{"skill": "billing", "level": 2}], capacity=3)
    [cid] = await sim.open(attributes={"tier": "vip"})

    async def requirement() -> tuple[str, dict[str, int], int, int, uuid.UUID | None]:
        task = await sim.task(cid)
        levels = dict(zip(task.required_skills, task.min_levels, strict=True))
        return task.state, levels, task.escalation_step, task.priority, task.agent_id

    assert await requirement() == ("queued", {"billing": 4, "spanish": 1}, 0, 0, None)
    just_before = timedelta(microseconds=1)
    expected = [
        (60, "escalated", ("queued", {"billing": 4}, 1, 0, None)),
        (90, "breached", ("queued", {"billing": 4}, 1, 1, None)),
        (120, "escalated", ("assigned", {"billing": 2}, 2, 1, agent)),
    ]
    before = await requirement()
    for seconds, step, after in expected:
        sim.clock.at(T0 + timedelta(seconds=seconds) - just_before)
        ticked = await sim.tick()
        assert (ticked["escalated"], ticked["breached"], await requirement()) == (0, 0, before), seconds
        sim.clock.at(T0 + timedelta(seconds=seconds))
        ticked = await sim.tick()
        assert ticked[step] == 1 and ticked["escalated"] + ticked["breached"] == 1, (seconds, ticked)
        assert await requirement() == after, seconds
        before = after
    sim.clock.advance(seconds=600)
    ticked = await sim.tick()
    assert (ticked["escalated"], ticked["breached"]) == (0, 0)  # each change once

    escalated = await sim.events("conversation.escalated")
    assert [
        (e["step"], e["required_skills"], datetime.fromisoformat(e["escalated_at"])) for e in escalated
    ] == [
        (1, {"billing": 4}, T0 + timedelta(seconds=60)),
        (2, {"billing": 2}, T0 + timedelta(seconds=120)),
    ]
    [breach] = await sim.events("conversation.sla_breached")
    assert (breach["priority"], breach["sla_target_s"], datetime.fromisoformat(breach["breached_at"])) == (
        1,
        90,
        T0 + timedelta(seconds=90),
    )
    [assigned] = await sim.events("conversation.assigned")
    assert (assigned["agent_id"], datetime.fromisoformat(assigned["assigned_at"])) == (
        str(agent),
        T0 + timedelta(seconds=120),
    )
    await sim.check_capacity()


# --- competing transactions ------------------------------------------------------------------------------


async def test_replicas_routing_and_sweeping_at_once_fill_capacity_exactly_once(sim: Sim) -> None:
    """Four batches of conversations routed in concurrent transactions (as replicas would) while two
    sweeps run, all at one instant of the clock: every agent is filled to capacity and no further, each
    conversation is assigned at most once, and the rest wait; the next tick changes nothing."""
    agents_ = [await sim.agent(f"a{i}", capacity=2) for i in range(3)]
    batches = [sim.opened(*[Channel.API] * 4) for _ in range(4)]

    async def route(batch: list[tuple[EventEnvelope, ConversationOpened]]) -> None:
        await sim.run(lambda s, o: service.on_opened(s, o, batch, sim.config))

    await asyncio.gather(
        *(route(b) for b in batches),
        sim.run(service.sweep),
        sim.run(service.sweep),
    )
    rows = await sim.check_capacity()
    assert [rows[a].active_count for a in agents_] == [2, 2, 2]
    assigned = Counter(e["conversation_id"] for e in await sim.events("conversation.assigned"))
    assert len(assigned) == 6 and set(assigned.values()) == {1}
    assert len(await sim.queued()) == 10
    assert (await sim.tick())["swept"] == 0
    assert len(await sim.events("conversation.assigned")) == 6


# --- the sweeper's memory --------------------------------------------------------------------------------


async def test_the_sweeper_serves_agents_changed_since_its_last_pass_and_all_every_full_pass(
    sim: Sim,
) -> None:
    """With ``full_every`` 3, the sweeper's passes 1, 4, 7… read every agent with room, the others only
    agents changed since the pass before. A conversation that missed its only agent because another
    transaction held that agent's row (the agent itself unchanged) waits for the next full pass; once the
    agent's load changes, the next pass serves them again."""
    sim.memory = service.SweepMemory(full_every=3)
    agent = await sim.agent("only", capacity=3)
    [nobody] = await sim.open(skills=["billing"])  # keeps the queue non-empty: every tick is a pass

    async def open_while_held() -> uuid.UUID:
        async with sim.db.unit_of_work() as holder:
            await holder.execute(
                sa.text("SELECT 1 FROM router.agents WHERE id = :id FOR UPDATE"), {"id": agent}
            )
            [cid] = await sim.open()
        assert (await sim.task(cid)).state == "queued"  # its agent was held: it waits
        return cid

    assert (await sim.tick())["swept"] == 0  # pass 1, full: the agent is remembered
    missed = await open_while_held()
    for unchanged_pass in (2, 3):
        sim.clock.advance(seconds=1)
        assert (await sim.tick())["swept"] == 0, unchanged_pass
        assert (await sim.task(missed)).state == "queued", unchanged_pass
    sim.clock.advance(seconds=1)
    assert (await sim.tick())["swept"] == 1  # pass 4, full
    assert (await sim.task(missed)).agent_id == agent

    again = await open_while_held()
    sim.clock.advance(seconds=1)
    assert (await sim.tick())["swept"] == 1  # pass 5: the agent's load changed since pass 4
    assert (await sim.task(again)).agent_id == agent
    assert (await sim.task(nobody)).state == "queued"
    await sim.check_capacity()


# --- stickiness ------------------------------------------------------------------------------------------


async def test_a_returning_customer_goes_back_to_their_agent_within_the_window(sim: Sim) -> None:
    """Within the sticky window (1 h since the customer's last assignment) their conversation goes to
    their previous agent even when another is less loaded; past the window, or with that agent full, to
    the least loaded."""
    # Presence only through the API here: hours pass with no ticks to heartbeat in.
    sim.config = RoutingConfig(sticky_window=timedelta(hours=1), presence_timeout=timedelta(0))
    customer = uuid.uuid4()
    first = await sim.agent("first", capacity=3)
    [c1] = await sim.open(customer=customer)
    await sim.open()  # another customer's: the first agent stays a little busy
    sim.clock.advance(minutes=1)
    other = await sim.agent("other", capacity=3)
    sim.clock.advance(minutes=1)
    await sim.resolve(c1)
    assert {a: r.active_count for a, r in (await sim.agents()).items()} == {first: 1, other: 0}

    sim.clock.advance(minutes=10)
    [c2] = await sim.open(customer=customer)
    [control] = await sim.open()  # a new customer: the least loaded, as the first would be without stickiness
    assert ((await sim.task(c2)).agent_id, (await sim.task(control)).agent_id) == (first, other)
    await sim.resolve(c2, control)

    sim.clock.advance(minutes=59, seconds=59)  # since c2 was assigned: still inside the window
    [c3] = await sim.open(customer=customer)
    assert (await sim.task(c3)).agent_id == first
    last_assigned = sim.clock.now
    await sim.resolve(c3)

    sim.clock.at(last_assigned + timedelta(hours=1, seconds=1))
    [c4] = await sim.open(customer=customer)
    assert (await sim.task(c4)).agent_id == other  # the first agent has room: only the window decided
    await sim.resolve(c4)

    # Inside the window again (c4 just went to ``other``), but that agent is full: the first takes it.
    async with sim.db.unit_of_work() as session:
        await agents.update(session, sim.outbox, ADMIN, other, AgentUpdate(capacity=0))
    sim.clock.advance(minutes=1)
    [c5] = await sim.open(customer=customer)
    assert (await sim.task(c5)).agent_id == first
    await sim.check_capacity()
