"""Adaptive execution's pure parts (integrations.adaptive) and the gate around an attempt
(integrations.adaptive_gate), on injected clocks: limiter math, timeout clamping,
Retry-After lies, clock jumps, contradicting bounds. No wall-clock assertions."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import httpx
import pytest

from integrations.adaptive import (
    AdaptiveConfig,
    AdaptivePolicy,
    AdaptiveRate,
    AdaptiveTimeout,
    BoundsError,
    ConcurrencyLimit,
    LatencyWindow,
    clamp_retry_after,
    current_priority,
    priority_scope,
)
from integrations.adaptive_gate import AdaptiveGate, gate_for, gates
from integrations.base import IntegrationClient
from integrations.breaker import CircuitBreaker
from integrations.catalog import load_catalog
from integrations.config import EngineConfig
from integrations.errors import APITimeoutError, RateLimitError
from integrations.retry import RetryPolicy
from junction.settings import Settings


class Clock:
    """A monotonic clock the test steps (and may step back, as a broken clock does)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


CFG = AdaptiveConfig(
    timeout_min_seconds=0.2,
    timeout_max_seconds=10.0,
    timeout_margin=2.0,
    min_samples=5,
    window=50,
    concurrency_min=1,
    concurrency_max=20,
    concurrency_initial=4,
)


# --- bounds ---------------------------------------------------------------------------------


def test_contradicting_bounds_are_one_error_naming_each_field() -> None:
    with pytest.raises(BoundsError) as err:
        AdaptiveConfig(timeout_min_seconds=5, timeout_max_seconds=1, concurrency_initial=100)
    message = str(err.value)
    assert "timeout_min_seconds (5) must be <= timeout_max_seconds (1)" in message
    assert "concurrency_initial (100)" in message
    with pytest.raises(BoundsError, match="timeout_min_seconds must be > 0"):
        AdaptiveConfig(timeout_min_seconds=0)  # a zero timeout is never allowed
    with pytest.raises(BoundsError, match="finite"):
        AdaptiveConfig(timeout_max_seconds=math.inf)
    with pytest.raises(BoundsError, match="retry_after_min_seconds must be > 0"):
        AdaptiveConfig(retry_after_min_seconds=0)


def test_settings_refuse_contradicting_bounds_at_load() -> None:
    with pytest.raises(ValueError) as err:
        Settings(adaptive_concurrency_min=10, adaptive_concurrency_max=2)
    text = str(err.value)
    assert (
        "JUNCTION_ADAPTIVE_CONCURRENCY_MIN (10) must be <= JUNCTION_ADAPTIVE_CONCURRENCY_MAX"
        in (text)
    )
    with pytest.raises(ValueError, match="JUNCTION_RATE_BUDGETS"):
        Settings(rate_budgets="okta=fast")
    policy = Settings(rate_budgets="okta=20/40").adaptive_policy()
    assert policy is not None and policy.budgets == (("okta", 20.0, 40.0),)
    assert Settings(adaptive_enabled=False).adaptive_policy() is None


# --- timeouts -------------------------------------------------------------------------------


def test_timeout_is_configured_until_enough_samples_then_follows_p99() -> None:
    t = AdaptiveTimeout(CFG)
    assert t.timeout("get", 3.0) == 3.0
    assert t.timeout("get", 50.0) == 10.0  # the configured one is clamped too
    for _ in range(4):
        t.observe("get", 0.5)
    assert t.timeout("get", 3.0) == 3.0  # 4 < min_samples
    t.observe("get", 0.5)
    assert t.timeout("get", 3.0) == pytest.approx(1.0)  # p99 0.5 x margin 2
    t.observe("other", 9.0)
    assert t.timeout("get", 3.0) == pytest.approx(1.0)  # per action


def test_timeout_never_zero_and_never_above_the_cap() -> None:
    t = AdaptiveTimeout(CFG)
    for _ in range(10):
        t.observe("fast", 0.0001)
    assert t.timeout("fast", 3.0) == 0.2
    for _ in range(10):
        t.observe("slow", 1e9)  # a clock leaping forward, or a 100x spike beyond reason
    assert t.timeout("slow", 3.0) == 10.0


