"""The routing policy, pure: who may take a conversation, and who should.

* Workload: a channel's kind of work (chat, messaging, email, voice); agents have a capacity per workload
  and a total, and a conversation takes one unit of both.
* Eligible: online (the SQL only fetches online agents), every required skill at its minimum proficiency,
  the required language if any, capacity left on the workload and in total, and not an agent who
  declined (or let time out) an offer of this conversation.
* Choice: the customer's previous agent (sticky, found by the SQL within its window) when eligible;
  otherwise the best by the queue's policy, ties always broken by the agent idle longest (never assigned
  first), then the agent id, so the result is deterministic:
  - least loaded (the default): the lowest load share, the fuller of the workload's and the total's;
  - round robin: the agent idle longest, whatever their load;
  - most skilled: the highest sum of proficiencies in the required skills, then the least loaded.
* Queue order: priority (high first), then the oldest, then the conversation id.

The SQL fetches and locks candidates and writes the outcome; nothing here touches the database, so the
policy is unit-tested with plain values and a fixed clock.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

_NEVER = datetime.min.replace(tzinfo=UTC)


class Workload(StrEnum):
    CHAT = "chat"
    MESSAGING = "messaging"
    EMAIL = "email"
    VOICE = "voice"


# The order of the per-workload arrays (``capacities``, ``loads``) in the database and here.
WORKLOADS: tuple[Workload, ...] = tuple(Workload)
_CHANNEL_WORKLOAD = {
    "webchat": Workload.CHAT,
    "email": Workload.EMAIL,
    "voice": Workload.VOICE,
}


class Policy(StrEnum):
    LEAST_LOADED = "least_loaded"
    ROUND_ROBIN = "round_robin"
    MOST_SKILLED = "most_skilled"


def workload_of(channel: str) -> Workload:
    """Web chat is chat (the customer is on the page, waiting); email and voice are their own; every
    other channel (WhatsApp, SMS, Messenger, Instagram, the API) is asynchronous messaging."""
    return _CHANNEL_WORKLOAD.get(channel, Workload.MESSAGING)


def workload_index(workload: Workload) -> int:
    """The workload's 1-based index in the database's per-workload arrays."""
    return WORKLOADS.index(workload) + 1


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a conversation needs of an agent. Conversations with equal requirements compete for the same
    agents, so the SQL fetches candidates once per distinct requirement."""

    skills: tuple[tuple[str, int], ...] = ()  # (skill, minimum proficiency 1-5), sorted by skill
    workload: Workload = Workload.MESSAGING
    language: str | None = None

    @staticmethod
    def of(
        skills: Mapping[str, int] | Sequence[str],
        workload: Workload = Workload.MESSAGING,
        language: str | None = None,
    ) -> Requirement:
        """From a skill → minimum mapping, or plain skill names (minimum 1)."""
        levels = dict(skills) if isinstance(skills, Mapping) else dict.fromkeys(skills, 1)
        return Requirement(tuple(sorted(levels.items())), workload, language)

    @property
    def skill_names(self) -> frozenset[str]:
        return frozenset(s for s, _ in self.skills)


@dataclass(frozen=True, slots=True)
class Candidate:
    agent_id: uuid.UUID
    proficiency: Mapping[str, int]  # skill → level 1-5
    capacity: int  # in total
    active: int  # in total
    last_assigned_at: datetime | None
    capacities: tuple[int, ...] = (0, 0, 0, 0)  # per workload, in WORKLOADS order
    loads: tuple[int, ...] = (0, 0, 0, 0)
    languages: frozenset[str] = frozenset()

    @property
    def skills(self) -> frozenset[str]:
        return frozenset(self.proficiency)


@dataclass(frozen=True, slots=True)
class Waiting:
    conversation_id: uuid.UUID
    requirement: Requirement
    priority: int
    enqueued_at: datetime
    preferred_agent: uuid.UUID | None = None  # sticky: the customer's previous agent, within the window
    excluded: frozenset[uuid.UUID] = field(default_factory=frozenset)  # declined or let an offer lapse
    policy: Policy = Policy.LEAST_LOADED  # its queue's
    queue: str = "default"
    team: str | None = None  # the team serving its queue, whose agents see it while it waits

    @property
    def required_skills(self) -> frozenset[str]:
        return self.requirement.skill_names


@dataclass(frozen=True, slots=True)
class Match:
    conversation_id: uuid.UUID
    agent_id: uuid.UUID


def queue_order(task: Waiting) -> tuple[int, datetime, uuid.UUID]:
    return (-task.priority, task.enqueued_at, task.conversation_id)


Rank = tuple[int, float, datetime, uuid.UUID]


def load_share(active: int, capacity: int, load: int, workload_capacity: int) -> float:
    """The fuller of the agent's total and the workload's capacity, as a fraction."""
    return max(active / capacity if capacity else 1.0, load / workload_capacity if workload_capacity else 1.0)


def skill_sum(proficiency: Mapping[str, int], requirement: Requirement) -> int:
    return sum(proficiency.get(skill, 0) for skill, _ in requirement.skills)


def rank(
    policy: Policy, skill: int, share: float, last_assigned_at: datetime | None, agent_id: uuid.UUID
) -> Rank:
    """The candidate order of ``policy``, lowest first. The repository orders its candidate fetch by the
    same key, so a fetch limited to the best ones is exact: a key only grows as the agent is given work."""
    return (
        -skill if policy is Policy.MOST_SKILLED else 0,
        0.0 if policy is Policy.ROUND_ROBIN else share,
        last_assigned_at or _NEVER,
        agent_id,
    )


