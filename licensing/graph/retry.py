"""The retry policy for Graph requests: which failures to retry, how long to wait, when to give up."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "parse_retry_after"]

# Graph's transient answers. 429 is throttling; 500/502/503/504 are gateway and service hiccups.
# https://learn.microsoft.com/graph/throttling and https://learn.microsoft.com/graph/errors
RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: integer, fractional, or HTTP-date. None when absent/unusable.

    RFC 9110 allows delay-seconds or an HTTP-date; Graph sends integers, but proxies and
    the SDKs' own trackers show fractional values too (which kiota's RetryHandler fails on).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


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
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): Retry-After when given, else jittered backoff."""
        parsed = parse_retry_after(retry_after, now=self.now())
        if parsed is not None:
            return parsed
        # "Full jitter": uniform over [0, exponential ceiling] spreads concurrent retries apart.
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return self.rng.uniform(0.0, ceiling)

    def give_up_reason(self, attempt: int, delay: float, waited: float) -> str | None:
        """Why the next retry must not happen, or None to go ahead. ``attempt`` = attempts made so far."""
        if delay >= self.max_retry_after_s:
            return f"Graph asked to retry after {delay:.0f} s (limit {self.max_retry_after_s:.0f} s)"
        if attempt >= self.max_attempts:
            return f"gave up after {attempt} attempts"
        if waited + delay > self.max_total_wait_s:
            return f"gave up after waiting {waited:.0f} s in total (limit {self.max_total_wait_s:.0f} s)"
        return None
