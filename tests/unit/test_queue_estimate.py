"""Queue positions and estimated waits (routing.estimate), on plain values: positions within a queue in
priority-then-age order, the wait from the slots serving the queue and its measured handle time, unknown
when nobody can serve the queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from switchboard_router.routing.estimate import (
    EstimateBasis,
    HandleTimes,
    Sample,
    Slots,
    estimate,
    estimate_one,
    handle_time,
    wait_seconds,
)
from switchboard_router.routing.policy import Requirement, Waiting

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BILLING = "billing"
SALES = "sales"
PRIOR = 300.0


def task(minutes: int, queue: str = BILLING, priority: int = 0, skills: tuple[str, ...] = ()) -> Waiting:
    return Waiting(
        uuid.uuid4(), Requirement.of(sorted(skills)), priority, T0 + timedelta(minutes=minutes), queue=queue
    )


def busy(capacity: int = 1) -> Slots:
    return Slots(capacity, free=0)


def test_positions_count_within_the_queue_oldest_first() -> None:
    b1, s1, b2, b3, s2 = task(0), task(1, SALES), task(2), task(3), task(4, SALES)
    result = estimate([b3, s2, b1, b2, s1], {BILLING: busy(), SALES: busy()}, HandleTimes.none(), PRIOR)
    assert [result[t.conversation_id].position for t in (b1, b2, b3)] == [1, 2, 3]
    assert [result[t.conversation_id].position for t in (s1, s2)] == [1, 2]


def test_the_queue_counts_not_the_skills() -> None:
    # Different skills in one queue wait in one line; the same skills in two queues wait in two.
    a, b = task(0, skills=("billing",)), task(1, skills=("spanish",))
    c = task(2, SALES, skills=("billing",))
    result = estimate([a, b, c], {BILLING: busy(), SALES: busy()}, HandleTimes.none(), PRIOR)
    assert [result[t.conversation_id].position for t in (a, b, c)] == [1, 2, 1]


def test_a_higher_priority_goes_ahead_of_older_conversations() -> None:
    old, older, urgent = task(5), task(0), task(9, priority=5)
    result = estimate([old, older, urgent], {BILLING: busy()}, HandleTimes.none(), PRIOR)
    assert result[urgent.conversation_id].position == 1
    assert result[older.conversation_id].position == 2
    assert result[old.conversation_id].position == 3


def test_waits_grow_with_the_position_by_the_handle_time_per_slot() -> None:
    tasks = [task(i) for i in range(3)]
    result = estimate(tasks, {BILLING: busy()}, HandleTimes.none(), PRIOR)
    assert [result[t.conversation_id].wait_seconds for t in tasks] == [300, 600, 900]


def test_more_slots_shorten_the_wait() -> None:
    tasks = [task(i) for i in range(6)]
    one = estimate(tasks, {BILLING: busy(1)}, HandleTimes.none(), PRIOR)
    three = estimate(tasks, {BILLING: busy(3)}, HandleTimes.none(), PRIOR)
    for t in tasks:
        assert three[t.conversation_id].wait_seconds < one[t.conversation_id].wait_seconds  # type: ignore[operator]
    assert three[tasks[5].conversation_id].wait_seconds == 600  # 6 * 300 / 3


def test_each_queue_uses_its_own_slots() -> None:
    b, s = task(0), task(0, SALES)
    result = estimate([b, s], {BILLING: busy(1), SALES: busy(4)}, HandleTimes.none(), PRIOR)
    assert (result[b.conversation_id].wait_seconds, result[s.conversation_id].wait_seconds) == (300, 75)


def test_a_queue_no_online_agent_can_serve_is_unknown() -> None:
    waiting = task(0, SALES)
    result = estimate([waiting], {BILLING: busy(5)}, HandleTimes.none(), PRIOR)
    assert result[waiting.conversation_id].wait_seconds is None
    assert result[waiting.conversation_id].position == 1
    # Agents able to serve it but with no capacity at all serve nothing either.
    assert estimate_one(1, SALES, {SALES: busy(0)}, HandleTimes.none(), PRIOR).wait_seconds is None
    assert estimate_one(1, SALES, {}, HandleTimes.none(), PRIOR).wait_seconds is None


def test_free_slots_take_the_head_of_the_queue_at_once() -> None:
    slots = {BILLING: Slots(3, free=2)}
    waits = [estimate_one(k, BILLING, slots, HandleTimes.none(), PRIOR).wait_seconds for k in (1, 2, 3, 4)]
    assert waits == [0, 0, 100, 200]


def test_measured_handle_time_per_queue_replaces_the_prior() -> None:
    measured = HandleTimes({BILLING: Sample(4, 90.0)}, Sample(10, 200.0))
    assert handle_time(BILLING, measured, PRIOR) == (90.0, EstimateBasis.MEASURED)
    # A queue not measured itself uses every recent assignment's mean.
    assert handle_time(SALES, measured, PRIOR) == (200.0, EstimateBasis.MEASURED)
    assert handle_time(SALES, HandleTimes.none(), PRIOR) == (PRIOR, EstimateBasis.PRIOR)

    result = estimate_one(2, BILLING, {BILLING: busy()}, measured, PRIOR)
    assert (result.wait_seconds, result.basis) == (180, EstimateBasis.MEASURED)
    prior = estimate_one(2, BILLING, {BILLING: busy()}, HandleTimes.none(), PRIOR)
    assert (prior.wait_seconds, prior.basis) == (600, EstimateBasis.PRIOR)


def test_the_wait_formula() -> None:
    # ceil(max(k - F, 0) * H / S), rounded up to whole seconds.
    assert wait_seconds(1, total=3, free=0, handle_seconds=10.0) == 4
    assert wait_seconds(3, total=3, free=0, handle_seconds=0.1) == 1
    assert wait_seconds(5, total=4, free=2, handle_seconds=100.0) == 75  # 3 * 100 / 4
    assert wait_seconds(2, total=4, free=2, handle_seconds=100.0) == 0
    # 50 * 1.1 is 55.00000000000001 in floating point: a whole result stays whole.
    assert wait_seconds(50, total=1, free=0, handle_seconds=1.1) == 55
    # No slot: unknown; free never counts below zero nor above the total.
    assert wait_seconds(1, total=0, free=0, handle_seconds=10.0) is None
    assert wait_seconds(2, total=1, free=-3, handle_seconds=10.0) == 20
    assert wait_seconds(3, total=1, free=5, handle_seconds=10.0) == 20


waiting_tasks = st.lists(
    st.builds(
        Waiting,
        conversation_id=st.uuids(),
        requirement=st.sampled_from([(), ("billing",), ("sales",)]).map(lambda s: Requirement.of(list(s))),
        priority=st.integers(0, 3),
        enqueued_at=st.integers(0, 20).map(lambda m: T0 + timedelta(minutes=m)),
        queue=st.sampled_from([BILLING, SALES, "default"]),
    ),
    max_size=30,
    unique_by=lambda t: t.conversation_id,
)


@given(tasks=waiting_tasks, capacity=st.integers(1, 5), free=st.integers(0, 5))
def test_each_queue_is_numbered_from_one_and_waits_never_shrink_along_it(
    tasks: list[Waiting], capacity: int, free: int
) -> None:
    slots = {q: Slots(capacity, free) for q in (BILLING, SALES, "default")}
    result = estimate(tasks, slots, HandleTimes.none(), PRIOR)
    assert result == estimate(list(reversed(tasks)), slots, HandleTimes.none(), PRIOR)  # deterministic
    for queue in (BILLING, SALES, "default"):
        mine = sorted(
            (result[t.conversation_id] for t in tasks if t.queue == queue), key=lambda e: e.position
        )
        assert [e.position for e in mine] == list(range(1, len(mine) + 1))
        waits = [e.wait_seconds for e in mine]
        assert waits == sorted(waits)  # type: ignore[type-var]
