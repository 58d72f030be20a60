"""The retry budget of Graph requests: how many attempts, how long to wait in all, when to give up (the statuses,
``Retry-After`` and backoff come from :mod:`licensing.transient`)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from licensing.clock import utcnow
from licensing.transient import RETRYABLE_STATUSES, Backoff, parse_retry_after

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "parse_retry_after"]


@dataclass(slots=True)
class RetryPolicy:
    """Bounded retries with Graph's ``Retry-After`` honoured, else exponential backoff with full jitter.

    ``sleep`` and ``rng`` are injectable so tests run the policy without waiting.
    """

    max_attempts: int = 6  # first try included
    max_total_wait_s: float = 120.0  # per request: beyond this the request fails (and is reported)
    max_retry_after_s: float = 180.0  # a longer Retry-After is never slept through
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    rng: random.Random = field(default_factory=random.Random)
    now: Callable[[], datetime] = field(default=utcnow)

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): Retry-After when given, else jittered backoff."""
        parsed = parse_retry_after(retry_after, now=self.now())
        if parsed is not None:
            return parsed
        # Full jitter: anywhere up to the exponential ceiling spreads concurrent retries apart.
        return Backoff(self.backoff_base_s, self.backoff_cap_s, jitter=1.0).delay(attempt, self.rng)

    def give_up_reason(self, attempt: int, delay: float, waited: float) -> str | None:
        """Why the next retry must not happen, or None to go ahead. ``attempt`` = attempts made so far."""
        if delay >= self.max_retry_after_s:
            return f"Graph asked to retry after {delay:.0f} s (limit {self.max_retry_after_s:.0f} s)"
        if attempt >= self.max_attempts:
            return f"gave up after {attempt} attempts"
        if waited + delay > self.max_total_wait_s:
            return f"gave up after waiting {waited:.0f} s in total (limit {self.max_total_wait_s:.0f} s)"
        return None