def test_timeout_grows_after_a_100x_latency_spike() -> None:
    """Timed-out attempts count at their timeout, so the timeout climbs by the margin per
    window instead of cutting every call off for ever."""
    t = AdaptiveTimeout(CFG)
    for _ in range(50):
        t.observe("get", 0.05)
    timeout = t.timeout("get", 3.0)
    assert timeout == pytest.approx(0.2)  # 0.1 clamped up to the floor
    seen = [timeout]
    for _ in range(6):  # the vendor now answers in 5 s (100x): every attempt times out
        for _ in range(50):
            t.observe_timeout("get", timeout)
        timeout = t.timeout("get", 3.0)
        seen.append(timeout)
    assert seen == sorted(seen) and seen[-1] == 10.0 and seen[-1] > 5.0


def test_latency_window_drops_impossible_samples() -> None:
    w = LatencyWindow(10, ceiling=5.0)
    w.add(-3.0)  # a clock stepped back
    w.add(math.nan)
    assert len(w) == 0 and w.percentile(0.99) is None
    w.add(1.0)
    w.add(100.0)
    assert w.percentile(1.0) == 5.0 and w.percentile(0.5) == 1.0


# --- concurrency ----------------------------------------------------------------------------


def test_aimd_backs_off_on_429_once_per_round_trip_and_probes_up() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(CFG, clock)
    for _ in range(40):  # healthy and busy: +1 per `limit` successes
        limit.on_success(0.1, in_flight=int(limit.limit))
    assert 8 < limit.limit < 10
    before = limit.limit
    limit.on_drop()
    limit.on_drop()  # same round trip: one signal
    assert limit.limit == pytest.approx(before * 0.7)
    clock.now += 1.0
    limit.on_drop()
    assert limit.limit == pytest.approx(before * 0.49)
    for _ in range(50):
        clock.now += 1.0
        limit.on_drop()
    assert limit.limit == 1.0  # the floor


def test_aimd_does_not_grow_while_idle_and_stays_under_max() -> None:
    limit = ConcurrencyLimit(CFG, Clock())
    for _ in range(100):
        limit.on_success(0.1, in_flight=0)
    assert limit.limit == 4.0
    for _ in range(2000):
        limit.on_success(0.1, in_flight=int(limit.limit))
    assert limit.limit == 20.0


def test_rising_latency_backs_off() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(CFG, clock)
    for _ in range(100):
        limit.on_success(0.1, in_flight=int(limit.limit))
    grown = limit.limit
    for _ in range(10):
        clock.now += 1.0
        limit.on_success(1.0, in_flight=int(limit.limit))  # 10x the long-term latency
    assert limit.limit < grown


def test_clock_stepping_back_keeps_backoff_bounded() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(CFG, clock)
    limit.on_drop()
    first = limit.limit
    clock.now -= 10_000.0  # the clock jumps back
    limit.on_drop()
    limit.on_drop()
    assert limit.limit >= first * 0.7 - 1e-9  # at most one more decrease, no collapse


async def test_low_priority_leaves_room_and_high_is_served_first() -> None:
    cfg = AdaptiveConfig(concurrency_initial=4, low_priority_share=0.5)
    limit = ConcurrencyLimit(cfg, Clock())
    assert limit.capacity("low") == 2 and limit.capacity("high") == 4
    await limit.acquire("low")
    await limit.acquire("low")
    assert not limit.try_acquire("low")  # bulk holds its share only
    await limit.acquire("high")
    await limit.acquire("normal")
    order: list[str] = []

    async def wait(p: str) -> None:
        await limit.acquire(p)  # type: ignore[arg-type]
        order.append(p)

    waiting = [asyncio.create_task(wait(p)) for p in ("low", "normal", "high")]
    await asyncio.sleep(0)
    for _ in range(3):
        limit.release()
        await asyncio.sleep(0)
    assert order[:2] == ["high", "normal"]
    for _ in range(2):
        limit.release()
        await asyncio.sleep(0)
    await asyncio.gather(*waiting)
    assert order == ["high", "normal", "low"]


