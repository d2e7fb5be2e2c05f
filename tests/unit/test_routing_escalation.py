"""Escalation rings, pure: what a waiting conversation requires after each step of its queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switchboard_router.routing.escalation import Step, requirement_at, steps_of, steps_reached

BASE = {"billing": 4}
STEPS = [Step(60, drop_optional=True), Step(120, relax_levels_by=2), Step(300, relax_levels_by=5)]
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_ring_zero_also_asks_for_the_optional_skills() -> None:
    assert requirement_at(BASE, ["spanish"], STEPS, 0) == {"billing": 4, "spanish": 1}


def test_steps_accumulate_dropping_optional_then_relaxing_levels_never_below_one() -> None:
    assert requirement_at(BASE, ["spanish"], STEPS, 1) == {"billing": 4}
    assert requirement_at(BASE, ["spanish"], STEPS, 2) == {"billing": 2}
    assert requirement_at(BASE, ["spanish"], STEPS, 3) == {"billing": 1}


def test_a_queue_without_steps_never_asks_for_optional_skills() -> None:
    assert requirement_at(BASE, ["spanish"], [], 0) == BASE


def test_an_optional_skill_also_required_keeps_its_level() -> None:
    assert requirement_at({"billing": 4}, ["billing"], STEPS, 0) == {"billing": 4}


def test_steps_are_reached_by_waiting_time() -> None:
    assert [steps_reached(STEPS, T0, T0 + timedelta(seconds=s)) for s in (0, 59, 60, 119, 120, 299, 300)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
    ]


def test_stored_steps_are_read_in_order() -> None:
    stored = [
        {"after_s": 120, "relax_levels_by": 1, "drop_optional": False},
        {"after_s": 30, "drop_optional": True},
    ]
    assert steps_of(stored) == [Step(30, drop_optional=True), Step(120, relax_levels_by=1)]
