"""Pacing of Graph requests: full speed until Graph signals throttling, then one token bucket at the learned RU rate.

One :class:`Pacer` per :class:`~licensing.graph.client.GraphClient`, shared by every sender of it (the chains of
``read_collections``, the users scan, $batch retries). It holds the app-wide ``Retry-After`` pause and, once Graph
has signalled throttling, spaces requests so that the resource units (RU) they cost stay under the limit it learned.

What Microsoft documents (https://learn.microsoft.com/graph/throttling-limits, "Identity and access service
limits"): "Throttling is based on a token bucket algorithm, which works by adding individual costs of requests.
The sum of request costs is then compared against pre-determined limits"; the application+tenant quota is
"S: 3,500, M: 5,000, L: 8,000 requests per 10 seconds" (tenant under 50 / 50 to 500 / above 500 users);
regular responses carry ``x-ms-resource-unit`` ("the resource unit used for this request") and
``x-ms-throttle-limit-percentage`` ("Returned only when the application consumed more than 0.8 of its
limit. The value ranges from 0.8 to 1.8"); and "Microsoft Graph continues to log resource usage while a
client is being throttled" (https://learn.microsoft.com/graph/throttling). Graph does not send the limit
itself: it is learned (see :meth:`Pacer.settle`).

Ours (assumptions, docs/graph-fidelity.md): the limit is learned at the first signal as *RU we sent in the 10 s
before that request ÷ the percentage its answer carried* (Graph's usage is ours alone: one app, one tenant, one
client); a 429 without the percentage, or answers without resource units, teach nothing: pacing starts at the
smallest documented quota (3,500) until a percentage says more; answers to requests the teaching reading counted
at our estimate correct it (``_relearn``). Once paced, a 429 or a percentage at the limit lowers the limit by 10 %
(at most once a window), and a window reading a median below ``AIM`` while the bucket held senders back raises it
towards what they say (``_steer``): readings near the target are what pacing aims at. We pace at
``TARGET`` of the learned limit and never let our own RU of any 10 s window exceed that either (a request counts
from its answer: Graph charged it before then): a sliding window is the strictest reading of "the sum of request
costs is compared against limits", and staying under it also stays under a token bucket of the same size. Time
comes from the injected ``clock`` and ``sleep`` (tests never wait); every wait is one sleep computed up front, so a
sleep that does not advance the clock cannot make a sender spin.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from licensing.graph.responses import header, resource_units

__all__ = ["SIGNAL", "TARGET", "WINDOW_S", "Pacer", "Ticket", "throttle_percentage"]

WINDOW_S: Final = 10.0  # "per 10 seconds" (throttling-limits, identity and access)
SIGNAL: Final = 0.8  # x-ms-throttle-limit-percentage is "returned only when ... more than 0.8 of its limit"
SMALLEST_QUOTA: Final = 3500.0  # "S: 3,500 ... per 10 seconds": the stand-in when no answer says what it cost
TARGET: Final = 0.92  # ours: the share of the learned limit we pace at (estimation error, one request's burst)
DEFAULT_COST: Final = 1.0  # "Any identity path not listed in the table | 1": a route we have no answer for yet
URGENT_SHARE: Final = 0.15  # ours: the part of the window first pages leave to the next pages of chains
AT_LIMIT: Final = 1.0  # a percentage this high while paced: the learned limit was too high
COOL: Final = 0.9  # ours: how much lower the limit is taken then
AIM: Final = 0.88  # ours: the median percentage a paced window should read (below it, and bucket-bound: too slow)
RAISE: Final = 1.25  # ours: the most the limit is raised at once (towards what the readings say; once a window)
MIN_READINGS: Final = 8  # ours: answers a window needs before its median is trusted
_KEEP_S: Final = 2 * WINDOW_S  # tickets older than this are dropped (learning looks one window before a send)


def throttle_percentage(headers: Mapping[str, Any] | None) -> float | None:
    """x-ms-throttle-limit-percentage as a number (0.8 to 1.8 documented), or None when absent or nonsense."""
    raw = header(headers, "x-ms-throttle-limit-percentage")
    try:
        value = float(raw) if raw else math.nan
    except ValueError:
        return None
    return value if 0.0 < value < 10.0 else None  # nan and nonsense fall out here


@dataclass(slots=True)
class Ticket:
    """One metered request (a $batch carries one per sub-request): its route, when it went, what it cost."""

    route: str
    sent: float
    cost: float  # our estimate until the answer, then what Graph charged
    paced: bool = False  # reserved in the bucket (its estimate is corrected there when the answer comes)
    throttled: bool = field(default=False)
    urgent: bool = False  # the next page of a chain, sent ahead of the bucket's queue
    answered: float | None = None  # when its answer came (None: still on its way)
    envelope: int = 0  # the acquire it came from: the sub-requests of one $batch share it

    @property
    def counted(self) -> float:
        """From when the window check counts it: its answer, else its sending."""
        return self.sent if self.answered is None else self.answered


class Pacer:
    """The app-wide pause and, once Graph signals throttling, the shared token bucket (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        window_s: float = WINDOW_S,
        target: float = TARGET,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.window_s = window_s
        self.target = target
        self.limit: float | None = None  # learned RU per window; None: Graph has not signalled throttling
        self._cooled = -math.inf  # when the limit was last lowered
        self._engaged_at = math.inf  # when Graph first signalled throttling
        self._next = 0.0  # virtual time at which the bucket next has credit (GCRA form of a token bucket)
        self._pause_until = 0.0
        self._log: list[Ticket] = []  # sorted by ``sent``
        self._costs: dict[str, float] = {}  # last charged RU per route: the estimate before an answer
        self._units_seen = False  # some answer carried x-ms-resource-unit (else learning has nothing to go on)
        self._probe_from = math.inf  # readings of requests sent from here on steer the limit (see _steer)
        self._probe_waited = 0.0
        self._readings: list[float] = []
        self._acquired = 0
        self._dropped = -math.inf  # the latest ``sent`` of a ticket dropped from the log
        self._taught: tuple[Ticket, float] | None = None  # the request the limit was learned from, its percentage
        self.metered = 0  # requests counted, $batch sub-requests one by one (Graph meters them so)
        self.throttled = 0  # of those, answered 429
        self.waited_s = 0.0  # time senders spent waiting for the bucket or the window (not Retry-After)
        self.cooled = 0  # times the limit was lowered while paced
        self.raised = 0  # times it was raised while paced (readings below AIM)

    # ------------------------------------------------------------------ state

    @property
    def engaged(self) -> bool:
        """Whether Graph has signalled throttling (then every sender is paced)."""
        return self.limit is not None

    @property
    def rate(self) -> float | None:
        """RU per second the bucket lets through, or None before throttling was signalled."""
        return None if self.limit is None else self.target * self.limit / self.window_s

    def estimate(self, route: str) -> float:
        return self._costs.get(route, DEFAULT_COST)

    def pause(self, seconds: float) -> None:
        """Hold every sender for ``seconds`` (a 429's Retry-After throttles the app, not one request)."""
        if seconds > 0:
            self._pause_until = max(self._pause_until, self.clock() + seconds)

    def served(self, until: float) -> None:
        """A $batch retry slept through the pause itself (until ``until``): it must not wait for it again."""
        if self._pause_until <= until:
            self._pause_until = 0.0

    # ------------------------------------------------------------------ before a request

    async def acquire(self, routes: Sequence[str], *, urgent: bool = False) -> list[Ticket]:
        """Wait for this request's turn and return its tickets (one per route it meters).

        Not engaged: only a Retry-After pause is waited. Engaged: a normal request also waits for the bucket
        (its estimated RU at ``rate``, first come first served); an ``urgent`` one (the next page of a chain,
        whose wait would lengthen the longest chain) takes its RU from the bucket ahead of the queue, so the
        bucket's later reservations repay it. Both wait until our RU of the last window leaves room for them.
        """
        now = self.clock()
        if not routes:  # nothing metered (a $batch envelope): only the pause holds it
            if self._pause_until > now:
                await self.sleep(self._pause_until - now)
            return []
        self._acquired += 1
        tickets = [Ticket(route, now, self.estimate(route), envelope=self._acquired) for route in routes]
        cost = sum(t.cost for t in tickets)
        start = max(now, self._pause_until)
        rate = self.rate
        if rate is not None and self.limit is not None:
            if urgent:
                self._next = max(self._next, start) + cost / rate
            else:
                start = max(start, self._next)
                self._next = start + cost / rate
            budget = self.target * self.limit
            if not urgent:
                # First pages leave chain fronts room for 1.5 times what they took in the last window (at most
                # URGENT_SHARE of it): a full window would hold the longest chain back.
                taken = sum(t.cost for t in self._log if t.urgent and t.sent > now - self.window_s)
                budget -= min(1.5 * taken, URGENT_SHARE * budget)
            start = self._fits_at(start, cost, budget)
            for t in tickets:
                t.paced, t.urgent = not urgent, urgent
        for t in tickets:
            t.sent = start
            self._insert(t)
        self.metered += len(tickets)
        wait = start - now
        if wait > 0:
            self.waited_s += max(0.0, start - max(now, self._pause_until))
            await self.sleep(wait)
        return tickets

    def _insert(self, ticket: Ticket) -> None:
        horizon = ticket.sent - _KEEP_S
        drop = 0
        while drop < len(self._log) and self._log[drop].sent < horizon:
            drop += 1
        if drop:
            self._dropped = self._log[drop - 1].sent
            del self._log[:drop]
        bisect.insort(self._log, ticket, key=lambda t: t.sent)

    def _fits_at(self, start: float, cost: float, budget: float) -> float:
        """The earliest time from ``start`` at which our RU sent in the window ending then, plus ``cost``, fits
        ``budget`` (a request dearer than the budget goes once that window is empty)."""
        need = min(cost, budget)
        for _ in range(len(self._log) + 1):  # each round ages at least one ticket out: bounded
            inside = [t for t in self._log if start - self.window_s < t.counted <= start]
            if sum(t.cost for t in inside) + need <= budget or not inside:
                break
            start = min(t.counted for t in inside) + self.window_s  # when the oldest one in the window ages out
        return start

    # ------------------------------------------------------------------ after the answer

    def settle(self, ticket: Ticket, status: int | None, headers: Mapping[str, Any] | None) -> None:
        """Record what the request cost and learn from the answer (``status`` None: no answer came)."""
        ru = resource_units(headers)
        throttled = status == 429
        if throttled:
            self.throttled += 1
            ticket.throttled = True
            # Graph charges throttled requests too; their cost is documented on regular responses only.
            charged = ru or ticket.cost
        elif ru > 0:
            charged = ru
            self._costs[ticket.route] = ru
            self._units_seen = True
        elif status is None:
            charged = ticket.cost  # no answer: it may have been charged
        else:
            charged = 0.0  # answered without a cost: nothing metered (or an error before metering)
        rate = self.rate
        if ticket.paced and rate is not None:
            self._next += (charged - ticket.cost) / rate  # the bucket reserved the estimate
        ticket.cost = charged
        percentage = throttle_percentage(headers)
        if self._taught is not None and ticket.sent <= self._taught[0].sent:
            self._relearn()  # a request the teaching reading counted: its estimate is now what Graph charged
        if self.limit is None:
            if percentage is not None and percentage >= SIGNAL:
                self._engage(self._reading(ticket) / percentage)
                if self.limit != SMALLEST_QUOTA:
                    self._taught = (ticket, percentage)
            elif throttled:
                # A 429 says "throttled", not at what limit: Graph may throttle below the quota "when the services
                # are under an important load" (throttling-limits). Pacing starts at the smallest documented quota;
                # a percentage header teaches more. The Retry-After pause is what answers the 429 itself.
                self._engage(0.0)
        elif ticket.sent >= self._engaged_at + self.window_s and (
            throttled or (percentage is not None and percentage >= AT_LIMIT)
        ):
            # (Within a window of engaging, Graph still counts the burst that taught the limit, partly at our
            # estimates: a 429 then says nothing about the pace.)
            self._cool()
        elif percentage is not None and percentage >= SIGNAL and self.limit == SMALLEST_QUOTA and self._units_seen:
            self.limit = self._reading(ticket) / percentage  # the stand-in gives way to the first real measure
            self._taught = (ticket, percentage)
        elif ru > 0 and ticket.sent >= max(self._probe_from, self._engaged_at + self.window_s):
            self._steer(percentage or 0.0)  # no percentage: "returned only when ... more than 0.8"
        # Graph charged it somewhere between sending and answering: the window check counts it from its answer
        # on, so it stays in our window at least as long as in Graph's (counted from sending: measured 100+ RU
        # short). Learning above reads the window at sending, as Graph's percentage did.
        ticket.answered = max(self.clock(), ticket.sent)

    def _reading(self, ticket: Ticket) -> float:
        """What Graph had counted when it charged ``ticket``, as far as we can tell: our RU sent in the window before
        it, and its own. The other sub-requests of its $batch (sent at the same time) are left out: without dependsOn
        nothing sequences them (json-batching: "Responses ... might appear in a different order"), so they may have
        been charged after it (counted, a relearned limit came out above the sandbox's and drew 429s)."""
        since = ticket.sent - self.window_s
        return sum(
            t.cost
            for t in self._log
            if since < t.sent <= ticket.sent and (t is ticket or t.envelope != ticket.envelope)
        )

    def _relearn(self) -> None:
        """The learned limit again, from the same reading, once more of the RU it counted are known.

        At the first signal many requests sent before it are still on their way, counted at our estimate (a route
        never answered yet at DEFAULT_COST, 1 RU, where a members page costs 2 to 3): the limit read then is low
        by what they really cost (measured 516 of 600 RU per 10 s, which paced the whole read 14 % slow). Their
        answers correct it; a limit lowered since (a 429 or 1.0 while paced) is not raised again, and the reading
        is let go once the requests it counted have aged out of the log."""
        assert self._taught is not None
        taught, percentage = self._taught
        sent = taught.sent
        if self.cooled or self._dropped > sent - self.window_s:
            self._taught = None
            return
        self.limit = max(self.limit or 0.0, self._reading(taught) / percentage)

    def _steer(self, reading: float) -> None:
        """Paced: raise the limit when a window's answers read below AIM while the bucket held senders back.

        The limit learned at the first signal is only as good as our count of what Graph had charged then, and a
        request is charged some time between its sending and its answer (the later, the more Graph counted that we
        did not): measured 516 RU per 10 s of 600, a read paced 20 % slower than it could go. While paced at TARGET
        of a right limit, Graph's percentage reads about TARGET; a median below AIM (an answer without the header
        reads 0: it is "returned only when the application consumed more than 0.8 of its limit") says the limit
        is low. Only readings of requests sent after the last change count, once a window; a 429 or 1.0 cools it
        again (``_cool``), and no raise follows a cooling within a window."""
        self._readings.append(reading)
        now = self.clock()
        if now < self._probe_from + self.window_s or len(self._readings) < MIN_READINGS:
            return
        readings = sorted(self._readings)
        median = readings[len(readings) // 2]
        # What the readings say of the limit: our RU of the window over the median percentage (none read: below 0.8,
        # so the limit is above RU / 0.8). Raised towards it only while senders waited on the bucket (a read winding
        # down reads low too), by RAISE at most.
        since = now - self.window_s
        used = sum(t.cost for t in self._log if since < t.counted <= now)
        says = used / max(median, SIGNAL)
        waited = self.waited_s > self._probe_waited
        if (
            self.limit is not None
            and median < AIM
            and waited
            and says > self.limit
            and now >= self._cooled + self.window_s
        ):
            self.limit = min(self.limit * RAISE, says)
            self.raised += 1
        self._probe_from, self._probe_waited, self._readings = now, self.waited_s, []

    def _engage(self, limit: float) -> None:
        self.limit = limit if limit > 0 and self._units_seen else SMALLEST_QUOTA
        self._engaged_at = self._probe_from = self.clock()
        self._next = max(self._next, self.clock())

    def _cool(self) -> None:
        """Paced and still too hot (a 429, or usage well past the target): 10 % slower, at most once a window.

        Not re-learned from the reading: while paced, the RU Graph counted at a request includes what we sent
        while it was on its way, so *RU before it ÷ percentage* reads low, and pacing down to it read lower again.
        """
        now = self.clock()
        if self.limit is not None and now >= self._cooled + self.window_s:
            self._cooled = now
            self.limit *= COOL
            self.cooled += 1
