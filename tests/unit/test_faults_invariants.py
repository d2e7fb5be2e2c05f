"""The fault suite's pure logic: each invariant fails on the state it names, the quiescence test, the
scenario selection, and the table."""

from __future__ import annotations

import argparse
from collections import Counter

import pytest

from switchboard_devstack.faults import invariants, report, runner
from switchboard_devstack.faults.invariants import AgentLoad, Check, Snapshot
from switchboard_devstack.faults.load import Outcome, message_body
from switchboard_devstack.faults.scenarios import customers


def acked(external_id: str, message_id: str = "m", attempts: int = 1) -> Outcome:
    return Outcome(external_id, status=202, message_id=message_id, accept="accepted", attempts=attempts)


def healthy() -> Snapshot:
    """Two messages in one conversation, assigned to one agent, counted by metrics."""
    return Snapshot(
        stored_rows={"a": 1, "b": 1},
        stored_ids={"a": "m-a", "b": "m-b"},
        conversations=1,
        messages=2,
        conversation_ids=frozenset({"c1"}),
        assigned_events={"c1": {("e1", "agent-1")}},
        tasks_assigned_ever=1,
        agents=[AgentLoad("agent-1", capacity=2, active_count=1, open_tasks=1)],
        outboxes={"ingest": 0, "conversation": 0, "router": 0},
        dlq_records={"messages.inbound.dlq": 0},
        event_counts={
            "message.received": 2,
            "conversation.message_added": 2,
            "conversation.opened": 1,
            "conversation.assigned": 1,
        },
        facts={"opened_at": 1, "assigned_at": 1, "resolved_at": 0},
        max_rss_mib={"ingest": 90.0, "router": 80.0},
    )


OUTCOMES = [acked("a", "m-a"), acked("b", "m-b", attempts=3)]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.invariant: c for c in checks}


def test_a_healthy_system_passes_every_invariant() -> None:
    checks = invariants.evaluate(OUTCOMES, healthy())
    assert [c.invariant for c in checks] == list(invariants.INVARIANTS)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert invariants.settled(OUTCOMES, healthy())


def test_a_message_never_acknowledged_fails_acked_with_its_final_answer() -> None:
    gave_up = Outcome("c", attempts=9, failures=Counter({"503": 8, "timeout": 1}))
    check = invariants.check_acked([*OUTCOMES, gave_up])
    assert not check.ok
    assert "2/3 acked" in check.detail
    assert "gave up" in check.detail
    assert "503x8" in check.detail


def test_a_conflict_answer_is_not_an_acknowledgement() -> None:
    assert not invariants.check_acked([Outcome("a", status=409, attempts=1)]).ok


def test_an_acknowledged_message_missing_fails_stored_once() -> None:
    snap = healthy()
    snap.stored_rows = {"a": 1}
    check = invariants.check_stored_once(OUTCOMES, snap)
    assert not check.ok
    assert "1 missing" in check.detail
    assert not invariants.settled(OUTCOMES, snap)


def test_a_message_stored_twice_or_under_another_id_fails_stored_once() -> None:
    snap = healthy()
    snap.stored_rows = {"a": 2, "b": 1}
    assert not invariants.check_stored_once(OUTCOMES, snap).ok
    snap = healthy()
    snap.stored_ids = {"a": "m-a", "b": "other"}
    check = invariants.check_stored_once(OUTCOMES, snap)
    assert not check.ok
    assert "under another id" in check.detail


def test_unacknowledged_messages_are_not_required_to_be_stored() -> None:
    snap = healthy()
    assert invariants.check_stored_once([*OUTCOMES, Outcome("never", attempts=5)], snap).ok


def test_two_assignment_events_for_one_conversation_fail_assigned_once() -> None:
    snap = healthy()
    snap.assigned_events = {"c1": {("e1", "agent-1"), ("e2", "agent-2")}}
    check = invariants.check_assigned_once(snap)
    assert not check.ok
    assert "1 more than once (1 to another agent)" in check.detail


def test_a_republished_assignment_event_is_one_assignment() -> None:
    snap = healthy()
    snap.assigned_events = {"c1": {("e1", "agent-1")}, "old": {("e7", "x"), ("e8", "y")}}
    # the same event id twice is one set member; conversations of earlier scenarios are not judged here
    assert invariants.check_assigned_once(snap).ok


@pytest.mark.parametrize("field", ["missing_tasks", "queued_with_capacity", "unrecorded"])
def test_a_conversation_left_unassigned_or_unrecorded_fails_assigned(field: str) -> None:
    snap = healthy()
    setattr(snap, field, 1)
    assert not invariants.check_assigned(snap).ok


def test_an_agent_over_capacity_fails_capacity() -> None:
    snap = healthy()
    snap.agents = [AgentLoad("agent-1", capacity=1, active_count=2, open_tasks=2)]
    check = invariants.check_capacity(snap)
    assert not check.ok
    assert "1 over capacity" in check.detail


def test_an_active_count_that_drifted_from_open_tasks_fails_capacity() -> None:
    snap = healthy()
    snap.agents = [AgentLoad("agent-1", capacity=5, active_count=2, open_tasks=1)]
    assert not invariants.check_capacity(snap).ok
    snap = healthy()
    snap.unreleased = 1
    assert not invariants.check_capacity(snap).ok