def qualifies(candidate: Candidate, requirement: Requirement) -> bool:
    """Skills at their minimum proficiency and the language: what capacity and presence do not change."""
    if requirement.language is not None and requirement.language not in candidate.languages:
        return False
    return all(candidate.proficiency.get(skill, 0) >= level for skill, level in requirement.skills)


class _Pool:
    """The candidates' capacity as assignments are handed out within one decision."""

    def __init__(self, candidates: Sequence[Candidate], now: datetime) -> None:
        self.agents = list({c.agent_id: c for c in candidates}.values())
        self.index = {c.agent_id: i for i, c in enumerate(self.agents)}
        self.active = [c.active for c in self.agents]
        self.loads = [list(c.loads) for c in self.agents]
        self.last: list[datetime | None] = [c.last_assigned_at for c in self.agents]
        self.now = now
        # The k-th assignment of a decision counts as made k microseconds after ``now``, so agents
        # given work in one decision are not tied on "idle longest" (which would always favour the
        # lowest id): the order they were chosen in is kept (``assignment_time``).
        self.taken = 0
        self._by_skill: dict[str, list[int]] | None = None

    def holding(self, requirement: Requirement) -> Sequence[int]:
        """The agents who could qualify: those with the requirement's rarest skill (every agent when it
        needs none), so a decision over thousands of candidates and many requirements checks each
        requirement against few of them."""
        if not requirement.skills:
            return range(len(self.agents))
        if self._by_skill is None:
            self._by_skill = {}
            for i, agent in enumerate(self.agents):
                for skill in agent.proficiency:
                    self._by_skill.setdefault(skill, []).append(i)
        by_skill = self._by_skill
        return min((by_skill.get(skill, []) for skill, _ in requirement.skills), key=len)

    def has_room(self, i: int, w: int) -> bool:
        agent = self.agents[i]
        return self.active[i] < agent.capacity and self.loads[i][w] < agent.capacities[w]

    def rank(self, i: int, w: int, requirement: Requirement, policy: Policy) -> Rank:
        agent = self.agents[i]
        share = load_share(self.active[i], agent.capacity, self.loads[i][w], agent.capacities[w])
        return rank(policy, skill_sum(agent.proficiency, requirement), share, self.last[i], agent.agent_id)

    def take(self, i: int, w: int) -> None:
        self.active[i] += 1
        self.loads[i][w] += 1
        self.last[i] = assignment_time(self.now, self.taken)
        self.taken += 1


def match(tasks: Sequence[Waiting], candidates: Sequence[Candidate], now: datetime) -> list[Match]:
    """Assign tasks in queue order, each to its preferred agent when eligible, else to the best eligible
    candidate given the assignments before it.

    One heap of qualified candidates per distinct requirement and policy; an agent's rank only grows as
    it is given work, so a stale heap entry is simply re-pushed with its current rank when it surfaces,
    and one without room left is dropped (room never comes back within a decision).
    """
    pool = _Pool(candidates, now)
    heaps: dict[tuple[Requirement, Policy], list[tuple[Rank, int]]] = {}
    out: list[Match] = []
    for task in sorted(tasks, key=queue_order):
        req = task.requirement
        w = WORKLOADS.index(req.workload)
        chosen = _preferred(pool, task, w)
        if chosen is None:
            heap = heaps.get((req, task.policy))
            if heap is None:
                heap = [
                    (pool.rank(i, w, req, task.policy), i)
                    for i in pool.holding(req)
                    if pool.has_room(i, w) and qualifies(pool.agents[i], req)
                ]
                heapq.heapify(heap)
                heaps[(req, task.policy)] = heap
            chosen = _best(pool, heap, task, w)
        if chosen is None:
            continue
        pool.take(chosen, w)
        out.append(Match(task.conversation_id, pool.agents[chosen].agent_id))
    return out


def assignment_time(now: datetime, k: int) -> datetime:
    """When the k-th (0-based) assignment of a decision made at ``now`` counts as made: what an agent's
    ``last_assigned_at`` becomes, in ``match`` and in the database."""
    return now + timedelta(microseconds=k)


def _preferred(pool: _Pool, task: Waiting, w: int) -> int | None:
    if task.preferred_agent is None or task.preferred_agent in task.excluded:
        return None
    i = pool.index.get(task.preferred_agent)
    if i is None or not pool.has_room(i, w) or not qualifies(pool.agents[i], task.requirement):
        return None
    return i


def _best(pool: _Pool, heap: list[tuple[Rank, int]], task: Waiting, w: int) -> int | None:
    """The best candidate of ``heap`` with room, not excluded; the heap is left consistent."""
    skipped: list[tuple[Rank, int]] = []
    chosen: int | None = None
    while heap:
        key, i = heap[0]
        current = pool.rank(i, w, task.requirement, task.policy)
        if not pool.has_room(i, w):
            heapq.heappop(heap)
        elif key != current:
            heapq.heapreplace(heap, (current, i))
        elif pool.agents[i].agent_id in task.excluded:
            skipped.append(heapq.heappop(heap))
        else:
            chosen = i
            break
    for entry in skipped:
        heapq.heappush(heap, entry)
    return chosen
