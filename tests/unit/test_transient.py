"""One transient-failure module (issue 17, item 3): one set of retryable statuses, one Retry-After parser, one
jitter rule, shared by the Graph client, the store and the alert deliveries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from licensing import transient
from licensing.transient import RETRYABLE_STATUSES, Backoff, parse_retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("0.25", 0.25), ("-3", 0.0), (None, None), ("", None), ("soon", None), ("nan", None),
     ("inf", None), ("-inf", None), ("1e400", None)],
)  # fmt: skip
def test_retry_after_forms(value: str | None, expected: float | None) -> None:
    """Graph's copy let ``inf`` through (it only checked nan): a wait that never ends."""
    assert parse_retry_after(value) == expected


def test_retry_after_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0


@pytest.mark.parametrize("jitter", [0.0, 0.2, 0.5, 1.0])
def test_one_jitter_rule_bounds_every_delay(jitter: float) -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter=jitter)
    rng = random.Random(4)
    for attempt in range(1, 12):
        ceiling = min(8.0, 2 ** (attempt - 1))
        delay = backoff.delay(attempt, rng)
        assert ceiling * (1 - jitter) <= delay <= ceiling
    assert Backoff(1.0, 8.0, jitter=0).delay(3) == 4.0


def test_every_retry_loop_uses_the_one_set_of_statuses_and_the_one_parser() -> None:
    from licensing.alerts import delivery
    from licensing.graph import client, retry
    from licensing.store import connection

    assert client.RETRYABLE_STATUSES is connection.RETRYABLE_STATUSES is delivery.RETRYABLE_STATUSES
    assert client.RETRYABLE_STATUSES is RETRYABLE_STATUSES
    assert retry.parse_retry_after is delivery.parse_retry_after is transient.parse_retry_after
