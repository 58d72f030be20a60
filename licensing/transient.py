"""Transient failures, one way: which HTTP statuses are worth another try, the ``Retry-After`` header, the backoff.

Graph requests (:mod:`licensing.graph.retry`), Table Storage calls (:mod:`licensing.store.connection`) and alert
deliveries (:mod:`licensing.alerts.delivery`) each keep their own *budget* (attempts, caps, what a give-up
means for them), but all three take these three pieces from here. The retry loops stay ours rather than
tenacity's or stamina's: each is a dozen lines with an injected sleep (tests never wait), and the Graph one
must also pause every sender on a 429 and retry ``$batch`` sub-requests one by one, which neither library does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from licensing.clock import utcnow

__all__ = ["RETRYABLE_STATUSES", "Backoff", "parse_retry_after"]

# Answers that say "not now": 408 request timeout, 429 throttling, 500/502/503/504 service and gateway hiccups.
# https://learn.microsoft.com/graph/throttling, https://learn.microsoft.com/graph/errors,
# https://learn.microsoft.com/rest/api/storageservices/table-service-error-codes (ServerBusy is a 503).
RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds (also fractional) or an HTTP-date.

    RFC 9110 allows delay-seconds or an HTTP-date; Graph sends integers, but proxies send fractions too
    (which kiota's RetryHandler fails on). None when absent or unusable (``nan``, ``inf``, garbage);
    a date in the past is 0.
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
        seconds = (when - (now or utcnow())).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with one jitter rule: ``ceiling * (1 - jitter * u)``, u uniform in [0, 1).

    ``jitter=1`` is "full jitter" (anywhere up to the ceiling: concurrent retries spread apart), ``0.5``
    keeps at least half the ceiling, ``0`` is exactly the ceiling (what tests pin).
    """

    base_s: float
    cap_s: float
    jitter: float = 1.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (1-based)."""
        return min(self.cap_s, self.base_s * (2 ** (max(attempt, 1) - 1)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        u = (rng or random).random()
        return self.ceiling(attempt) * (1.0 - min(max(self.jitter, 0.0), 1.0) * u)