async def test_cancelled_waiter_gives_no_slot_away() -> None:
    limit = ConcurrencyLimit(AdaptiveConfig(concurrency_initial=1), Clock())
    await limit.acquire()
    task = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    limit.release()
    assert limit.in_flight == 0 and limit.try_acquire()


# --- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [(0.0, 0.05), (-5.0, 0.05), (365 * 86400.0, 30.0), (math.nan, 30.0), (2.0, 2.0), (None, 1.0)],
)
def test_retry_after_lies_are_clamped(
    hint: float | None, expected: float, caplog: pytest.LogCaptureFixture
) -> None:
    assert clamp_retry_after(hint, AdaptiveConfig(), service="okta") == expected
    if hint is not None and hint != expected:
        assert "Retry-After" in caplog.text and "clamped" in caplog.text


def test_priority_scope_sets_and_restores() -> None:
    assert current_priority.get() == "normal"
    with priority_scope("high"):
        assert current_priority.get() == "high"
    assert current_priority.get() == "normal"
    with (
        pytest.raises(ValueError, match="priority must be one of high, normal, low"),
        priority_scope("urgent"),  # type: ignore[arg-type]
    ):
        pass


# --- the gate, around real attempts ---------------------------------------------------------


def _answer(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, headers=headers, json={})


@pytest.mark.parametrize("header", ["0", "-3", "31536000", "soon"])
async def test_gate_pause_after_a_lying_retry_after_is_bounded(header: str) -> None:
    clock = Clock()
    gate = AdaptiveGate("okta", AdaptiveConfig(retry_after_max_seconds=5.0), clock=clock)

    async def attempt(timeout: float) -> httpx.Response:
        return _answer(429, header)

    await gate.send("get_user", 3.0, attempt)
    assert 0.05 - 1e-6 <= gate.pause_left() <= 5.0
    clock.now -= 1e6  # a clock jump back cannot stretch the pause
    assert gate.pause_left() <= 5.0
    assert gate.throttled == 1 and gate.limit.drops == 1


async def test_gate_passes_its_timeout_and_counts_timeouts() -> None:
    gate = AdaptiveGate("okta", CFG, clock=Clock())
    given: list[float] = []

    async def attempt(timeout: float) -> httpx.Response:
        given.append(timeout)
        raise httpx.ReadTimeout("slow")

    with pytest.raises(httpx.ReadTimeout):
        await gate.send("get_user", 3.0, attempt)
    assert given == [3.0] and gate.timed_out == 1 and gate.limit.in_flight == 0


def _client(handler: httpx.MockTransport, policy: AdaptivePolicy) -> IntegrationClient:
    return IntegrationClient(
        load_catalog().get("okta"),
        engine=EngineConfig(adaptive=policy),
        transport=handler,
        breaker=CircuitBreaker("okta"),  # this test's own: earlier failures do not count
        retry=RetryPolicy(max_attempts=4, backoff_base=0.0, backoff_max=0.0, jitter=0.0),
    )


async def test_client_timeout_on_non_idempotent_create_is_not_retried() -> None:
    """The adaptive timeout cuts a slow POST, and the idempotency rules still hold: one
    attempt, no blind re-send."""
    gates.clear()
    sent: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        raise httpx.ReadTimeout("no answer", request=request)

    policy = AdaptivePolicy(AdaptiveConfig(timeout_min_seconds=0.01, min_samples=1))
    async with _client(httpx.MockTransport(slow), policy) as client:
        assert client.gate is not None and client.gate is gate_for("okta", policy)
        with pytest.raises(APITimeoutError):
            await client.request("POST", "/api/v1/users", action="create_user", json={})
        assert sent == ["POST"]
        with pytest.raises(APITimeoutError):
            await client.request("GET", "/api/v1/users/x", action="get_user")
        assert sent == ["POST"] + ["GET"] * 4  # reads are retried
    gates.clear()


