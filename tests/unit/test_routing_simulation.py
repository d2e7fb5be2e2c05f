"""Discrete-event simulations of the routing policy on a simulated clock: long seeded streams of
conversations arriving and resolving, every decision made by ``policy.match`` on the agents' state at that
instant, and the policy's promises checked at every step against an oracle written here: fairness among
equal agents, capacity per workload and in total, work conservation, queue order, sticky routing."""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from switchboard_router.routing.policy import (
    WORKLOADS,
    Candidate,
    Match,
    Requirement,
    Waiting,
    Workload,
    assignment_time,
    match,
    qualifies,
)

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
NEVER = datetime.min.replace(tzinfo=UTC)


def agent_id(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.agents.test")


@dataclass
class Agent:
    id: uuid.UUID
    capacity: int
    capacities: tuple[int, ...]
    proficiency: dict[str, int] = field(default_factory=dict)
    active: int = 0
    loads: list[int] = field(default_factory=lambda: [0] * len(WORKLOADS))
    last: datetime | None = None
    taken: int = 0  # assignments so far

    def candidate(self) -> Candidate:
        return Candidate(
            self.id,
            self.proficiency,
            self.capacity,
            self.active,
            self.last,
            self.capacities,
            tuple(self.loads),
        )

    def has_room(self, w: int) -> bool:
        return self.active < self.capacity and self.loads[w] < self.capacities[w]

    def share(self, w: int) -> float:
        """The oracle's load share: the fuller of the total and the workload (no capacity is full)."""
        total = self.active / self.capacity if self.capacity else 1.0
        load = self.loads[w] / self.capacities[w] if self.capacities[w] else 1.0
        return max(total, load)


def equal_agents(n: int, capacity: int, **per: int) -> list[Agent]:
    caps = tuple(per.get(w.value, capacity) for w in WORKLOADS)
    return [Agent(agent_id(f"a{i}"), capacity, caps) for i in range(n)]


class World:
    """Agents, a queue and a simulated clock; ``route`` is one decision of the policy, as the engine makes
    one each time work arrives or capacity frees up, and applies it with every invariant checked."""

    def __init__(self, agents: Sequence[Agent]) -> None:
        self.now = T0
        self.agents = {a.id: a for a in agents}
        self.queue: dict[uuid.UUID, Waiting] = {}
        self.handle: dict[uuid.UUID, timedelta] = {}
        self.assigned: dict[uuid.UUID, uuid.UUID] = {}
        self._endings: list[tuple[datetime, int, uuid.UUID, uuid.UUID, int]] = []
        self._seq = 0

    def arrive(self, task: Waiting, handle_time: timedelta) -> None:
        assert task.conversation_id not in self.queue and task.conversation_id not in self.assigned
        self.queue[task.conversation_id] = task
        self.handle[task.conversation_id] = handle_time

    def next_ending(self) -> datetime | None:
        return self._endings[0][0] if self._endings else None

    def advance(self, to: datetime) -> list[uuid.UUID]:
        """Move the clock; conversations whose handle time is over resolve, freeing their capacity.
        Returns the agents freed."""
        assert to >= self.now
        self.now = to
        freed: list[uuid.UUID] = []
        while self._endings and self._endings[0][0] <= to:
            _, _, _, aid, w = heapq.heappop(self._endings)
            a = self.agents[aid]
            a.active -= 1
            a.loads[w] -= 1
            assert a.active >= 0 and a.loads[w] >= 0
            freed.append(aid)
        return freed

    def route(self) -> list[Match]:
        """One decision over the whole queue and every agent, applied."""
        matches = match(list(self.queue.values()), [a.candidate() for a in self.agents.values()], self.now)
        for k, m in enumerate(matches):
            task = self.queue.pop(m.conversation_id)  # KeyError: placed twice, or never queued
            a = self.agents[m.agent_id]
            w = WORKLOADS.index(task.requirement.workload)
            assert a.has_room(w), f"{a.id} given work beyond its capacity"
            assert qualifies(a.candidate(), task.requirement)
            assert m.agent_id not in task.excluded
            a.active += 1
            a.loads[w] += 1
            # As the router stores it: the k-th assignment of a decision counts as made k µs later.
            a.last = assignment_time(self.now, k)
            a.taken += 1
            self.assigned[m.conversation_id] = m.agent_id
            self._seq += 1
            heapq.heappush(
                self._endings,
                (self.now + self.handle[m.conversation_id], self._seq, m.conversation_id, a.id, w),
            )
        self.check_capacity()
        return matches

    def check_capacity(self) -> None:
        for a in self.agents.values():
            assert 0 <= a.active <= a.capacity, a
            assert all(0 <= load <= cap for load, cap in zip(a.loads, a.capacities, strict=True)), a
            assert a.active == sum(a.loads), a

    def check_work_conserving(self) -> None:
        """Nothing waits that an agent could take right now."""
        for task in self.queue.values():
            w = WORKLOADS.index(task.requirement.workload)
            able = [
                a.id
                for a in self.agents.values()
                if a.has_room(w) and qualifies(a.candidate(), task.requirement) and a.id not in task.excluded
            ]
            assert not able, f"{task.conversation_id} waits while {able} have room"

    def spread(self) -> int:
        taken = [a.taken for a in self.agents.values()]
        return max(taken) - min(taken)


def waiting(
    rnd: random.Random,
    at: datetime,
    *,
    workload: Workload = Workload.MESSAGING,
    skills: Sequence[str] = (),
    priority: int = 0,
    preferred: uuid.UUID | None = None,
    excluded: frozenset[uuid.UUID] = frozenset(),
) -> Waiting:
    cid = uuid.UUID(int=rnd.getrandbits(128), version=4)
    return Waiting(cid, Requirement.of(list(skills), workload), priority, at, preferred, excluded)


def run_stream(
    world: World,
    arrivals: Sequence[tuple[datetime, Sequence[tuple[Waiting, timedelta]]]],
    after_decision: Callable[[World, list[Match]], None] = lambda w, m: None,
    *,
    decide: Callable[[World], None] | None = None,
) -> None:
    """Play arrivals (instant, [(task, handle time)]) and the resolutions they cause in time order,
    deciding at every instant something happens; then let every conversation finish."""
    pending = list(arrivals)
    pending.reverse()
    while pending or world.next_ending() is not None:
        ending = world.next_ending()
        if pending and (ending is None or pending[-1][0] <= ending):
            at, batch = pending.pop()
            world.advance(at)
            for task, handle in batch:
                world.arrive(task, handle)
        else:
            assert ending is not None
            world.advance(ending)
        if decide is None:
            after_decision(world, world.route())
        else:
            decide(world)
    assert not world.queue, "conversations left waiting with every agent free"


# --- fairness --------------------------------------------------------------------------------------------


def test_equal_agents_take_turns_when_each_is_free_by_their_turn() -> None:
    """Four equal agents, conversations one at a time, handle times random but over before the agent's
    turn comes round again (four arrivals later), while others are still busy: the least loaded, longest
    idle choice is round robin, so assignment counts never differ by more than one."""
    rnd = random.Random(9)
    world = World(equal_agents(4, capacity=2, chat=1))
    arrivals = []
    at = T0
    for _ in range(2000):
        at += timedelta(milliseconds=rnd.randint(10_000, 30_000))  # four arrivals span >= 40 s ...
        handle = timedelta(milliseconds=rnd.randint(5_000, 40_000))  # ... the longest handle time
        workload = rnd.choice((Workload.CHAT, Workload.MESSAGING))
        arrivals.append((at, [(waiting(rnd, at, workload=workload), handle)]))
    busy_when_assigning = 0

    def check(w: World, matches: list[Match]) -> None:
        nonlocal busy_when_assigning
        assert w.spread() <= 1, {a.id: a.taken for a in w.agents.values()}
        if matches and any(
            a.active > 1 or (a.active == 1 and a.id != matches[0].agent_id) for a in w.agents.values()
        ):
            busy_when_assigning += 1

    run_stream(world, arrivals, check)
    assert sum(a.taken for a in world.agents.values()) == 2000
    # Not a trivial round robin of idle agents: work often arrived while others were still busy.
    assert busy_when_assigning > 500, busy_when_assigning


def test_equal_agents_take_turns_when_work_arrives_in_batches() -> None:
    """The same promise when conversations arrive several at once (one poll of the consumer): everyone is
    free when each batch arrives, so the assignment counts should stay within one of each other."""
    rnd = random.Random(9)
    world = World(equal_agents(4, capacity=2))
    arrivals = []
    at = T0
    for _ in range(100):
        at += timedelta(seconds=rnd.randint(60, 120))
        batch = [(waiting(rnd, at), timedelta(seconds=rnd.randint(5, 50))) for _ in range(3)]
        arrivals.append((at, batch))

    def check(w: World, matches: list[Match]) -> None:
        assert w.spread() <= 1, sorted(a.taken for a in w.agents.values())

    run_stream(world, arrivals, check)


# --- capacity and work conservation ----------------------------------------------------------------------


def test_capacity_per_workload_and_in_total_is_never_exceeded_under_overload() -> None:
    """Agents of unequal capacities and skills, bursts of mixed work far beyond their capacity, random
    handle times: at every instant no agent holds more than their total or any workload's capacity, and
    nothing waits that some eligible agent has room for."""
    rnd = random.Random(17)
    agents = [
        Agent(agent_id("generalist"), 4, (1, 3, 4, 0)),
        Agent(agent_id("chatter"), 3, (3, 1, 0, 0), {"billing": 2}),
        Agent(agent_id("biller"), 5, (2, 5, 5, 1), {"billing": 5}),
        Agent(agent_id("tech"), 2, (2, 2, 2, 2), {"tech": 4}),
        Agent(agent_id("both"), 3, (1, 2, 3, 1), {"billing": 3, "tech": 2}),
        Agent(agent_id("emailer"), 6, (0, 0, 6, 0)),
    ]
    world = World(agents)
    arrivals = []
    at = T0
    for _ in range(400):
        at += timedelta(seconds=rnd.randint(5, 20))
        batch = []
        for _ in range(rnd.randint(0, 4)):
            skills = rnd.choice(((), (), ("billing",), ("tech",), ("billing", "tech")))
            workload = rnd.choice(WORKLOADS)
            task = waiting(rnd, at, workload=workload, skills=skills, priority=rnd.randint(0, 2))
            batch.append((task, timedelta(seconds=rnd.randint(30, 240))))
        arrivals.append((at, batch))
    full_instants = 0
    longest_queue = 0

    def check(w: World, matches: list[Match]) -> None:
        nonlocal full_instants, longest_queue
        w.check_work_conserving()
        full_instants += any(a.active == a.capacity for a in w.agents.values())
        longest_queue = max(longest_queue, len(w.queue))

    run_stream(world, arrivals, check)
    total = sum(len(b) for _, b in arrivals)
    assert len(world.assigned) == total and sum(a.taken for a in agents) == total
    assert all(a.active == 0 for a in agents)
    # Capacity really was the limit: agents were full and work queued up.
    assert full_instants > 500 and longest_queue > 20


# --- queue order -----------------------------------------------------------------------------------------


def test_freed_capacity_takes_the_queue_by_priority_then_age() -> None:
    """With a backlog, each freed slot goes to the first waiting conversation by priority (high first),
    then age, then id; so each decision places exactly the head of that order."""
    rnd = random.Random(23)
    world = World(equal_agents(3, capacity=2))
    arrivals = []
    at = T0
    for _ in range(300):
        at += timedelta(seconds=rnd.randint(1, 30))
        batch = [
            (
                waiting(rnd, at, priority=rnd.choice((0, 0, 0, 1, 2, 5))),
                timedelta(seconds=rnd.randint(20, 200)),
            )
            for _ in range(rnd.randint(0, 3))
        ]
        arrivals.append((at, batch))
    jumped = 0  # decisions that placed a younger conversation ahead of an older one, by priority

    def decide(world: World) -> None:
        nonlocal jumped
        free = sum(a.capacity - a.active for a in world.agents.values())
        head = sorted(world.queue.values(), key=lambda t: (-t.priority, t.enqueued_at, t.conversation_id))
        expected = {t.conversation_id for t in head[:free]}
        placed = {m.conversation_id for m in world.route()}
        assert placed == expected
        left = list(world.queue.values())
        jumped += any(
            t.enqueued_at > o.enqueued_at and t.priority > o.priority
            for t in (head[i] for i in range(min(free, len(head))))
            for o in left
        )

    run_stream(world, arrivals, decide=decide)
    assert jumped > 50, jumped  # priorities really reordered the queue


# --- stickiness ------------------------------------------------------------------------------------------


def test_the_customers_previous_agent_takes_their_conversations_while_eligible() -> None:
    """Returning customers prefer their previous agent (within a sticky window): that agent takes the
    conversation whenever they have room and did not decline it, even when others are less loaded;
    otherwise the least loaded, longest idle of the others does (and no one, when none has room)."""
    rnd = random.Random(31)
    agents = equal_agents(5, capacity=2, chat=1)
    world = World(agents)
    window = timedelta(minutes=5)
    customers = [uuid.uuid4() for _ in range(12)]
    previous: dict[uuid.UUID, tuple[uuid.UUID, datetime]] = {}  # customer → (agent, when assigned)
    customer_of: dict[uuid.UUID, uuid.UUID] = {}

    def remember(matches: list[Match]) -> None:
        for m in matches:
            previous[customer_of[m.conversation_id]] = (m.agent_id, world.now)

    outcomes = {"sticky": 0, "sticky, others less loaded": 0, "previous full": 0, "previous declined": 0}
    at = T0
    for _ in range(3000):
        at += timedelta(seconds=rnd.randint(1, 25))
        world.advance(at)
        remember(world.route())  # the freed capacity takes the backlog first, as on_resolved does
        if world.queue:
            continue  # the oracle below judges a lone decision; a backlog is served by queue order
        customer = rnd.choice(customers)
        sticky = previous.get(customer)
        preferred = sticky[0] if sticky is not None and at - sticky[1] <= window else None
        excluded = frozenset({preferred}) if preferred is not None and rnd.random() < 0.1 else frozenset()
        workload = rnd.choice((Workload.CHAT, Workload.MESSAGING))
        w = WORKLOADS.index(workload)
        task = waiting(rnd, at, workload=workload, preferred=preferred, excluded=excluded)
        eligible = [a for a in agents if a.has_room(w) and a.id not in excluded]
        if preferred is not None and any(a.id == preferred for a in eligible):
            expected: uuid.UUID | None = preferred
            least = min(a.share(w) for a in eligible)
            outcomes[
                "sticky, others less loaded" if world.agents[preferred].share(w) > least else "sticky"
            ] += 1
        else:
            others = [a for a in eligible if a.id != preferred]
            best = min(others, key=lambda a: (a.share(w), a.last or NEVER, a.id), default=None)
            expected = None if best is None else best.id
            if preferred is not None:
                outcomes["previous declined" if excluded else "previous full"] += 1
        customer_of[task.conversation_id] = customer
        world.arrive(task, timedelta(seconds=rnd.randint(10, 120)))
        placed = world.route()
        assert [m.agent_id for m in placed] == ([] if expected is None else [expected])
        remember(placed)
    assert min(outcomes.values()) >= 100, outcomes  # every case really happened, often
