"""The pacer on a virtual clock: full speed until Graph signals throttling, then one token bucket at the learned rate.

No HTTP and no wall clock: ``VirtualTime`` is the injected clock and sleep; it moves time to the next wake-up only
when every sender is blocked, so the tests see exactly when each request would have gone.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Coroutine
from typing import Any

import pytest

from licensing.graph.pacing import AIM, RAISE, SMALLEST_QUOTA, TARGET, Pacer, Ticket, throttle_percentage


class VirtualTime:
    def __init__(self) -> None:
        self.now = 5_000.0
        self.slept: list[float] = []
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + max(0.0, seconds), self._seq, future))
        self._seq += 1
        await future

    def run(self, *coros: Coroutine[Any, Any, Any]) -> list[Any]:
        async def main() -> list[Any]:
            tasks = [asyncio.ensure_future(c) for c in coros]
            while not all(t.done() for t in tasks):
                for _ in range(20):  # let every sender run until it blocks on a sleep
                    await asyncio.sleep(0)
                if self._heap:
                    wake, _, future = heapq.heappop(self._heap)
                    self.now = max(self.now, wake)
                    future.set_result(None)
            return [t.result() for t in tasks]

        return asyncio.run(main())


def pacer_on(vt: VirtualTime) -> Pacer:
    return Pacer(clock=vt.clock, sleep=vt.sleep)


def answered(pacer: Pacer, ticket: Ticket, ru: float, pct: str | None = None, status: int = 200) -> None:
    headers = {"x-ms-resource-unit": str(int(ru))}
    if pct is not None:
        headers["x-ms-throttle-limit-percentage"] = pct
    pacer.settle(ticket, status, headers)


async def one(pacer: Pacer, route: str = "/groups/{id}/members", *, urgent: bool = False) -> Ticket:
    return (await pacer.acquire([route], urgent=urgent))[0]


def engage(vt: VirtualTime, pacer: Pacer, *, limit: float) -> None:
    """Ten answered requests of limit/10 RU, the last one saying the app used 1.0 of its limit."""

    async def main() -> None:
        for i in range(10):
            answered(pacer, await one(pacer), limit / 10, "1.00" if i == 9 else None)

    vt.run(main())


@pytest.mark.parametrize(
    ("value", "parsed"), [(None, None), ("0.85", 0.85), ("1.8", 1.8), ("nan", None), ("x", None), ("-1", None)]
)
def test_the_throttle_percentage_header_is_read_as_documented(value: str | None, parsed: float | None) -> None:
    headers = {"x-ms-throttle-limit-percentage": value} if value is not None else {}
    assert throttle_percentage(headers) == parsed


def test_before_any_signal_every_sender_goes_at_once() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)

    async def sender() -> float:
        ticket = await one(pacer)
        answered(pacer, ticket, 2)  # no percentage header: Graph has not signalled anything
        return ticket.sent

    sent = vt.run(*(sender() for _ in range(50)))
    assert set(sent) == {5_000.0} and vt.slept == []
    assert not pacer.engaged and pacer.metered == 50


def test_a_percentage_at_the_signal_learns_the_limit_from_our_resource_units() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)

    async def main() -> None:
        tickets = [await one(pacer) for _ in range(12)]  # 12 x 40 RU sent within the window
        for t in tickets[:-1]:
            answered(pacer, t, 40)
        assert not pacer.engaged
        answered(pacer, tickets[-1], 40, "0.80")  # 480 RU were 0.8 of the limit

    vt.run(main())
    assert pacer.limit == pytest.approx(600.0)
    assert pacer.rate == pytest.approx(TARGET * 600 / 10)


def test_once_engaged_the_bucket_spaces_every_sender_at_the_rate_and_no_window_overflows() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=600)
    vt.now += 10  # the window that taught the limit has aged out
    start = vt.now

    async def sender() -> list[float]:
        sent = []
        for _ in range(10):
            ticket = await one(pacer)
            answered(pacer, ticket, 60, "0.92")  # what Graph reads while we pace at TARGET of the right limit
            sent.append(ticket.sent)
        return sent

    sent = sorted(s for chain in vt.run(*(sender() for _ in range(8))) for s in chain)
    # 80 first pages of 60 RU: never faster than the bucket (0.92 x 60 RU/s: 86 s), and no slower than whole
    # requests fitting the window allow (0.92 x 600 = 552 RU: 9 of 60 RU, 79 / 9 windows). No chain front was
    # sent, so none is left room.
    assert 79 * 60 / (TARGET * 60) <= sent[-1] - start <= 79 / 9 * 10 + 1
    for s in sent:  # any 10 s window holds at most the paced share of the limit
        assert sum(60 for t in sent if s - 10 < t <= s) <= TARGET * 600


def test_after_a_burst_the_window_holds_senders_until_it_has_aged_out() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=600)  # 600 RU sent just now
    ticket = vt.run(one(pacer))[0]
    # The bucket alone would let it go at once; the window of the burst says wait until it has aged out.
    assert ticket.sent >= 5_000.0 + 10


def test_an_urgent_page_goes_ahead_of_the_bucket_queue() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=600)
    vt.now += 10
    order: list[str] = []

    async def normal(i: int) -> None:
        await asyncio.sleep(0)
        answered(pacer, await one(pacer), 40)
        order.append(f"first{i}")

    async def urgent() -> None:
        for _ in range(3):  # let the first pages queue up first
            await asyncio.sleep(0)
        answered(pacer, await one(pacer, "/users", urgent=True), 1)
        order.append("next")

    vt.run(*(normal(i) for i in range(5)), urgent())
    assert order.index("next") <= 1, order  # not behind the four queued first pages


def test_a_retry_after_pause_holds_every_sender() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)
    pacer.pause(7)
    sent = [t.sent for t in vt.run(one(pacer), one(pacer, "/users"))]
    assert sent == [5_007.0, 5_007.0] and vt.slept == [7.0, 7.0]


def test_a_429_without_the_percentage_is_charged_its_estimate_and_engages_at_the_smallest_quota() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)

    async def main() -> None:
        for _ in range(10):
            answered(pacer, await one(pacer), 30)
        refused = await one(pacer)
        pacer.settle(refused, 429, {"Retry-After": "3"})  # no percentage, no resource unit on the 429
        assert refused.cost == 30 and refused.throttled  # Graph charges it: our estimate stands in

    vt.run(main())
    assert pacer.limit == SMALLEST_QUOTA and pacer.throttled == 1


def test_paced_and_still_hot_the_limit_is_lowered_once_a_window() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=600)
    vt.now += 10

    async def main() -> None:
        answered(pacer, await one(pacer), 60, "0.90")  # near the target: what pacing aims at, nothing changes
        assert pacer.limit == pytest.approx(600.0)
        for _ in range(3):  # at the limit: 10 % lower, once for the whole envelope of answers
            answered(pacer, await one(pacer), 60, "1.00")
        assert pacer.limit == pytest.approx(540.0)
        vt.now += 10
        pacer.settle(await one(pacer), 429, {"Retry-After": "1"})  # throttled while paced: lower again
        assert pacer.limit == pytest.approx(486.0)

    vt.run(main())


def test_answers_without_resource_units_engage_at_the_smallest_documented_quota() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)

    async def main() -> None:
        pacer.settle(await one(pacer), 200, {"x-ms-throttle-limit-percentage": "0.9"})
        assert pacer.limit == SMALLEST_QUOTA
        # The first answer that says what it cost, with a percentage, replaces the stand-in.
        answered(pacer, await one(pacer), 500, "0.85")

    vt.run(main())
    assert pacer.limit == pytest.approx(500 / 0.85)  # (the first answer said no cost: nothing charged)


def test_the_bucket_is_corrected_by_what_graph_charged() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=600)
    vt.now += 10

    async def main() -> tuple[float, float]:
        first = (await pacer.acquire(["/new-route"]))[0]  # estimated at 1 RU
        answered(pacer, first, 51)  # charged 51: the next request waits for the other 50
        second = (await pacer.acquire(["/new-route"]))[0]
        return first.sent, second.sent

    first, second = vt.run(main())[0]
    assert second - first == pytest.approx(51 / (TARGET * 60), rel=0.01)


def test_a_request_counts_in_our_window_from_its_answer_not_its_sending() -> None:
    """Graph charged it somewhere between the two: counted from sending, our window ran short of Graph's."""
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=600)
    vt.now += 10

    async def main() -> float:
        slow = await one(pacer)  # 500 RU sent now, answered 3 s later
        vt.now += 3
        answered(pacer, slow, 500)
        vt.now += 7.5  # 10.5 s after sending, 7.5 s after the answer
        return (await one(pacer)).sent

    sent = vt.run(main())[0]
    assert sent == pytest.approx(5_010.0 + 3 + 10)  # it waits until the answer is a window old


