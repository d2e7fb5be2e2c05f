"""The routing policy, pure: eligibility, least-loaded choice, longest idle on ties, queue order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from switchboard_router.routing.policy import Candidate, Match, Waiting, match

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
