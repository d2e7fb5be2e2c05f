"""The routing benchmark's pure parts: the seed's shapes, the summaries, the attribution of plans to
statements, the report, and the statement patching of its experiments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from switchboard_common.db.sql import TEXTS, UUIDS, statement
from switchboard_devstack.bench import routing
from switchboard_router.routing.policy import WORKLOADS, workload_of

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_agents_have_the_documented_variety_and_never_more_load_than_capacity() -> None:
    agents = routing.seed_agents(random.Random(1), 400, NOW)
    assert len(agents) == 400
    assert len({a.id for a in agents}) == 400
    for a in agents:
        assert 2 <= len(a.proficiency) <= 5
        assert set(a.proficiency) <= set(routing.SKILLS)
        assert all(1 <= level <= 5 for level in a.proficiency.values())
        assert 1 <= len(a.languages) <= 3
        assert len(set(a.languages)) == len(a.languages)
        assert all(0 <= load <= cap for load, cap in zip(a.loads, a.capacities, strict=True))
        assert a.active == sum(a.loads) <= a.capacity <= sum(a.capacities)
        assert a.last_assigned_at is None or a.last_assigned_at <= NOW
    # Variety, not a constant: some idle, some full, some in between.
    assert any(a.active == 0 for a in agents)
    assert any(not a.has_room for a in agents)
    assert any(0 < a.active < a.capacity for a in agents)


def test_the_seed_is_deterministic_for_a_seed() -> None:
    one = routing.make_seed(random.Random(5), 30, 60, 10, NOW)
    two = routing.make_seed(random.Random(5), 30, 60, 10, NOW)
    other = routing.make_seed(random.Random(6), 30, 60, 10, NOW)
    assert one == two
    assert one.queued != other.queued


def test_waiting_tasks_are_stored_as_the_router_reads_them() -> None:
    rng = random.Random(2)
    agents = routing.seed_agents(rng, 50, NOW)
    tasks = routing.seed_queue(rng, 500, NOW, agents)
    ids = {a.id for a in agents}
    for t in tasks:
        assert t.state == "queued"
        assert 1 <= len(t.skills) <= 3
        assert [s for s, _ in t.skills] == sorted(s for s, _ in t.skills)  # as Requirement.of sorts them
        assert all(1 <= m <= 5 for _, m in t.skills)
        assert t.language is None or t.language in routing.LANGUAGES
        # The channel is one the router maps to the task's workload.
        assert workload_of(t.channel) == WORKLOADS[t.workload - 1]
        assert NOW - timedelta(hours=1) <= t.enqueued_at <= NOW
        assert set(t.declined_by) <= ids
    assert any(t.language is None for t in tasks) and any(t.language for t in tasks)
    assert any(t.declined_by for t in tasks)
    assert {t.workload for t in tasks} == {1, 2, 3, 4}


def test_assigned_tasks_are_the_agents_loads() -> None:
    rng = random.Random(3)
    agents = routing.seed_agents(rng, 40, NOW)
    assigned = routing.seed_assigned(rng, agents, NOW)
    assert len(assigned) == sum(a.active for a in agents)
    for a in agents:
        mine = [t for t in assigned if t.agent_id == a.id]
        assert [sum(1 for t in mine if t.workload == w) for w in (1, 2, 3, 4)] == list(a.loads)
        assert all(t.state == "assigned" and t.skills[0][0] in a.proficiency for t in mine)
        assert all(t.assigned_at is not None and t.enqueued_at <= t.assigned_at for t in mine)


def test_closed_history_is_closed_after_assignment() -> None:
    rng = random.Random(4)
    agents = routing.seed_agents(rng, 10, NOW)
    for t in routing.seed_closed(rng, 50, agents, NOW):
        assert t.state == "closed"
        assert t.assigned_at is not None and t.closed_at is not None
        assert t.enqueued_at < t.assigned_at < t.closed_at


def test_columns_are_parallel_arrays_with_ragged_values_joined() -> None:
    rng = random.Random(7)
    agents = routing.seed_agents(rng, 20, NOW)
    columns = routing.agent_columns(agents)
    assert {len(v) for v in columns.values()} == {20}
    assert columns["skills"][0].split(",") == sorted(agents[0].proficiency)
    assert [columns[f"l{w}"][3] for w in (1, 2, 3, 4)] == list(agents[3].loads)
    tasks = routing.seed_queue(rng, 30, NOW, agents)
    task_cols = routing.task_columns(tasks)
    assert {len(v) for v in task_cols.values()} == {30}
    first = tasks[0]
    assert task_cols["skills"][0].split(",") == [s for s, _ in first.skills]
    assert [int(m) for m in task_cols["levels"][0].split(",")] == [m for _, m in first.skills]
    chunks = list(routing._chunks(task_cols, 12))
    assert [len(c["ids"]) for c in chunks] == [12, 12, 6]


def _rep(wall_ms: float, sql_ms: float, policy_ms: float, statements: dict[str, float]) -> routing.Rep:
    return routing.Rep(
        wall_ms / 1000,
        wall_ms / 2000,
        sql_ms / 1000,
        policy_ms / 1000,
        {k: v / 1000 for k, v in statements.items()},
        tasks=1,
        candidates=4,
        matched=1,
    )


def test_summary_splits_wall_time_and_names_the_slowest_statement() -> None:
    reps = [
        _rep(2.0, 1.5, 0.1, {"insert_tasks": 0.5, "lock_best_candidates": 1.0}),
        _rep(4.0, 3.0, 0.2, {"insert_tasks": 0.4, "lock_best_candidates": 2.6}),
    ]
    s = routing.summarize(reps, server_cpu_s=0.006)
    assert s["repetitions"] == 2
    assert s["wall_ms"]["max"] == pytest.approx(4.0)
    assert s["other_ms"]["max"] == pytest.approx(0.8)  # wall - SQL - policy
    assert s["server_cpu_ms_mean"] == pytest.approx(3.0)
    assert s["candidates_mean"] == 4
    assert routing.slowest_statement(s) == "lock_best_candidates"
    assert routing.summarize([], None) == {"repetitions": 0}
    assert routing.slowest_statement({"repetitions": 0}) is None


def test_plans_go_to_the_statement_whose_full_text_they_quote() -> None:
    texts = {"probe": "SELECT 1", "lock": "\n  SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u)\n"}
    notices = [
        "duration: 0.5 ms  plan:\nQuery Text: \n  SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u)\n"
        "Seq Scan on t  (actual rows=3)",
        "duration: 0.01 ms  plan:\nQuery Text: SELECT 1\nResult  (actual rows=1)",
    ]
    plans = routing.plans_by_statement(notices, texts)
    assert plans["lock"].splitlines() == ["(duration: 0.5 ms)", "Seq Scan on t  (actual rows=3)"]
    assert plans["probe"].splitlines()[-1] == "Result  (actual rows=1)"


def _doc(p99_ms: float) -> dict[str, object]:
    reps = [_rep(p99_ms, p99_ms / 2, 0.1, {"lock_queued": p99_ms / 2})]
    scenario = routing.summarize(reps, None)
    scenario["slowest"] = "lock_queued"
    scenario["plans"] = {"lock_queued": "(duration: 1 ms)\nIndex Scan on tasks  Filter: " + "x" * 400}
    return {
        "config": {"agents": 5000, "waiting": 10000, "assigned": 3, "closed": 0, "variant": ["queue-index"]},
        "postgres": {"version": "18", "jit": "on"},
        "scenarios": {"freed": scenario},
    }


def test_report_gives_the_verdict_against_the_target_and_clips_plans() -> None:
    over = routing.render(_doc(2.5))
    assert "p99 wall 2.50 ms: over the 1 ms target" in over
    assert "variants queue-index" in over
    assert "lock_queued" in over
    assert "(duration: 1 ms)" in over
    assert max(len(line) for line in over.splitlines()) < 200
    within = routing.render(_doc(0.5), plans=False)
    assert "within the 1 ms target" in within
    assert "Index Scan" not in within


def test_a_patched_statement_keeps_its_typed_parameters() -> None:
    clause = statement("SELECT 1 FROM t WHERE a = ANY(:ids) OR b = ANY(:names)", ids=UUIDS, names=TEXTS)
    new = routing.patched(clause, "OR b = ANY(:names)", "AND b = ANY(:names)")
    assert new.text == "SELECT 1 FROM t WHERE a = ANY(:ids) AND b = ANY(:names)"
    assert {name: type(p.type) for name, p in new._bindparams.items()} == {
        "ids": type(UUIDS),
        "names": type(TEXTS),
    }
    assert isinstance(new._bindparams["ids"].type, sa.ARRAY)
    with pytest.raises(SystemExit, match="out of date"):
        routing.patched(clause, "no such fragment", "x")