def test_requests_still_on_their_way_at_the_signal_correct_the_limit_when_their_cost_is_known() -> None:
    """At the first signal, requests sent before it and not answered yet count at our estimate (1 RU for a route
    never answered); Graph had charged them in full. Their answers raise the limit to what the reading meant."""
    vt = VirtualTime()
    pacer = pacer_on(vt)

    async def main() -> None:
        early = [await one(pacer) for _ in range(6)]  # members pages, never answered yet: 1 RU each to us
        known = [await one(pacer, "/users") for _ in range(10)]
        for t in known:
            answered(pacer, t, 40)  # 400 RU known
        taught = await one(pacer, "/users")
        answered(pacer, taught, 40, "0.80")  # 440 RU + 6 estimated = 446 RU were 0.8 of the limit, to us
        assert pacer.limit == pytest.approx(446 / 0.8)
        for t in early:
            answered(pacer, t, 26)  # Graph charged 6 x 26 = 156: it had counted 596 RU, not 446
        assert pacer.limit == pytest.approx(596 / 0.8)

    vt.run(main())


def _paced_window(vt: VirtualTime, pacer: Pacer, pct: str | None, *, senders: int = 4, each: int = 6) -> None:
    """``senders`` chains of ``each`` 60 RU requests, every answer reading ``pct`` (None: no header)."""

    async def sender() -> None:
        for _ in range(each):
            answered(pacer, await one(pacer), 60, pct)

    vt.run(*(sender() for _ in range(senders)))


