"""The routing policy, pure: eligibility (skills at a minimum proficiency, language, capacity per
workload and in total, declined agents), sticky preference, least-loaded choice, longest idle on ties,
queue order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from switchboard_router.routing.policy import (
    WORKLOADS,
    Candidate,
    Match,
    Policy,
    Requirement,
    Waiting,
    Workload,
    assignment_time,
    load_share,
    match,
    qualifies,
    queue_order,
    rank,
    skill_sum,
    workload_of,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MSG = WORKLOADS.index(Workload.MESSAGING)


def agent(
    name: str,
    skills: Mapping[str, int] | set[str],
    capacity: int = 2,
    active: int = 0,
    idle_s: int | None = None,
    *,
    capacities: tuple[int, ...] | None = None,
    loads: tuple[int, ...] | None = None,
    languages: set[str] | None = None,
) -> Candidate:
    last = None if idle_s is None else NOW - timedelta(seconds=idle_s)
    levels = dict(skills) if isinstance(skills, Mapping) else dict.fromkeys(skills, 3)
    if loads is None:
        loads = tuple(active if i == MSG else 0 for i in range(len(WORKLOADS)))
    return Candidate(
        uuid.uuid5(uuid.NAMESPACE_DNS, name),
        levels,
        capacity,
        active,
        last,
        capacities or (capacity,) * len(WORKLOADS),
        loads,
        frozenset(languages or ()),
    )


def task(
    name: str,
    skills: Mapping[str, int] | set[str] = frozenset(),  # type: ignore[assignment]
    priority: int = 0,
    age_s: int = 0,
    *,
    workload: Workload = Workload.MESSAGING,
    language: str | None = None,
    preferred: Candidate | None = None,
    excluded: tuple[Candidate, ...] = (),
    policy: Policy = Policy.LEAST_LOADED,
) -> Waiting:
    return Waiting(
        uuid.uuid5(uuid.NAMESPACE_URL, name),
        Requirement.of(dict(skills) if isinstance(skills, Mapping) else sorted(skills), workload, language),
        priority,
        NOW - timedelta(seconds=age_s),
        None if preferred is None else preferred.agent_id,
        frozenset(c.agent_id for c in excluded),
        policy,
    )


def test_only_agents_with_every_required_skill_are_eligible() -> None:
    sales, both = agent("sales", {"sales"}), agent("both", {"sales", "billing"}, active=1)
    t = task("t", {"billing", "sales"})
    assert match([t], [sales, both], NOW) == [Match(t.conversation_id, both.agent_id)]


def test_a_skill_below_the_minimum_proficiency_does_not_qualify() -> None:
    novice = agent("novice", {"billing": 2})
    expert = agent("expert", {"billing": 5}, active=1)
    t = task("t", {"billing": 4})
    assert match([t], [novice, expert], NOW) == [Match(t.conversation_id, expert.agent_id)]
    assert match([t], [novice], NOW) == []


def test_a_required_language_must_be_spoken() -> None:
    english = agent("en", set(), languages={"en"})
    spanish = agent("es", set(), languages={"es", "en"}, active=1)
    t = task("t", language="es")
    assert match([t], [english, spanish], NOW) == [Match(t.conversation_id, spanish.agent_id)]


def test_capacity_is_per_workload_and_in_total() -> None:
    # Room in total, none on chat.
    no_chat = agent("no-chat", set(), capacity=5, capacities=(0, 5, 5, 5))
    assert match([task("chat", workload=Workload.CHAT)], [no_chat], NOW) == []
    # Room on voice, none in total.
    full = agent("full", set(), capacity=1, active=1, capacities=(1, 1, 1, 1), loads=(0, 1, 0, 0))
    assert match([task("call", workload=Workload.VOICE)], [full], NOW) == []
    # Three emails to an agent with email capacity 2: two taken, the third waits.
    mail = agent("mail", set(), capacity=8, capacities=(3, 5, 2, 1))
    tasks = [task(f"e{i}", workload=Workload.EMAIL) for i in range(3)]
    assert len(match(tasks, [mail], NOW)) == 2


def test_full_agents_receive_nothing_and_the_rest_waits() -> None:
    full = agent("full", set(), capacity=1, active=1)
    assert match([task("t")], [full], NOW) == []


def test_least_loaded_share_wins_then_longest_idle() -> None:
    busy = agent("busy", set(), capacity=4, active=2)  # 50 %
    light = agent("light", set(), capacity=4, active=1, idle_s=10)  # 25 %
    idle = agent("idle", set(), capacity=8, active=2, idle_s=300)  # 25 %, idle longer
    [m] = match([task("t")], [busy, light, idle], NOW)
    assert m.agent_id == idle.agent_id


def test_the_load_share_is_the_fuller_of_total_and_workload() -> None:
    # 1 of 4 in total, but 1 of 1 voice call: full for voice.
    assert load_share(1, 4, 1, 1) == 1.0
    assert load_share(3, 4, 0, 5) == 0.75


def test_a_batch_is_spread_over_agents_as_load_changes() -> None:
    a, b = agent("a", set(), capacity=2), agent("b", set(), capacity=2)
    tasks = [task(f"t{i}") for i in range(5)]
    matches = match(tasks, [a, b], NOW)
    per_agent = [sum(1 for m in matches if m.agent_id == x.agent_id) for x in (a, b)]
    assert per_agent == [2, 2]  # capacity respected; the fifth waits


def test_queue_order_is_priority_then_oldest() -> None:
    only = agent("only", set(), capacity=2)
    old, new, urgent = task("old", age_s=60), task("new", age_s=1), task("urgent", priority=5)
    matches = match([new, old, urgent], [only], NOW)
    assert [m.conversation_id for m in matches] == [urgent.conversation_id, old.conversation_id]


def test_sticky_the_previous_agent_wins_when_eligible_even_if_busier() -> None:
    previous = agent("previous", set(), capacity=4, active=3)
    idle = agent("idle", set(), capacity=4)
    t = task("t", preferred=previous)
    assert match([t], [previous, idle], NOW) == [Match(t.conversation_id, previous.agent_id)]


def test_sticky_falls_back_when_the_previous_agent_is_full_or_unqualified() -> None:
    full = agent("full", set(), capacity=1, active=1)
    novice = agent("novice", {"billing": 1})
    other = agent("other", {"billing": 5})
    for previous in (full, novice):
        t = task("t", {"billing": 3}, preferred=previous)
        assert match([t], [previous, other], NOW) == [Match(t.conversation_id, other.agent_id)]


def test_an_agent_who_declined_is_skipped_but_keeps_serving_others() -> None:
    decliner = agent("decliner", set(), capacity=4, idle_s=600)  # the best ranked
    other = agent("other", set(), capacity=4)
    declined = task("declined", age_s=10, excluded=(decliner,))
    fresh = task("fresh")
    matches = match([declined, fresh], [decliner, other], NOW)
    assert matches == [
        Match(declined.conversation_id, other.agent_id),
        Match(fresh.conversation_id, decliner.agent_id),
    ]
    # An excluded preferred agent is no preference at all.
    alone = task("alone", preferred=decliner, excluded=(decliner,))
    assert match([alone], [decliner], NOW) == []


def test_round_robin_ignores_load_and_takes_the_agent_idle_longest() -> None:
    busy_idle = agent("busy-but-idle", set(), capacity=4, active=3, idle_s=600)
    light = agent("light", set(), capacity=4, active=0, idle_s=10)
    t = task("t", policy=Policy.ROUND_ROBIN)
    assert match([t], [busy_idle, light], NOW) == [Match(t.conversation_id, busy_idle.agent_id)]
    # Least loaded would have chosen the light one.
    assert match([task("u")], [busy_idle, light], NOW)[0].agent_id == light.agent_id


def test_most_skilled_takes_the_highest_proficiency_then_the_least_loaded() -> None:
    expert = agent("expert", {"billing": 5, "sales": 1}, capacity=4, active=3)
    good = agent("good", {"billing": 4, "sales": 3}, capacity=4, active=0)
    fair = agent("fair", {"billing": 4, "sales": 3}, capacity=4, active=1)
    billing = task("billing", {"billing": 1}, policy=Policy.MOST_SKILLED)
    both = task("both", {"billing": 1, "sales": 1}, policy=Policy.MOST_SKILLED)
    assert match([billing], [expert, good, fair], NOW)[0].agent_id == expert.agent_id
    # billing + sales: 7 for good and fair, 6 for the expert; good is less loaded than fair.
    assert match([both], [expert, good, fair], NOW)[0].agent_id == good.agent_id


def test_channels_map_to_workloads() -> None:
    assert workload_of("webchat") is Workload.CHAT
    assert workload_of("email") is Workload.EMAIL
    assert workload_of("voice") is Workload.VOICE
    assert {workload_of(c) for c in ("whatsapp", "sms", "messenger", "instagram", "api")} == {
        Workload.MESSAGING
    }


def _eligible(
    c: Candidate, t: Waiting, active: dict[uuid.UUID, int], loads: dict[uuid.UUID, list[int]]
) -> bool:
    w = WORKLOADS.index(t.requirement.workload)
    return (
        active[c.agent_id] < c.capacity
        and loads[c.agent_id][w] < c.capacities[w]
        and qualifies(c, t.requirement)
        and c.agent_id not in t.excluded
    )


def _reference(tasks: list[Waiting], candidates: list[Candidate], now: datetime) -> list[Match]:
    """The policy written the obvious way: scan every candidate for every task."""
    active = {c.agent_id: c.active for c in candidates}
    loads = {c.agent_id: list(c.loads) for c in candidates}
    last = {c.agent_id: c.last_assigned_at for c in candidates}
    out: list[Match] = []
    for t in sorted(tasks, key=queue_order):
        w = WORKLOADS.index(t.requirement.workload)
        eligible = [c for c in candidates if _eligible(c, t, active, loads)]
        preferred = [c for c in eligible if c.agent_id == t.preferred_agent]
        if eligible:
            best = (
                preferred[0]
                if preferred
                else min(
                    eligible,
                    key=lambda c: rank(
                        t.policy,
                        skill_sum(c.proficiency, t.requirement),
                        load_share(active[c.agent_id], c.capacity, loads[c.agent_id][w], c.capacities[w]),
                        last[c.agent_id],
                        c.agent_id,
                    ),
                )
            )
            active[best.agent_id] += 1
            loads[best.agent_id][w] += 1
            last[best.agent_id] = assignment_time(now, len(out))
            out.append(Match(t.conversation_id, best.agent_id))
    return out


def _random_case(rng: random.Random) -> tuple[list[Waiting], list[Candidate]]:
    skills = ["a", "b", "c"]
    candidates = []
    for _ in range(rng.randint(0, 12)):
        capacity = rng.randint(1, 5)
        capacities = tuple(rng.randint(0, 3) for _ in WORKLOADS)
        loads = tuple(rng.randint(0, c) for c in capacities)
        candidates.append(
            Candidate(
                uuid.UUID(int=rng.getrandbits(128)),
                {s: rng.randint(1, 5) for s in skills if rng.random() < 0.6},
                capacity,
                min(sum(loads), capacity),
                None if rng.random() < 0.3 else NOW - timedelta(seconds=rng.randint(0, 5)),
                capacities,
                loads,
                frozenset(lang for lang in ("en", "es") if rng.random() < 0.6),
            )
        )
    tasks = []
    for _ in range(rng.randint(0, 15)):
        excluded = frozenset(c.agent_id for c in candidates if rng.random() < 0.1)
        tasks.append(
            Waiting(
                uuid.UUID(int=rng.getrandbits(128)),
                Requirement.of(
                    {s: rng.randint(1, 4) for s in skills if rng.random() < 0.3},
                    rng.choice(WORKLOADS),
                    rng.choice([None, None, "en", "es"]),
                ),
                rng.randint(0, 2),
                NOW - timedelta(seconds=rng.randint(0, 3)),
                rng.choice(candidates).agent_id if candidates and rng.random() < 0.2 else None,
                excluded,
                rng.choice(list(Policy)),
            )
        )
    return tasks, candidates


def test_the_heap_matching_equals_the_obvious_scan() -> None:
    rng = random.Random(7)
    for _ in range(1000):
        tasks, candidates = _random_case(rng)
        assert match(tasks, candidates, NOW) == _reference(tasks, candidates, NOW)


def test_the_best_n_candidates_per_requirement_give_the_same_matches_as_all_of_them() -> None:
    """What makes the repository's LIMIT exact: per requirement, as many best-ranked eligible agents as
    there are tasks plus the agents the requirement's tasks exclude, and the preferred agents, suffice."""
    rng = random.Random(11)
    for _ in range(1000):
        tasks, candidates = _random_case(rng)
        active = {c.agent_id: c.active for c in candidates}
        loads = {c.agent_id: list(c.loads) for c in candidates}
        best: dict[uuid.UUID, Candidate] = {
            c.agent_id: c for c in candidates if c.agent_id in {t.preferred_agent for t in tasks}
        }
        need: dict[tuple[Requirement, Policy], int] = {}
        for t in tasks:
            key = (t.requirement, t.policy)
            need[key] = need.get(key, len(tasks)) + len(t.excluded)
        for (req, policy), n in need.items():
            w = WORKLOADS.index(req.workload)
            probe = Waiting(uuid.uuid4(), req, 0, NOW)
            eligible = sorted(
                (c for c in candidates if _eligible(c, probe, active, loads)),
                key=lambda c: rank(
                    policy,
                    skill_sum(c.proficiency, req),
                    load_share(c.active, c.capacity, c.loads[w], c.capacities[w]),
                    c.last_assigned_at,
                    c.agent_id,
                ),
            )
            best.update({c.agent_id: c for c in eligible[:n]})
        assert match(tasks, list(best.values()), NOW) == match(tasks, candidates, NOW)
