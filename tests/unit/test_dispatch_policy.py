"""The dispatcher's decisions, pure: when to try a reply again, and what an attempt's outcome makes of it."""

from __future__ import annotations

import uuid

import pytest

from switchboard_ingest.channels.base import SendOutcome, SendResult
from switchboard_ingest.models import DispatchState
from switchboard_ingest.outbound.policy import RetrySchedule
from switchboard_ingest.outbound.repository import Claimed
from switchboard_ingest.outbound.service import Result, attempted

SCHEDULE = RetrySchedule(initial_s=1.0, max_s=60.0, max_attempts=5)


@pytest.mark.parametrize(("attempts", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)])
def test_backoff_doubles_from_the_initial_delay(attempts: int, delay: float) -> None:
    assert SCHEDULE.delay(attempts) == delay


def test_backoff_is_capped_and_ends_after_the_last_attempt() -> None:
    capped = RetrySchedule(initial_s=1.0, max_s=5.0, max_attempts=20)
    assert capped.delay(10) == 5.0
    assert SCHEDULE.delay(5) is None


def test_retry_after_is_honoured_but_never_beyond_the_cap() -> None:
    assert SCHEDULE.delay(1, retry_after=30.0) == 30.0  # later than the backoff: the provider's word
    assert SCHEDULE.delay(3, retry_after=0.0) == 4.0  # sooner than the backoff: the backoff
    assert SCHEDULE.delay(1, retry_after=3600.0) == 60.0


def _result(outcome: SendOutcome, attempts: int = 1) -> Result:
    claimed = Claimed(uuid.uuid4(), uuid.uuid4(), "sms", "+14155550100", "hi", "{}", attempts)
    return Result(claimed, outcome)


def test_an_attempts_outcome_decides_the_replys_state() -> None:
    sent = attempted(_result(SendOutcome(SendResult.SENT, external_id="SM1")), SCHEDULE)
    assert (sent.state, sent.external_id, sent.delay_s) == (DispatchState.SENT.value, "SM1", None)
    failed = attempted(
        _result(SendOutcome(SendResult.FAILED, error_code="21211", error_reason="bad number")), SCHEDULE
    )
    assert (failed.state, failed.error) == (DispatchState.FAILED.value, "bad number (21211)")
    retried = attempted(_result(SendOutcome(SendResult.RETRY, retry_after=10.0), attempts=2), SCHEDULE)
    assert (retried.state, retried.delay_s) == (DispatchState.PENDING.value, 10.0)
    dead = attempted(_result(SendOutcome(SendResult.RETRY, error_reason="HTTP 503"), attempts=5), SCHEDULE)
    assert (dead.state, dead.delay_s, dead.error) == (DispatchState.DEAD.value, None, "HTTP 503")