def test_an_outbox_row_left_or_a_dead_letter_fails_drained() -> None:
    snap = healthy()
    snap.outboxes = {"ingest": 3, "conversation": 0, "router": 0}
    check = invariants.check_drained(snap)
    assert not check.ok
    assert "ingest 3" in check.detail
    snap = healthy()
    snap.dlq_records = {"messages.inbound.dlq": 1}
    assert not invariants.check_drained(snap).ok
    assert invariants.check_drained(snap, poison_sent=1).ok


def test_metrics_counting_one_more_than_the_truth_fails_metrics() -> None:
    snap = healthy()
    snap.event_counts = {**snap.event_counts, "message.received": 3}
    check = invariants.check_metrics(snap)
    assert not check.ok
    assert "message.received 3 vs 2" in check.detail
    assert not invariants.settled(OUTCOMES, snap)


def test_facts_that_disagree_with_the_tables_fail_metrics() -> None:
    snap = healthy()
    snap.facts = {"opened_at": 1, "assigned_at": 0, "resolved_at": 0}
    assert not invariants.check_metrics(snap).ok
    snap = healthy()
    snap.facts_agent_mismatch = 1
    assert not invariants.check_metrics(snap).ok


def test_a_service_over_the_memory_bound_fails_rss() -> None:
    snap = healthy()
    snap.max_rss_mib = {"ingest": 90.0, "conversation": 250.0}
    check = invariants.check_rss(snap, bound_mib=200)
    assert not check.ok
    assert "conversation 250" in check.detail
    snap.max_rss_mib = {}
    assert not invariants.check_rss(snap).ok  # nothing sampled proves nothing


def test_progress_key_moves_with_the_work_and_only_then() -> None:
    before = healthy()
    assert invariants.progress_key(before) == invariants.progress_key(healthy())
    after = healthy()
    after.outboxes = {"ingest": 0, "conversation": 1, "router": 0}
    assert invariants.progress_key(before) != invariants.progress_key(after)


def test_message_bodies_repeat_exactly_and_share_customers() -> None:
    assert message_body("s", "r", 4, 3) == message_body("s", "r", 4, 3)
    assert message_body("s", "r", 1, 3)["customer"] == message_body("s", "r", 4, 3)["customer"]
    assert message_body("s", "r", 1, 3)["message_id"] != message_body("s", "r", 4, 3)["message_id"]
    assert customers(600) == 200
    assert customers(1) == 1


def test_scenario_selection() -> None:
    def args(*only: str, quick: bool = False) -> argparse.Namespace:
        return argparse.Namespace(only=list(only), quick=quick)

    everything = [s.name for s in runner.selected(args())]
    quick = [s.name for s in runner.selected(args(quick=True))]
    assert "sigterm-router" in everything
    assert "sigterm-router" not in quick
    assert "sigkill-router" in quick
    assert [s.name for s in runner.selected(args("burst,postgres-kill"))] == ["postgres-kill", "burst"]
    with pytest.raises(ValueError, match="unknown scenario"):
        runner.selected(args("nope"))


def test_the_table_marks_failures_and_errors() -> None:
    good = report.ScenarioResult("good", invariants.evaluate(OUTCOMES, healthy()), 12.0, ["a note"])
    snap = healthy()
    snap.event_counts = {**snap.event_counts, "conversation.opened": 2}
    bad = report.ScenarioResult("bad", invariants.evaluate(OUTCOMES, snap), 20.0)
    broken = report.ScenarioResult("broken", error="RuntimeError: router exited")
    text = report.render([good, bad, broken], 95.0)
    lines = text.splitlines()
    good_row = next(line for line in lines if line.startswith("good "))
    bad_row = next(line for line in lines if line.startswith("bad "))
    assert "FAIL" not in good_row
    assert bad_row.split()[7] == "FAIL"  # the metrics column
    assert "ERROR" in next(line for line in lines if line.startswith("broken "))
    assert "FAILED: bad, broken" in text
    assert "conversation.opened 2 vs 1" in text
    assert good.ok and not bad.ok and not broken.ok


def test_a_reopened_conversation_may_be_assigned_once_per_period() -> None:
    snap = healthy()
    snap.assigned_events = {"c1": {("e1", "agent-1"), ("e2", "agent-2")}}
    snap.reopens = {"c1": 1}
    assert invariants.check_assigned_once(snap).ok
    snap.assigned_events = {"c1": {("e1", "agent-1"), ("e2", "agent-2"), ("e3", "agent-1")}}
    assert not invariants.check_assigned_once(snap).ok


def test_a_conversation_resolved_again_after_reopening_counts_once() -> None:
    snap = healthy()
    snap.reopens = {"c1": 2}
    snap.ever_resolved = 1  # resolved, reopened, resolved, reopened: one conversation ever resolved
    assert invariants.truth(snap)["conversation.resolved"] == 1
    snap.event_counts = {**snap.event_counts, "conversation.resolved": 1}
    snap.facts = {"opened_at": 1, "assigned_at": 1, "resolved_at": 1}
    assert invariants.check_metrics(snap).ok
    snap.event_counts = {**snap.event_counts, "conversation.resolved": 2}
    assert not invariants.check_metrics(snap).ok
