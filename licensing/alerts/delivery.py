"""Delivering one alert body: the Teams webhook POST, the Graph sendMail call, rate limits and retries.

Every failure becomes a :class:`~licensing.errors.DeliveryError` whose message is safe to log and
store (no webhook URL, no token): the notifier keeps the body in the outbox and tries again later.
Both sends are POSTs that are not idempotent, so failures fall in three kinds:

- not delivered, try again (:class:`RetryLaterError`): the connection never opened, 408, 429, 503;
- may have been delivered (:class:`~licensing.errors.DeliveryOutcomeUnknownError`): a timeout or a broken
  connection after the body went out, or a 5xx other than 503. Never retried in the run (a slow webhook that fired
  produced five identical cards); the outbox replays it at most once, later;
- never going to work (``retryable=False``): 4xx, a URL httpx cannot use, anything unexpected.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

from licensing.errors import (
    DeliveryError,
    DeliveryOutcomeUnknownError,
    GraphError,
    GraphOutcomeUnknownError,
    GraphThrottledError,
    GraphUnavailableError,
    redact_text,
)
from licensing.settings import is_loopback_url
from licensing.transient import RETRYABLE_STATUSES, Backoff, parse_retry_after

__all__ = [
    "MailTransport",
    "RateLimiter",
    "RetryLaterError",
    "RetryPolicy",
    "limiter_for",
    "parse_retry_after",
    "post_webhook",
    "send_mail",
    "with_retries",
]

Sleep = Callable[[float], Awaitable[Any]]
# 503 says the server "is currently unable to handle the request" (RFC 9110, 15.6.4): it was not carried
# out, so it is retried like a 429. Other 5xx answers to a POST leave the outcome unknown.
NOT_HANDLED: Final = 503


class MailTransport(Protocol):
    """Sends one Graph sendMail request body from ``mailbox``; ``licensing.graph.GraphClient`` is one.

    Raises :class:`~licensing.errors.GraphError` (with ``status``) or DeliveryError on failure.
    """

    async def send_mail(self, mailbox: str, message: dict[str, Any]) -> None: ...


class RetryLaterError(DeliveryError):
    """A retryable failure that said when to come back (``Retry-After``, in seconds)."""

    def __init__(self, message: str, *, channel: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message, channel=channel, retryable=True, status=status)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries within one run; what is left goes to the outbox for the next run."""

    attempts: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is not waited for: the outbox takes it
    jitter: float = 0.2

    def backoff(self, attempt: int) -> float:
        return Backoff(self.base_delay_s, self.max_delay_s, jitter=self.jitter).delay(attempt)