async def test_client_retry_after_zero_is_not_a_hot_loop() -> None:
    """A vendor answering 429 with Retry-After: 0 forever: a bounded number of attempts,
    each after the floor pause, then the typed error."""
    gates.clear()
    sent = 0

    async def throttled(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return _answer(429, "0")

    policy = AdaptivePolicy(AdaptiveConfig(retry_after_min_seconds=0.01))
    async with _client(httpx.MockTransport(throttled), policy) as client:
        with pytest.raises(RateLimitError):
            await client.request("GET", "/api/v1/users/x", action="get_user")
        assert sent == 4
        assert client.gate is not None and client.gate.limit.limit < 8
    gates.clear()


# --- send rate ------------------------------------------------------------------------------


def _send(rate: AdaptiveRate, clock: Clock, n: int, every: float) -> None:
    for _ in range(n):
        clock.now += every
        rate.delay()
        rate.on_success()


def test_send_rate_is_unlimited_until_a_429_then_cut_and_regrown() -> None:
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    _send(rate, clock, 100, 0.01)  # 100/s, no 429: no pacing at all
    assert rate.rate is None and rate.delay() == 0.0
    rate.on_throttle(rtt=0.05)
    assert rate.rate == pytest.approx(100 * AdaptiveRate.BETA, rel=0.1)
    cut = rate.rate
    assert cut is not None
    rate.on_throttle(rtt=0.05)  # the same burst of 429s: one signal
    assert rate.rate == cut
    seen: dict[int, float] = {}
    start = clock.now
    while clock.now < start + 4.0:  # 4 s of sending as fast as the pacing allows
        clock.now += max(rate.delay(), 0.001)
        rate.on_success()
        seen[int(clock.now - start)] = rate.rate or 0.0
    assert cut < seen[1] < 100  # climbing back, below the rate that was throttled
    assert seen[3] == pytest.approx(100, rel=0.15)  # the plateau near it
    clock.now += 60.0  # idle a minute: no growth beyond twice what is sent
    rate.on_success()
    assert (rate.rate or 0.0) <= max(2 * rate.measured, AdaptiveRate.MIN_RATE) + 1e-9


def test_send_rate_paces_and_keeps_room_for_others() -> None:
    clock = Clock()
    rate = AdaptiveRate(low_share=0.5, clock=clock)
    _send(rate, clock, 50, 0.1)  # 10/s
    rate.on_throttle()
    assert rate.rate is not None
    waits = [rate.delay("normal") for _ in range(3)]  # back to back: spaced by 1/rate
    assert waits[0] <= waits[1] < waits[2]
    clock.now += 10.0
    assert rate.delay("high") == 0.0  # incidents are never paced
    gap = rate.delay("low")
    gap = rate.delay("low") - gap
    assert gap == pytest.approx(1 / (rate.rate * 0.5), rel=0.01)  # high was seen: half
    clock.now += 10.0  # no high call for a while: bulk gets the whole rate again
    gap = rate.delay("low")
    gap = rate.delay("low") - gap
    assert gap == pytest.approx(1 / rate.rate, rel=0.01)


def test_send_rate_survives_clock_jumps() -> None:
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    _send(rate, clock, 50, 0.02)
    rate.on_throttle()
    clock.now -= 1e6  # back: the pacing slot does not stretch into the far future
    assert rate.delay() <= 1.0 / rate.rate + 1.0 + 1e-9  # type: ignore[operator]
    clock.now += 2e6  # forward: growth is capped by twice the measured rate
    rate.on_success()
    assert rate.rate is not None and math.isfinite(rate.rate)


def test_a_sparse_callers_429_does_not_start_pacing() -> None:
    """A workflow sending a request a second that meets a 429 is not over a rate limit:
    the retry policy's Retry-After handles it, and later calls are not paced."""
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    _send(rate, clock, 10, 1.0)
    _send(rate, clock, 3, 0.01)  # a burst of three steps is not a rate either
    rate.on_throttle(rtt=0.2)
    assert rate.rate is None and rate.delay() == 0.0 and rate.delay() == 0.0
    _send(rate, clock, 100, 0.01)  # busy: a 429 now paces
    rate.on_throttle(rtt=0.05)
    assert rate.rate is not None
    clock.now += 60.0
    _send(rate, clock, 3, 1.0)  # quiet again: the next 429 ends the pacing
    rate.on_throttle(rtt=0.05)
    assert rate.rate is None


@pytest.mark.parametrize(("header", "attempts"), [("31536000", 1), ("-7", 4), ("soon", 4)])
async def test_client_retry_after_a_year_fails_at_once_and_negative_is_the_floor(
    header: str, attempts: int
) -> None:
    """A year is beyond any sane wait: the call fails with the typed error at once (no
    sleep); a negative or unparsable hint is retried after the floor, a bounded number of
    times."""
    gates.clear()
    sent = 0

    async def throttled(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return _answer(429, header)

    policy = AdaptivePolicy(AdaptiveConfig(retry_after_min_seconds=0.01))
    async with _client(httpx.MockTransport(throttled), policy) as client:
        with pytest.raises(RateLimitError):
            await client.request("GET", "/api/v1/users/x", action="get_user")
    assert sent == attempts
    gates.clear()


# --- a vendor that insists: sliding-window logs and penalty boxes ---------------------------


def _busy_gate(clock: Clock) -> AdaptiveGate:
    """A gate that has been sending 100 requests/s (a 429 then is about a rate limit)."""
    gate = AdaptiveGate("okta", CFG, clock=clock)
    _send(gate.rate, clock, 30, 0.01)
    return gate


async def _throttle(gate: AdaptiveGate, retry_after: str) -> None:
    async def attempt(timeout: float) -> httpx.Response:
        return _answer(429, retry_after)

    await gate.send("list_groups", 3.0, attempt)


async def test_gate_holds_every_priority_when_a_429_follows_a_429() -> None:
    """The first 429 of a busy client is a rate cut and the floor pause (incidents are not
    held); a request sent after it and throttled too means the vendor counts what is sent
    (a sliding-window log, a penalty box): everyone waits its whole Retry-After."""
    clock = Clock()
    gate = _busy_gate(clock)
    await _throttle(gate, "2")
    assert gate.holds == 0 and gate.pause_left("high") == 0.0
    assert gate.pause_left() == pytest.approx(CFG.retry_after_min_seconds)
    clock.now += 0.1
    await _throttle(gate, "2")
    assert gate.holds == 1
    assert gate.pause_left("high") == pytest.approx(2.0) == gate.pause_left("low")
    clock.now += 2.0
    assert gate.pause_left("high") == 0.0
    clock.now += 5.0  # a lone 429 long after: a cut and the floor again, no hold
    await _throttle(gate, "2")
    assert gate.holds == 1


async def test_gate_holds_when_retry_after_grows() -> None:
    """Answers to requests already in flight when the first 429 came are one burst, unless
    Retry-After grows (a penalty box lengthening): then everyone waits it out."""
    clock = Clock()
    gate = _busy_gate(clock)
    answered = asyncio.Event()

    def in_flight(retry_after: str) -> Callable[[float], Awaitable[httpx.Response]]:
        async def attempt(timeout: float) -> httpx.Response:
            await answered.wait()  # all three sent before the first answer came
            clock.now += 0.01
            return _answer(429, retry_after)

        return attempt

    sends = [gate.send("list_groups", 3.0, in_flight(h)) for h in ("1", "1", "8")]
    tasks = [asyncio.ensure_future(send) for send in sends]
    await asyncio.sleep(0)
    answered.set()
    await asyncio.gather(*tasks)
    assert gate.holds == 1 and gate.held_until == pytest.approx(clock.now + 8.0)


async def test_a_sparse_callers_429s_hold_nobody() -> None:
    clock = Clock()
    gate = AdaptiveGate("okta", CFG, clock=clock)
    await _throttle(gate, "1")
    clock.now += 0.1
    await _throttle(gate, "1")
    assert gate.holds == 0 and gate.pause_left("high") == 0.0


def test_send_rate_cut_follows_what_the_vendor_let_through() -> None:
    """Right after a start a client sends far above the limit; a window limiter lets 40 in
    and refuses the rest, and again after the 429 (it counts them): the cut is to BETA x
    40/s, not to BETA x the send rate."""
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    _send(rate, clock, 40, 0.0025)  # 40 answered at 400/s
    for _ in range(40):  # 40 more sent, throttled
        clock.now += 0.0025
        rate.delay()
    rate.on_throttle(rtt=0.02, insist=True)
    assert rate.rate == pytest.approx(40 * AdaptiveRate.BETA, rel=0.05)
