"""The consumer's progress judgement (what /health/ready and the stall gauges show), on a fake clock."""

from __future__ import annotations

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from switchboard_common.kafka.consumer import ProgressTracker

TP = TopicPartition("conversation.events", 0)
OTHER = TopicPartition("conversation.events", 1)


def test_a_caught_up_consumer_is_ok_however_long_it_idles() -> None:
    tracker = ProgressTracker(stall_after=10)
    for now in range(0, 100, 5):
        tracker.observe(TP, position=7, log_end=7, now=now)
    report = tracker.report(now=100)
    assert report.ok and report.lag == 0 and report.stalled == {}


def test_records_waiting_on_an_unmoved_position_stall_after_the_threshold() -> None:
    tracker = ProgressTracker(stall_after=10)
    tracker.observe(TP, position=3, log_end=3, now=0)
    tracker.observe(TP, position=3, log_end=8, now=1)  # records arrive; the handler keeps failing
    tracker.observe(TP, position=3, log_end=9, now=5)
    assert tracker.report(now=10.9).ok  # waited 9.9 s: not yet
    report = tracker.report(now=11)
    assert report.problems == ["no progress while records wait"]
    assert report.stalled == {TP: 10} and report.lag == 6 and report.unmoved_for == 10


def test_a_moving_position_is_progress_even_with_a_backlog() -> None:
    tracker = ProgressTracker(stall_after=10)
    for step in range(20):
        tracker.observe(TP, position=step * 100, log_end=10_000, now=step * 5)
    report = tracker.report(now=100)
    assert report.ok and report.lag == 10_000 - 1900 and report.unmoved_for == 5


def test_a_poll_that_hangs_is_a_stall() -> None:
    tracker = ProgressTracker(stall_after=10)
    tracker.observe(TP, position=3, log_end=3, now=0)  # caught up; then a poll hangs in its handler
    tracker.poll_started(now=1)
    assert tracker.report(now=10).ok
    report = tracker.report(now=11)
    assert report.problems == ["poll running too long"] and report.unmoved_for == 10
    tracker.poll_ended()
    assert tracker.report(now=11).ok


def test_only_the_stuck_partition_is_named() -> None:
    tracker = ProgressTracker(stall_after=10)
    tracker.observe(TP, position=0, log_end=4, now=0)
    tracker.observe(OTHER, position=0, log_end=4, now=0)
    tracker.observe(TP, position=0, log_end=4, now=12)
    tracker.observe(OTHER, position=4, log_end=4, now=12)
    assert set(tracker.report(now=12).stalled) == {TP}


def test_a_position_beyond_the_log_end_is_reported_at_once_and_not_as_lag() -> None:
    tracker = ProgressTracker(stall_after=10)
    tracker.observe(TP, position=1006, log_end=3, now=0)
    report = tracker.report(now=0)
    assert report.problems == ["position beyond log end"]
    assert report.lag == 0  # the old max(0, end - position) showed exactly this and called it healthy
    assert report.beyond_log_end[TP].position == 1006 and report.beyond_log_end[TP].log_end == 3
    tracker.observe(TP, position=0, log_end=3, now=1)  # reset to the beginning of the new log
    report = tracker.report(now=1)
    assert report.ok and report.lag == 3


def test_failing_commits_stall_after_the_threshold_and_a_success_clears_them() -> None:
    tracker = ProgressTracker(stall_after=10)
    tracker.commit_succeeded(now=0)
    tracker.commit_failed(now=2)
    tracker.commit_failed(now=7)
    report = tracker.report(now=11)
    assert report.ok and report.commit_failures == 2 and report.commit_failing_for == 9
    report = tracker.report(now=12)
    assert report.problems == ["offset commits failing"] and report.since_commit == 12
    tracker.commit_succeeded(now=13)
    report = tracker.report(now=14)
    assert report.ok and report.commit_failures == 0 and report.since_commit == 1


def test_commits_abandoned_to_a_rebalance_do_not_count_as_failing() -> None:
    tracker = ProgressTracker(stall_after=10)
    tracker.commit_failed(now=0)
    tracker.commit_abandoned()
    report = tracker.report(now=60)
    assert report.ok and report.commit_failing_for is None


def test_partitions_moved_away_are_forgotten() -> None:
    tracker = ProgressTracker(stall_after=10)
    tracker.observe(TP, position=0, log_end=5, now=0)
    tracker.observe(OTHER, position=0, log_end=5, now=0)
    tracker.retain({OTHER})
    assert set(tracker.report(now=20).stalled) == {OTHER}


@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.floats(0, 5)), min_size=1, max_size=30),
    st.floats(0.5, 20),
)
def test_stalled_exactly_when_records_waited_unmoved_for_the_threshold(
    steps: list[tuple[int, int, float]], stall_after: float
) -> None:
    tracker = ProgressTracker(stall_after=stall_after)
    now = 0.0
    since = 0.0
    previous: int | None = None
    previous_end = 0
    for position, log_end, dt in steps:
        now += dt
        if previous is None or previous != position or log_end <= position or previous_end <= previous:
            since = now
        previous, previous_end = position, log_end
        tracker.observe(TP, position, log_end, now)
    position, log_end, _ = steps[-1]
    later = now + stall_after / 2
    expected = log_end > position and later - since >= stall_after
    assert (TP in tracker.report(later).stalled) is expected
