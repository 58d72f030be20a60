"""Delivery building blocks: Retry-After parsing, the retry loop, the rate limiter, error mapping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from licensing.alerts.delivery import (
    RateLimiter,
    RetryLaterError,
    RetryPolicy,
    check_webhook_url,
    parse_retry_after,
    send_mail,
    with_retries,
)
from licensing.errors import (
    DeliveryError,
    GraphPermissionError,
    GraphResponseError,
    GraphThrottledError,
    GraphUnavailableError,
)


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("-3") == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad) is None


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def failing(errors: list[DeliveryError]) -> Any:
    calls = {"n": 0}

    async def send() -> None:
        calls["n"] += 1
        if errors:
            raise errors.pop(0)

    return send, calls


def test_retries_honour_retry_after_then_succeed() -> None:
    sleep = Sleeps()
    send, calls = failing(
        [
            RetryLaterError("429", channel="teams", status=429, retry_after=3.0),
            RetryLaterError("503", channel="teams", status=503, retry_after=None),
        ]
    )
    attempts = asyncio.run(with_retries(send, RetryPolicy(jitter=0), sleep))
    assert attempts == 3 and calls["n"] == 3
    assert sleep.calls == [3.0, 2.0]  # Retry-After, then exponential backoff (attempt 2: 2 s)


def test_retries_are_bounded_and_non_retryable_errors_stop_at_once() -> None:
    sleep = Sleeps()
    send, calls = failing([RetryLaterError("500", channel="teams", status=500, retry_after=None)] * 10)
    with pytest.raises(DeliveryError, match="500"):
        asyncio.run(with_retries(send, RetryPolicy(attempts=4, jitter=0), sleep))
    assert calls["n"] == 4 and sleep.calls == [1.0, 2.0, 4.0]

    send, calls = failing([DeliveryError("400", channel="teams", retryable=False, status=400)])
    with pytest.raises(DeliveryError, match="400"):
        asyncio.run(with_retries(send, RetryPolicy(), sleep))
    assert calls["n"] == 1


def test_a_retry_after_beyond_the_cap_is_left_to_the_outbox() -> None:
    sleep = Sleeps()
    send, calls = failing([RetryLaterError("429", channel="mail", status=429, retry_after=900)])
    with pytest.raises(DeliveryError, match="longer than this run waits") as info:
        asyncio.run(with_retries(send, RetryPolicy(max_retry_after_s=120), sleep))
    assert info.value.retryable and calls["n"] == 1 and sleep.calls == []


def test_rate_limiter_allows_rate_per_period() -> None:
    clock = {"t": 100.0}
    limiter = RateLimiter(4, 1.0, clock=lambda: clock["t"])
    waits = [limiter.reserve() for _ in range(9)]
    assert waits[:4] == [0.0, 0.0, 0.0, 0.0]
    assert waits[4:8] == [1.0, 1.0, 1.0, 1.0]
    assert waits[8] == 2.0
    clock["t"] += 10  # a quiet period frees every slot
    assert limiter.reserve() == 0.0


def test_rate_limiter_for_mail_is_30_a_minute() -> None:
    clock = {"t": 0.0}
    limiter = RateLimiter(30, 60.0, clock=lambda: clock["t"])
    waits = [limiter.reserve() for _ in range(31)]
    assert max(waits[:30]) == 0.0 and waits[30] == 60.0


def test_webhook_url_must_be_https_or_loopback() -> None:
    check_webhook_url("https://prod-00.westeurope.logic.azure.com/workflows/x?sig=y")
    check_webhook_url("http://127.0.0.1:8080/hook")
    for bad in ("http://example.com/hook", "ftp://example.com/x", "not a url"):
        with pytest.raises(DeliveryError) as info:
            check_webhook_url(bad)
        assert not info.value.retryable and "example.com" not in str(info.value)


class Transport:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send_mail(self, mailbox: str, message: dict[str, Any]) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((mailbox, message))


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (GraphThrottledError("throttled", status=429), True),
        (GraphUnavailableError("5xx", status=503), True),
        (GraphUnavailableError("timeout", status=None), True),
        (GraphPermissionError("403 Mail.Send missing", permission="Mail.Send"), False),
        (GraphResponseError("400 bad recipients", status=400), False),
    ],
)
def test_graph_errors_map_to_delivery_errors(error: Exception, retryable: bool) -> None:
    with pytest.raises(DeliveryError) as info:
        asyncio.run(send_mail(Transport(error), "audit@contoso.example", {"message": {}}))
    assert info.value.retryable is retryable and info.value.channel == "mail"
    assert str(error) in str(info.value)


def test_send_mail_passes_the_message_through() -> None:
    t = Transport(None)
    asyncio.run(send_mail(t, "audit@contoso.example", {"message": {"subject": "x"}}))
    assert t.sent == [("audit@contoso.example", {"message": {"subject": "x"}})]
