"""When to try a reply again: pure, so the schedule is unit-tested without a clock or a provider."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    initial_s: float
    max_s: float
    max_attempts: int

    def delay(self, attempts: int, retry_after: float | None = None) -> float | None:
        """Seconds until the next attempt after ``attempts`` failed ones, or None: give up. Doubles from
        ``initial_s`` up to ``max_s``; never sooner than the provider's ``Retry-After``."""
        if attempts >= self.max_attempts:
            return None
        backoff = min(self.max_s, self.initial_s * 2.0 ** max(0, attempts - 1))
        if retry_after is not None:
            return max(backoff, min(retry_after, self.max_s))
        return backoff
