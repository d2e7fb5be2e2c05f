"""The routing policy, pure: eligibility, least-loaded choice, longest idle on ties, queue order."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from switchboard_router.routing.policy import Candidate, Match, Waiting, match, queue_order, rank

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def agent(
    name: str, skills: set[str], capacity: int = 2, active: int = 0, idle_s: int | None = None
) -> Candidate:
    last = None if idle_s is None else NOW - timedelta(seconds=idle_s)
    return Candidate(uuid.uuid5(uuid.NAMESPACE_DNS, name), frozenset(skills), capacity, active, last)


def task(name: str, skills: set[str] = frozenset(), priority: int = 0, age_s: int = 0) -> Waiting:  # type: ignore[assignment]
    return Waiting(
        uuid.uuid5(uuid.NAMESPACE_URL, name), frozenset(skills), priority, NOW - timedelta(seconds=age_s)
    )


def test_only_agents_with_every_required_skill_are_eligible() -> None:
    sales, both = agent("sales", {"sales"}), agent("both", {"sales", "billing"}, active=1)
    t = task("t", {"billing", "sales"})
    assert match([t], [sales, both], NOW) == [Match(t.conversation_id, both.agent_id)]


def test_full_agents_receive_nothing_and_the_rest_waits() -> None:
    full = agent("full", set(), capacity=1, active=1)
    assert match([task("t")], [full], NOW) == []


def test_least_loaded_share_wins_then_longest_idle() -> None:
    busy = agent("busy", set(), capacity=4, active=2)  # 50 %
    light = agent("light", set(), capacity=4, active=1, idle_s=10)  # 25 %
    idle = agent("idle", set(), capacity=8, active=2, idle_s=300)  # 25 %, idle longer
    [m] = match([task("t")], [busy, light, idle], NOW)
    assert m.agent_id == idle.agent_id


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


def _reference(tasks: list[Waiting], candidates: list[Candidate], now: datetime) -> list[Match]:
    """The policy written the obvious way: scan every candidate for every task."""
    active = {c.agent_id: c.active for c in candidates}
    last = {c.agent_id: c.last_assigned_at for c in candidates}
    out = []
    for t in sorted(tasks, key=queue_order):
        eligible = [
            c for c in candidates if active[c.agent_id] < c.capacity and t.required_skills <= c.skills
        ]
        if eligible:
            best = min(
                eligible, key=lambda c: rank(active[c.agent_id], c.capacity, last[c.agent_id], c.agent_id)
            )
            active[best.agent_id] += 1
            last[best.agent_id] = now
            out.append(Match(t.conversation_id, best.agent_id))
    return out


def _random_case(rng: random.Random) -> tuple[list[Waiting], list[Candidate]]:
    skills = ["a", "b", "c"]
    candidates = [
        Candidate(
            uuid.UUID(int=rng.getrandbits(128)),
            frozenset(s for s in skills if rng.random() < 0.6),
            capacity := rng.randint(1, 4),
            rng.randint(0, capacity - 1),
            None if rng.random() < 0.3 else NOW - timedelta(seconds=rng.randint(0, 5)),
        )
        for _ in range(rng.randint(0, 12))
    ]
    tasks = [
        Waiting(
            uuid.UUID(int=rng.getrandbits(128)),
            frozenset(s for s in skills if rng.random() < 0.3),
            rng.randint(0, 2),
            NOW - timedelta(seconds=rng.randint(0, 3)),
        )
        for _ in range(rng.randint(0, 15))
    ]
    return tasks, candidates


def test_the_heap_matching_equals_the_obvious_scan() -> None:
    rng = random.Random(7)
    for _ in range(500):
        tasks, candidates = _random_case(rng)
        assert match(tasks, candidates, NOW) == _reference(tasks, candidates, NOW)


def test_the_best_n_candidates_per_skill_set_give_the_same_matches_as_all_of_them() -> None:
    """What makes the repository's LIMIT exact: per required skill set, the len(tasks) best-ranked
    eligible agents suffice."""
    rng = random.Random(11)
    for _ in range(500):
        tasks, candidates = _random_case(rng)
        best: dict[uuid.UUID, Candidate] = {}
        for skill_set in {t.required_skills for t in tasks}:
            eligible = sorted(
                (c for c in candidates if c.active < c.capacity and skill_set <= c.skills),
                key=lambda c: rank(c.active, c.capacity, c.last_assigned_at, c.agent_id),
            )
            best.update({c.agent_id: c for c in eligible[: len(tasks)]})
        assert match(tasks, list(best.values()), NOW) == match(tasks, candidates, NOW)