async def with_retries(send: Callable[[], Awaitable[None]], policy: RetryPolicy, sleep: Sleep) -> int:
    """Call ``send`` until it succeeds or the policy gives up (re-raising the last DeliveryError).

    Returns the number of attempts made.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            await send()
            return attempt
        except DeliveryError as exc:
            if not exc.retryable or attempt >= policy.attempts or isinstance(exc, DeliveryOutcomeUnknownError):
                raise
            retry_after = exc.retry_after if isinstance(exc, RetryLaterError) else None
            if retry_after is not None and retry_after > policy.max_retry_after_s:
                raise DeliveryError(
                    f"{exc.message}; Retry-After {retry_after:g} s is longer than this run waits",
                    channel=exc.channel,
                    retryable=True,
                    status=exc.status,
                ) from exc
            await sleep(retry_after if retry_after is not None else policy.backoff(attempt))
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


class RateLimiter:
    """At most ``rate`` sends per ``period_s`` seconds (sliding window), shared by every run in the process.

    Slots are reserved without awaiting, so concurrent senders on one event loop never race, and no
    asyncio primitive ties the limiter to one loop.
    """

    def __init__(self, rate: int, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.period_s = period_s
        self.clock = clock
        self._slots: deque[float] = deque(maxlen=rate)

    def reserve(self) -> float:
        """Reserve the next slot; return how long to wait for it."""
        now = self.clock()
        start = now
        if len(self._slots) == self.rate:
            start = max(now, self._slots[0] + self.period_s)
        if self._slots:
            start = max(start, self._slots[-1])
        self._slots.append(start)
        return start - now

    async def wait(self, sleep: Sleep) -> None:
        delay = self.reserve()
        if delay > 0:
            await sleep(delay)


# Teams Workflows webhooks: at most 4 posts a second. Exchange Online: 30 messages a minute per mailbox.
_LIMITS: Final = {"teams": (4, 1.0), "mail": (30, 60.0)}
_limiters: dict[tuple[str, str], RateLimiter] = {}


def limiter_for(channel: str, destination: str) -> RateLimiter:
    """The process-wide limiter of one webhook or mailbox (keyed by a digest, never the URL itself)."""
    import hashlib

    key = (channel, hashlib.sha256(destination.encode("utf-8")).hexdigest()[:16])
    limiter = _limiters.get(key)
    if limiter is None:
        rate, period = _LIMITS[channel]
        limiter = _limiters[key] = RateLimiter(rate, period)
    return limiter


def check_webhook_url(url: str) -> None:
    """Only https webhooks (http on loopback, for tests and the demo): the body names users and groups."""
    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is not a number from 0 to 65535 raises here
        httpx.URL(url)  # what httpx refuses (an invalid IDNA host, control characters) fails here, not mid-run
    except Exception:
        raise DeliveryError(
            "the Teams webhook URL is malformed: check ALERT_TEAMS_WEBHOOK_URL", channel="teams", retryable=False
        ) from None
    if port == 0:
        raise DeliveryError(
            "the Teams webhook URL has port 0: check ALERT_TEAMS_WEBHOOK_URL", channel="teams", retryable=False
        )
    if (
        not parts.hostname
        or parts.scheme not in ("https", "http")
        or (parts.scheme == "http" and not is_loopback_url(url))
    ):
        raise DeliveryError(
            "the Teams webhook URL must use https (http only on loopback)", channel="teams", retryable=False
        )


def quiet_http_request_logs() -> None:
    """httpx logs every request line with its full URL at INFO: for a webhook that URL carries its signature.

    The Functions host ships INFO logs, so the request lines of httpx and httpcore are kept below it.
    """
    for name in ("httpx", "httpcore"):
        library_logger = logging.getLogger(name)
        if library_logger.getEffectiveLevel() < logging.WARNING:
            library_logger.setLevel(logging.WARNING)


async def post_webhook(client: httpx.AsyncClient, url: str, body: bytes, *, timeout_s: float = 30.0) -> None:
    """POST one card message to a Workflows webhook; 2xx (the flow answers 202) means delivered."""
    check_webhook_url(url)
    quiet_http_request_logs()
    try:
        response = await client.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=timeout_s)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # the body never left
        raise RetryLaterError(
            f"could not reach the Teams webhook ({type(exc).__name__})", channel="teams", status=None, retry_after=None
        ) from None
    except httpx.TimeoutException:
        raise DeliveryOutcomeUnknownError(
            f"the Teams webhook did not answer within {timeout_s:g} s; it may have been delivered", channel="teams"
        ) from None
    except httpx.TransportError as exc:  # reset or protocol error after sending; the message would name the URL
        raise DeliveryOutcomeUnknownError(
            f"the connection to the Teams webhook broke ({type(exc).__name__}); it may have been delivered",
            channel="teams",
        ) from None
    except Exception as exc:  # InvalidURL, UnicodeError (IDNA), ...: a URL httpx cannot use; retrying cannot help
        raise DeliveryError(
            f"the Teams webhook URL cannot be used ({type(exc).__name__}): check ALERT_TEAMS_WEBHOOK_URL",
            channel="teams",
            retryable=False,
        ) from None
    status = response.status_code
    if 200 <= status < 300:
        return
    what = f"the Teams webhook answered HTTP {status}"
    if status >= 500 and status != NOT_HANDLED:  # the flow may have run before it failed: not retried in this run
        raise DeliveryOutcomeUnknownError(f"{what}; it may have been delivered", channel="teams", status=status)
    if status in RETRYABLE_STATUSES:  # 408, 429: refused before it ran
        raise RetryLaterError(
            what, channel="teams", status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    hint = {
        400: " (the flow rejected the card)",
        401: " (the flow's signature was refused: check ALERT_TEAMS_WEBHOOK_URL)",
        403: " (the flow refused the call: check ALERT_TEAMS_WEBHOOK_URL)",
        404: " (the flow does not exist any more: check ALERT_TEAMS_WEBHOOK_URL)",
        413: " (the card is too large)",
    }.get(status, "")
    raise DeliveryError(what + hint, channel="teams", retryable=False, status=status)


async def send_mail(transport: MailTransport, mailbox: str, message: dict[str, Any]) -> None:
    """Send one sendMail body through ``transport``, mapping its failures to DeliveryError."""
    try:
        await transport.send_mail(mailbox, message)
    except DeliveryError:
        raise
    except GraphOutcomeUnknownError as exc:
        raise DeliveryOutcomeUnknownError(
            f"Graph sendMail: {redact_text(exc.message)}", channel="mail", status=exc.status
        ) from None
    except GraphError as exc:
        status = exc.status
        text = f"Graph sendMail failed: {redact_text(exc.message)}"
        if status is not None and status >= 500 and status != NOT_HANDLED:
            raise DeliveryOutcomeUnknownError(text, channel="mail", status=status) from None
        if isinstance(exc, GraphThrottledError | GraphUnavailableError) or status in RETRYABLE_STATUSES:
            raise RetryLaterError(text, channel="mail", status=status, retry_after=None) from None
        raise DeliveryError(text, channel="mail", retryable=False, status=status) from None
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise RetryLaterError(
            f"could not reach Graph for sendMail ({type(exc).__name__})", channel="mail", status=None, retry_after=None
        ) from None
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise DeliveryOutcomeUnknownError(
            f"Graph sendMail broke off ({type(exc).__name__}); it may have been delivered", channel="mail"
        ) from None