def test_paced_answers_without_the_percentage_raise_a_limit_learned_too_low() -> None:
    """No header means "not more than 0.8 of the limit": paced at TARGET of ours, ours is low. Raised at most once a
    window, and only while the bucket held senders back."""
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=400)  # learned 400 where Graph's limit is higher
    vt.now += 10
    _paced_window(vt, pacer, None)
    # Towards what the window says (our RU / 0.8, a floor of Graph's limit when no answer carried the header),
    # by RAISE at most each time.
    assert pacer.raised >= 1 and 400 < pacer.limit <= 400 * RAISE**pacer.raised
    windows = (vt.now - 5_010.0) / 10
    assert pacer.raised <= windows + 1


def test_paced_answers_at_the_aim_leave_the_limit_alone() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=600)
    vt.now += 10
    _paced_window(vt, pacer, f"{AIM + 0.04:.2f}")
    assert pacer.raised == 0 and pacer.limit == pytest.approx(600)


def test_a_limit_is_not_raised_when_the_bucket_held_nobody_back() -> None:
    """Readings below the aim from a read that is not bucket-bound say nothing about the limit."""
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=6_000)
    vt.now += 10

    async def sparse() -> None:
        for _ in range(20):
            answered(pacer, await one(pacer), 2)
            vt.now += 1  # one small request a second: the bucket never makes anyone wait

    vt.run(sparse())
    assert pacer.raised == 0 and pacer.limit == pytest.approx(6_000)


def test_no_raise_within_a_window_of_a_cooling() -> None:
    vt = VirtualTime()
    pacer = pacer_on(vt)
    engage(vt, pacer, limit=600)
    vt.now += 10

    async def hot() -> None:
        answered(pacer, await one(pacer), 60, status=429)  # paced and throttled: cooled to 540

    vt.run(hot())
    assert pacer.cooled == 1
    cooled_at = vt.now
    raised_before = pacer.raised

    async def quiet() -> None:
        while vt.now < cooled_at + 8:  # each waits ~1.2 s for the bucket: all answered within the window
            answered(pacer, await one(pacer), 60)

    vt.run(quiet())
    assert pacer.raised == raised_before and pacer.limit == pytest.approx(540)


def test_the_other_sub_requests_of_the_teaching_batch_are_not_counted_in_its_reading() -> None:
    """Graph runs a $batch's sub-requests in any order: the ones beside the teaching one may be charged after it."""
    vt = VirtualTime()
    pacer = pacer_on(vt)

    async def main() -> None:
        for t in [await one(pacer, "/users") for _ in range(10)]:
            answered(pacer, t, 40)  # 400 RU
        batch = await pacer.acquire(["/users"] * 5)  # one $batch of five, 40 RU each to us
        answered(pacer, batch[0], 40, "0.80")

    vt.run(main())
    assert pacer.limit == pytest.approx(440 / 0.8)  # not (400 + 5 x 40) / 0.8
