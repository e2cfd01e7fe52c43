"""The adaptive controller's responses to what a vendor does: a latency level shift, our
own queue, timeouts at a shift, a paced client's overshoot, a vendor that insists.

All on a simulated clock (no sleeps, no wall-clock asserts).
"""

from __future__ import annotations

import httpx
import pytest

from integrations.adaptive import AdaptiveConfig, AdaptiveRate, ConcurrencyLimit
from integrations.adaptive_gate import AdaptiveGate
from tests.test_adaptive import CFG, Clock, _answer

WIDE = AdaptiveConfig(concurrency_initial=8, concurrency_max=64)


def _grow(limit: ConcurrencyLimit, clock: Clock, latency: float, n: int) -> None:
    """``n`` answers of ``latency`` while the limit is used."""
    for _ in range(n):
        clock.now += latency / max(limit.limit, 1.0)
        limit.on_success(latency, in_flight=int(limit.limit))


def test_a_vendor_latency_level_shift_becomes_the_baseline() -> None:
    """A 10x latency that does not fall when the limit is cut is the vendor's, not a
    queue of ours: after LEVEL_CUTS cuts it is the new baseline and the limit grows
    again (no collapse)."""
    clock = Clock()
    limit = ConcurrencyLimit(WIDE, clock)
    _grow(limit, clock, 0.02, 200)
    before = limit.limit
    for _ in range(ConcurrencyLimit.LEVEL_CUTS + 3):  # answers a round trip apart
        clock.now += 0.25
        limit.on_success(0.2, in_flight=int(limit.limit))
    assert limit.level_resets == 1
    assert limit.limit >= before * WIDE.latency_backoff**ConcurrencyLimit.LEVEL_CUTS - 1e-9
    shifted = limit.limit
    _grow(limit, clock, 0.2, 200)
    assert limit.limit > shifted + 1  # probing upward again at the new level


def test_the_limit_stops_growing_while_a_queue_forms() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(WIDE, clock)
    _grow(limit, clock, 0.1, 100)
    slow = 0.1 * (ConcurrencyLimit.GROW_TOLERANCE + 0.4)  # 1.9x the baseline, under 2x
    _grow(limit, clock, slow, 5)  # the short-term average gets there
    held = limit.limit
    _grow(limit, clock, slow, 5)
    assert limit.limit == held  # a queue forming: no probing, and no cut either


def test_timeouts_sent_before_a_cut_are_one_signal() -> None:
    """At a latency shift every request in flight times out; they report the old limit
    and cut it once, not once each."""
    clock = Clock()
    limit = ConcurrencyLimit(WIDE, clock)
    _grow(limit, clock, 0.02, 100)
    before = limit.limit
    sent = clock.now
    clock.now += 0.1
    for _ in range(10):
        clock.now += 0.05  # beyond the round trip: only sent_at makes them one signal
        limit.on_drop(sent)
    assert limit.limit == pytest.approx(before * WIDE.backoff)
    clock.now += 0.05
    limit.on_drop(clock.now - 0.01)  # sent after the cut: a new signal
    assert limit.limit == pytest.approx(before * WIDE.backoff**2)


def _steady(rate: AdaptiveRate, clock: Clock, per_second: float, seconds: float) -> None:
    for _ in range(int(per_second * seconds)):
        clock.now += 1.0 / per_second
        rate.delay()
        rate.on_success()


def test_insisted_cut_follows_the_best_admitted_second_and_plateaus_below_it() -> None:
    """After a start at 40/s, a hold leaves few answers in the last second: the cut still
    follows the 40/s the vendor admitted, and the rate flattens at TARGET of it for
    PLATEAU seconds instead of probing into a limiter that counts rejections."""
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    _steady(rate, clock, 40, 2.0)
    clock.now += 1.0  # a hold: nothing admitted
    _steady(rate, clock, 10, 0.5)
    rate.on_throttle(rtt=0.02, insist=True, sent_at=clock.now - 0.01)
    assert rate.rate == pytest.approx(40 * AdaptiveRate.BETA, rel=0.05)
    top = 0.0
    start = clock.now
    while clock.now < start + AdaptiveRate.PLATEAU:
        clock.now += max(rate.delay(), 0.001)
        rate.on_success()
        top = max(top, rate.rate or 0.0)
    assert top == pytest.approx(40 * AdaptiveRate.TARGET, rel=0.05)
    clock.now += 10.0
    _steady(rate, clock, 36, 1.0)
    assert (rate.rate or 0.0) > 40 * AdaptiveRate.TARGET  # then probing beyond it


def test_a_429_at_the_plateau_keeps_the_known_limit_once() -> None:
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    _steady(rate, clock, 40, 2.0)
    rate.on_throttle(rtt=0.02, insist=True)
    _steady(rate, clock, 36, 3.0)  # back at the plateau
    rate.on_throttle(rtt=0.02, sent_at=clock.now - 0.01)  # pacing jitter
    assert rate.rate == pytest.approx(40 * AdaptiveRate.BETA, rel=0.05)
    _steady(rate, clock, 30, 1.0)
    rate.on_throttle(rtt=0.02, sent_at=clock.now - 0.01)  # again soon: a lower limit
    assert (rate.rate or 0.0) < 40 * AdaptiveRate.BETA * 0.95


async def test_a_paced_clients_overshoot_is_a_cut_and_a_storm_is_a_hold() -> None:
    """A client paced on a limit measured over whole seconds that meets a 429 and another
    right after cuts its rate, without holding everyone for a whole-second Retry-After;
    five within a second despite the cut hold everyone."""
    clock = Clock()
    gate = AdaptiveGate("okta", CFG, clock=clock)
    _steady(gate.rate, clock, 40, 2.0)
    gate.rate.on_throttle(rtt=0.02, insist=True)
    _steady(gate.rate, clock, 36, 2.0)

    async def throttled(timeout: float) -> httpx.Response:
        clock.now += 0.01
        return _answer(429, "1")

    await gate.send("list_groups", 3.0, throttled)
    clock.now += 0.05
    await gate.send("list_groups", 3.0, throttled)
    assert gate.holds == 0 and gate.pause_left("high") == 0.0
    for _ in range(3):
        clock.now += 0.05
        await gate.send("list_groups", 3.0, throttled)
    assert gate.holds == 1 and gate.pause_left("high") > 0.5
