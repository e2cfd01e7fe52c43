"""Adaptive execution, the pure parts: latency windows, adaptive timeouts, an adaptive
concurrency limit, call priorities and ``Retry-After`` clamping.

Everything here is plain typed Python over an injectable monotonic clock, so the math is
tested without a network or a wall clock. :mod:`integrations.adaptive_gate` puts these
together per integration and the engine (:mod:`integrations.base`) calls it around each
attempt.

- **Timeouts** (:class:`AdaptiveTimeout`): an action's timeout is a high percentile (p99)
  of its recent latencies times a margin, clamped to ``[timeout_min, timeout_max]``;
  with fewer than ``min_samples`` samples, the configured timeout (clamped the same
  way). A timed-out attempt is recorded at its timeout, so after a latency spike the
  timeout grows by the margin per window instead of staying too short for ever.
- **Concurrency** (:class:`ConcurrencyLimit`): AIMD with a latency gradient, after
  Netflix's concurrency-limits: +1 per ``limit`` successes while the limit is used and
  the short-term latency is within ``GROW_TOLERANCE`` of the long-term one (a queue
  forming: stop probing);
  times ``backoff`` on a 429 or a timeout, times ``latency_backoff`` when the short-term
  latency rises ``latency_tolerance`` times above the long-term one; one decrease per
  round trip at most; always within ``[concurrency_min, concurrency_max]``. A latency
  that stays up after ``LEVEL_CUTS`` such cuts is a new level (the vendor's latency
  shifted, not a queue of ours) and becomes the baseline, so the limit grows again.
- **Priorities** (:data:`current_priority`): ``high`` (incident), ``normal``, ``low``
  (bulk). A low-priority call may hold only ``low_priority_share`` of the limit, so a bulk
  job always leaves room for an incident; waiters are served by priority, then in order.
- **Send rate** (:class:`AdaptiveRate`): after 429s at 5 requests/s or more, a CUBIC
  client-side rate (as the AWS SDKs' adaptive mode) finds the vendor's hidden limit.
- **Retry-After** (:func:`clamp_retry_after`): a vendor's hint of 0, a negative number,
  an unparsable value or a year becomes a wait within ``[retry_after_min, retry_after_max]``
  (logged), never a hot loop and never an endless pause (a hint beyond the retry policy's
  cap fails the call instead of waiting).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

log = logging.getLogger(__name__)

Priority = Literal["high", "normal", "low"]
"""How urgent a call is: ``high`` (an incident workflow), ``normal``, ``low`` (bulk)."""

PRIORITIES: tuple[Priority, ...] = get_args(Priority)
PRIORITY_RANK: dict[str, int] = {p: i for i, p in enumerate(PRIORITIES)}
"""Lower is served first."""

current_priority: contextvars.ContextVar[Priority] = contextvars.ContextVar(
    "junction_call_priority", default="normal"
)
"""The priority of calls made by the current task (the workflow runner sets it)."""


@contextmanager
def priority_scope(priority: Priority) -> Iterator[None]:
    """Run the calls inside the ``with`` block at ``priority``.

    Raises:
        ValueError: ``priority`` is not ``high``, ``normal`` or ``low``.
    """
    token = current_priority.set(check_priority(priority))
    try:
        yield
    finally:
        current_priority.reset(token)


def check_priority(value: str) -> Priority:
    """``value`` as a :data:`Priority`.

    Raises:
        ValueError: Not one of ``high``, ``normal``, ``low`` (the message says which are).
    """
    for p in PRIORITIES:
        if value == p:
            return p
    raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {value!r}")


class BoundsError(ValueError):
    """Adaptive bounds that contradict each other; the message names every problem."""


@dataclass(frozen=True)
class AdaptiveConfig:
    """Bounds and gains of adaptive execution (settings ``JUNCTION_ADAPTIVE_*``).

    Attributes:
        timeout_min_seconds: The shortest timeout an action may get (never zero).
        timeout_max_seconds: The longest.
        timeout_percentile: Which latency percentile the timeout follows (0.5-1).
        timeout_margin: Multiplier on that percentile (>= 1).
        min_samples: Samples before the timeout follows them (the configured one before).
        window: Recent samples kept per action.
        concurrency_min: Lowest concurrency limit per integration.
        concurrency_max: Highest.
        concurrency_initial: Where the limit starts.
        backoff: Multiplicative decrease on a 429 or a timeout (0-1).
        latency_backoff: Multiplicative decrease on rising latency (0-1).
        latency_tolerance: Short/long latency ratio that counts as rising (> 1).
        low_priority_share: Share of the limit low-priority calls may hold (0-1].
        retry_after_min_seconds: Floor of a vendor's ``Retry-After`` (no hot loop on 0).
        retry_after_max_seconds: Cap of a vendor's ``Retry-After`` (no endless pause).
        hedge_percentile: Latency percentile after which a read is hedged (0.5-1).
        hedge_max_ratio: Most hedges per call of an action (0: never hedge).
    """

    timeout_min_seconds: float = 1.0
    timeout_max_seconds: float = 30.0
    timeout_percentile: float = 0.99
    timeout_margin: float = 2.0
    min_samples: int = 20
    window: int = 200
    concurrency_min: int = 1
    concurrency_max: int = 64
    concurrency_initial: int = 8
    backoff: float = 0.7
    latency_backoff: float = 0.9
    latency_tolerance: float = 2.0
    low_priority_share: float = 0.75
    retry_after_min_seconds: float = 0.05
    retry_after_max_seconds: float = 30.0
    hedge_percentile: float = 0.95
    hedge_max_ratio: float = 0.1

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise BoundsError("; ".join(problems))

    @classmethod
    def check(cls, values: dict[str, Any], name: Callable[[str], str]) -> list[str]:
        """The problems of a configuration with ``values`` (the rest default), unbuilt.

        Args:
            values: Field values.
            name: How a field is named in messages.
        """
        probe = object.__new__(cls)
        for f in fields(cls):
            value = values.get(f.name, f.default)
            object.__setattr__(probe, f.name, value)
        return probe.problems(name)

    def problems(self, name: Callable[[str], str] = lambda f: f) -> list[str]:
        """Every contradiction or out-of-range value, each naming its field(s).

        Args:
            name: How a field is named in messages (the settings pass
                ``JUNCTION_ADAPTIVE_<FIELD>``).
        """
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                out.append(f"{name(f.name)} must be a finite number, got {value}")
        if out:
            return out

        def need(ok: bool, message: str) -> None:
            if not ok:
                out.append(message)

        tmin, tmax = self.timeout_min_seconds, self.timeout_max_seconds
        need(tmin > 0, f"{name('timeout_min_seconds')} must be > 0, got {tmin:g}")
        need(
            tmin <= tmax,
            f"{name('timeout_min_seconds')} ({tmin:g}) must be <= "
            f"{name('timeout_max_seconds')} ({tmax:g})",
        )
        for key in ("timeout_percentile", "hedge_percentile"):
            q = getattr(self, key)
            need(0.5 <= q <= 1.0, f"{name(key)} must be in [0.5, 1], got {q:g}")
        need(
            self.timeout_margin >= 1.0,
            f"{name('timeout_margin')} must be >= 1, got {self.timeout_margin:g}",
        )
        need(self.min_samples >= 1, f"{name('min_samples')} must be >= 1")
        need(
            self.window >= self.min_samples,
            f"{name('window')} ({self.window}) must be >= {name('min_samples')} "
            f"({self.min_samples})",
        )
        cmin, cmax, cinit = self.concurrency_min, self.concurrency_max, self.concurrency_initial
        need(cmin >= 1, f"{name('concurrency_min')} must be >= 1, got {cmin}")
        need(
            cmin <= cmax,
            f"{name('concurrency_min')} ({cmin}) must be <= {name('concurrency_max')} ({cmax})",
        )
        need(
            cmin <= cinit <= cmax,
            f"{name('concurrency_initial')} ({cinit}) must be within "
            f"[{name('concurrency_min')}, {name('concurrency_max')}] ([{cmin}, {cmax}])",
        )
        for key in ("backoff", "latency_backoff"):
            b = getattr(self, key)
            need(0 < b < 1, f"{name(key)} must be in (0, 1), got {b:g}")
        need(
            self.latency_tolerance > 1,
            f"{name('latency_tolerance')} must be > 1, got {self.latency_tolerance:g}",
        )
        need(
            0 < self.low_priority_share <= 1,
            f"{name('low_priority_share')} must be in (0, 1], got {self.low_priority_share:g}",
        )
        ramin, ramax = self.retry_after_min_seconds, self.retry_after_max_seconds
        need(ramin > 0, f"{name('retry_after_min_seconds')} must be > 0, got {ramin:g}")
        need(
            ramin <= ramax,
            f"{name('retry_after_min_seconds')} ({ramin:g}) must be <= "
            f"{name('retry_after_max_seconds')} ({ramax:g})",
        )
        need(
            0 <= self.hedge_max_ratio <= 1,
            f"{name('hedge_max_ratio')} must be in [0, 1], got {self.hedge_max_ratio:g}",
        )
        return out


def clamp(value: float, low: float, high: float) -> float:
    """``value`` within ``[low, high]`` (a NaN becomes ``high``: the safe side of a wait)."""
    if math.isnan(value):
        return high
    return min(max(value, low), high)


# --- latency ------------------------------------------------------------------------------


class LatencyWindow:
    """The last ``size`` latencies (seconds) of one action.

    A sample that cannot be a latency (negative or NaN: a clock stepping back) is dropped;
    one above ``ceiling`` (a clock leaping forward: no call outlives its timeout) is
    recorded at the ceiling.
    """

    def __init__(self, size: int, ceiling: float) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._ceiling = ceiling
        self._sorted: list[float] | None = None

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, seconds: float) -> None:
        """Record one latency."""
        if math.isnan(seconds) or seconds < 0:
            return
        self._samples.append(min(seconds, self._ceiling))
        self._sorted = None

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (nearest rank), or ``None`` without samples."""
        if not self._samples:
            return None
        if self._sorted is None:
            self._sorted = sorted(self._samples)
        ordered = self._sorted
        index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return ordered[index]


class AdaptiveTimeout:
    """Timeouts of one integration's actions, each following its own latencies.

    Args:
        config: The bounds.
    """

    def __init__(self, config: AdaptiveConfig) -> None:
        self.config = config
        self._windows: dict[str, LatencyWindow] = {}

    def window(self, action: str) -> LatencyWindow:
        """The latency window of ``action`` (created empty)."""
        found = self._windows.get(action)
        if found is None:
            found = self._windows[action] = LatencyWindow(
                self.config.window, self.config.timeout_max_seconds
            )
        return found

    def observe(self, action: str, seconds: float) -> None:
        """Record a completed attempt's latency (any answer, a 5xx too)."""
        self.window(action).add(seconds)

    def observe_timeout(self, action: str, timeout: float) -> None:
        """Record a timed-out attempt: it took at least ``timeout`` (a censored sample)."""
        self.window(action).add(timeout)

    def timeout(self, action: str, configured: float) -> float:
        """The read timeout of ``action``'s next attempt, within the bounds.

        Args:
            action: The action.
            configured: The client's (or call's) timeout, used before enough samples.
        """
        cfg = self.config
        low, high = cfg.timeout_min_seconds, cfg.timeout_max_seconds
        window = self._windows.get(action)
        if window is None or len(window) < cfg.min_samples:
            return clamp(configured, low, high)
        p = window.percentile(cfg.timeout_percentile)
        assert p is not None  # the window has min_samples >= 1 samples
        return clamp(p * cfg.timeout_margin, low, high)

    def hedge_delay(self, action: str) -> float | None:
        """When to hedge a read of ``action``: its latency percentile (``None``: too few
        samples to know, so no hedge)."""
        window = self._windows.get(action)
        if window is None or len(window) < self.config.min_samples:
            return None
        p = window.percentile(self.config.hedge_percentile)
        return None if p is None else max(p, 0.001)


# --- concurrency --------------------------------------------------------------------------


class ConcurrencyLimit:
    """An adaptive limit of concurrent calls to one integration, with priority waiting.

    Use ``await limit.acquire(priority)`` then ``limit.release()`` (or
    :meth:`on_success`/:meth:`on_drop` before releasing, to adapt the limit).

    Args:
        config: Bounds and gains.
        clock: Monotonic seconds (injectable).
    """

    SHORT_ALPHA = 0.3
    LONG_ALPHA = 0.05
    LONG_ALPHA_UP = 0.02
    GROW_TOLERANCE = 1.5  # short/long latency above which the limit stops growing
    MIN_COOLDOWN = 0.01  # seconds between decreases before any latency is known
    LEVEL_CUTS = 3  # latency cuts in a row after which a higher latency is the new level
    LEVEL_KEPT = 0.9  # ... if it stayed above this share of where it was at the first

    def __init__(self, config: AdaptiveConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self.limit = float(config.concurrency_initial)
        self.in_flight = 0
        self._short: float | None = None
        self._long: float | None = None
        self._last_decrease = -math.inf
        self._rising_cuts = 0
        self._rising_ref = 0.0
        self.level_resets = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None], Priority]] = []
        self._seq = itertools.count()
        self.drops = 0

    # -- the limit

    def capacity(self, priority: Priority) -> int:
        """Calls of ``priority`` that may be in flight at once (low gets a share)."""
        whole = max(self.config.concurrency_min, math.floor(self.limit))
        if priority == "low":
            return max(1, math.floor(whole * self.config.low_priority_share))
        return whole

    def _bound(self) -> None:
        self.limit = clamp(
            self.limit, float(self.config.concurrency_min), float(self.config.concurrency_max)
        )

    def _decrease(self, factor: float, sent_at: float | None = None) -> bool:
        """Decrease once per round trip at most (a burst of 429s is one signal), and not
        for a call sent before the last decrease (it reports the old limit)."""
        now = self._clock()
        rtt = max(self._short or 0.0, self.MIN_COOLDOWN)
        if now < self._last_decrease:  # the clock stepped back: start the cool-down again
            self._last_decrease = now
        if now - self._last_decrease < rtt:
            return False
        if sent_at is not None and sent_at <= self._last_decrease <= now:
            return False
        self._last_decrease = now
        self.limit *= factor
        self._bound()
        return True

    def on_success(self, latency: float, *, in_flight: int | None = None) -> None:
        """A call answered (not a 429) in ``latency`` seconds.

        Args:
            latency: The call's latency.
            in_flight: Calls in flight when it was sent (default: now); the limit grows
                only while it is used, so an idle client does not inflate it.
        """
        if math.isnan(latency) or latency < 0:
            return
        self._short = (
            latency
            if self._short is None
            else self._short + self.SHORT_ALPHA * (latency - self._short)
        )
        if self._long is None:
            self._long = latency
        else:  # the baseline creeps up slower than it falls, so a queue cannot drag it up
            alpha = self.LONG_ALPHA_UP if latency > self._long else self.LONG_ALPHA
            self._long += alpha * (latency - self._long)
        busy = self.in_flight if in_flight is None else in_flight
        if self._long > 0 and self._short > self.config.latency_tolerance * self._long:
            if self._rising_cuts >= self.LEVEL_CUTS and self._short >= self.LEVEL_KEPT * (
                self._rising_ref
            ):
                # The latency stayed up although the concurrency came down: the vendor's
                # latency shifted (not our queue), so it is the new baseline.
                self._long = self._short
                self._rising_cuts = 0
                self.level_resets += 1
            elif self._decrease(self.config.latency_backoff):
                if not self._rising_cuts:
                    self._rising_ref = self._short
                # Latency that falls with the cuts is our own queue: keep cutting.
                self._rising_cuts = (
                    1
                    if self._short < self.LEVEL_KEPT * self._rising_ref
                    else (self._rising_cuts + 1)
                )
                self._rising_ref = max(self._rising_ref, self._short)
                return
        else:
            self._rising_cuts = 0
        queueing = self._short > self.GROW_TOLERANCE * self._long
        if busy + 1 >= math.floor(self.limit) * 0.5 and not queueing:
            self.limit += 1.0 / max(self.limit, 1.0)
            self._bound()
        self._wake()

    @property
    def rtt(self) -> float:
        """The short-term latency average (0 before any answer)."""
        return self._short or 0.0

    def on_drop(self, sent_at: float | None = None) -> None:
        """A call was throttled (429) or timed out: back off multiplicatively.

        Args:
            sent_at: When the call was sent (clock seconds); a call sent before the last
                decrease is one signal with it (a burst of timeouts at a latency shift
                cuts once, not once per call).
        """
        self.drops += 1
        self._decrease(self.config.backoff, sent_at)

    # -- admission

    def try_acquire(self, priority: Priority = "normal") -> bool:
        """Take a slot now if one is free for ``priority`` and nobody more urgent waits."""
        if self._waiters and self._waiters[0][0] <= PRIORITY_RANK[priority]:
            return False
        if self.in_flight < self.capacity(priority):
            self.in_flight += 1
            return True
        return False

    async def acquire(self, priority: Priority = "normal") -> None:
        """Wait for a slot; more urgent callers first, then in arrival order."""
        if self.try_acquire(priority):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (PRIORITY_RANK[priority], next(self._seq), future, priority)
        heapq.heappush(self._waiters, entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release()  # granted as we were cancelled: give the slot back
            else:
                self._waiters = [w for w in self._waiters if w[2] is not future]
                heapq.heapify(self._waiters)
            raise

    def release(self) -> None:
        """Give a slot back."""
        self.in_flight = max(0, self.in_flight - 1)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            _, _, future, priority = self._waiters[0]
            if future.done():
                heapq.heappop(self._waiters)
                continue
            if self.in_flight >= self.capacity(priority):
                return
            heapq.heappop(self._waiters)
            self.in_flight += 1
            future.set_result(None)


# --- rate ---------------------------------------------------------------------------------


class AdaptiveRate:
    """A client-side send rate that finds a vendor's hidden rate limit (CUBIC, as the AWS
    SDKs' adaptive retry mode does).

    Unlimited until the first 429 met at ``MIN_PACED`` requests/s or more over the last
    ``SPAN`` seconds (a sparse caller's 429 is left to the retry policy's
    ``Retry-After``, and ends any pacing left from busier times); then the rate drops to
    ``BETA`` times the rate that was too much and grows back along a cubic curve to
    ``TARGET`` of it, stays there ``PLATEAU`` seconds (so probing past it is rare: a
    limiter that counts rejected requests punishes every probe) and then grows by
    ``PROBE`` of it a second (so a raised limit is found). When the vendor insists (it
    counts rejected requests), the rate that was too much is what it let through at its
    best over the last ``PEAK_SPAN`` seconds, not the send rate (many times the limit
    after a start) nor the answers of the last second alone (few, after a hold). Never
    above twice the measured rate, never below ``MIN_RATE``. ``low`` calls are paced at
    ``low_share`` of the rate while other calls were seen recently, so the vendor's own
    bucket keeps tokens for them.

    Args:
        low_share: Share of the rate low-priority calls get beside others.
        clock: Monotonic seconds.
    """

    BETA = 0.7
    SCALE = 2.0  # requests/s per s^3: back to TARGET within ~2.5 s of a cut at 40/s
    TARGET = 0.9  # share of the throttled rate the curve flattens at
    PLATEAU = 10.0  # seconds at TARGET before probing beyond it
    PROBE = 0.02  # then growth per second, a share of the target (a raised limit is found)
    PEAK_SPAN = 3.0  # seconds over which the best admitted second is remembered
    MIN_RATE = 0.5
    MIN_PACED = 5.0  # requests/s (over SPAN) below which a 429 does not pace
    SPAN = 2.0  # seconds over which MIN_PACED is judged (a burst of three is not a rate)
    BUCKET = 0.5  # seconds per send-rate measurement
    RECENT = 5.0  # seconds a normal or high call keeps low ones at their share
    ADMIT_SPAN = 1.0  # seconds over which answered (not throttled) calls are counted

    def __init__(self, low_share: float = 0.75, clock: Callable[[], float] = time.monotonic):
        self.low_share = low_share
        self._clock = clock
        self.rate: float | None = None
        self.measured = 0.0
        self._w_max = 0.0
        self._last_throttle = 0.0
        self._count = 0
        self._recent: deque[float] = deque(maxlen=int(self.MIN_PACED * self.SPAN) + 1)
        self._bucket_start = clock()
        self._next_send = 0.0
        self._others_seen = -math.inf
        self._admitted: deque[float] = deque(maxlen=4096)
        self._peak = 0  # the most answers admitted within ADMIT_SPAN lately
        self._peak_at = -math.inf
        self._admit_since = self._last_admit = -math.inf
        self._plateau = 0.0
        self._plateau_cut = -math.inf

    def _measure(self, now: float) -> None:
        elapsed = now - self._bucket_start
        if elapsed < 0:  # the clock stepped back: restart the measurement
            self._bucket_start, self._count = now, 0
        elif elapsed >= self.BUCKET:
            current = self._count / elapsed
            self.measured = current if not self.measured else 0.8 * current + 0.2 * self.measured
            self._bucket_start, self._count = now, 0

    def _sent_rate(self, now: float) -> float:
        """The measured send rate, or the current bucket's before a first measurement."""
        if self.measured:
            return self.measured
        elapsed = now - self._bucket_start
        return self._count / elapsed if elapsed > 0.01 else 0.0

    def delay(self, priority: Priority = "normal") -> float:
        """Reserve the next send slot: seconds to wait before sending (0: now)."""
        now = self._clock()
        self._measure(now)
        self._count += 1
        self._recent.append(now)
        if priority != "low":
            self._others_seen = now
        if self.rate is None or priority == "high":
            return 0.0
        rate = self.rate
        if priority == "low" and 0 <= now - self._others_seen < self.RECENT:
            rate *= self.low_share
        if self._next_send > now + 1.0 / rate + 1.0:  # a clock stepped back
            self._next_send = now
        slot = max(now, self._next_send)
        self._next_send = slot + 1.0 / rate
        return slot - now

    def on_throttle(
        self, rtt: float = 0.0, *, insist: bool = False, sent_at: float | None = None
    ) -> None:
        """A 429: remember the rate that was too much and cut to ``BETA`` of it.

        Args:
            rtt: The recent round trip (seconds): 429s within one of the last cut answer
                requests sent before it, and are one signal.
            insist: The vendor refused again after a 429 (it counts rejected requests):
                cut to ``BETA`` of what it let through at its best lately.
            sent_at: When the throttled request was sent; one sent before the last cut
                was paced at the old rate and is one signal with it.
        """
        now = self._clock()
        self._measure(now)
        sent = self._sent_rate(now)
        if not self.busy(now):  # a sparse caller is not what a rate limit is about
            self.rate = None  # Retry-After only
            return
        if sent_at is not None and self.rate is not None and sent_at <= self._last_throttle:
            return
        base = sent or (self.rate or self.MIN_RATE)
        admitted = max(self.admitted(now), self.peak(now))
        confirmed = self.confirmed(now)
        at_plateau = (
            confirmed
            and self.rate is not None
            and self.rate <= self.TARGET * self._w_max * (1 + 1e-6)
            and not 0 <= now - self._plateau_cut < self.PLATEAU
        )
        if at_plateau and (insist or now - self._last_throttle >= rtt):
            # A 429 at the plateau, below the known limit, the first in a while: the
            # pacing's jitter, not a lower limit, which stays what it was (a lower one
            # throttles again within PLATEAU and is measured then).
            self._plateau_cut = now
            base = self._w_max
        elif insist and admitted:
            # The vendor counts what is sent (it refused a request sent after a 429): what
            # it let through at its best lately is its limit, seen from here; cutting the
            # send rate step by step would keep sending into its window, and the last
            # second alone (after a hold, or a start) understates it.
            base = admitted / self.ADMIT_SPAN
        elif 0 <= now - self._last_throttle < max(rtt, 1.0 / max(base, self.MIN_RATE)):
            return  # the same burst of 429s: one signal
        elif self.rate is not None:
            base = min(base, self.rate)
        # Only an estimate made over a whole span (not at a start) earns the plateau; a
        # rough one is probed past along the cubic curve.
        self._plateau = self.PLATEAU if confirmed else 0.0
        self._w_max = base
        self._last_throttle = now
        self.rate = max(self.MIN_RATE, base * self.BETA)

    def busy(self, now: float | None = None) -> bool:
        """Whether ``MIN_PACED`` requests/s or more were sent over the last ``SPAN``."""
        now = self._clock() if now is None else now
        window = self._recent
        return len(window) == window.maxlen and 0 <= now - window[0] <= self.SPAN

    def admitted(self, now: float) -> int:
        """Answers that were not 429s over the last ``ADMIT_SPAN`` seconds."""
        while self._admitted and not 0 <= now - self._admitted[0] <= self.ADMIT_SPAN:
            self._admitted.popleft()
        return len(self._admitted)

    def confirmed(self, now: float) -> bool:
        """Whether answers have come for ``ADMIT_SPAN`` or longer without a long gap, so
        what was admitted over a span measures the vendor's limit."""
        return (
            0 <= now - self._last_admit <= 2 * self.ADMIT_SPAN
            and now - self._admit_since >= self.ADMIT_SPAN
        )

    def peak(self, now: float) -> int:
        """The most answers admitted within ``ADMIT_SPAN`` over the last ``PEAK_SPAN``."""
        return self._peak if 0 <= now - self._peak_at <= self.PEAK_SPAN else 0

    def on_success(self) -> None:
        """An answer that was not a 429: grow along the cubic curve."""
        now = self._clock()
        if not 0 <= now - self._last_admit <= 2 * self.ADMIT_SPAN:
            self._admit_since = now  # answers resumed after a gap (or the first)
        self._last_admit = now
        self._admitted.append(now)
        count = self.admitted(now)
        if count >= self.peak(now):
            self._peak, self._peak_at = count, now
        if self.rate is None:
            return
        self._measure(now)
        t = max(0.0, now - self._last_throttle)
        target = self.TARGET * self._w_max
        k = (max(0.0, target - self.BETA * self._w_max) / self.SCALE) ** (1 / 3)
        d = t - k
        if d <= 0 or not self._plateau:
            cubic = self.SCALE * d**3 + target  # concave to the target; convex beyond
        else:  # flat at the target for PLATEAU seconds, then probe beyond it slowly
            cubic = target * (1 + self.PROBE * max(0.0, d - self._plateau))
        ceiling = 2 * self.measured if self.measured else cubic
        self.rate = max(self.MIN_RATE, min(cubic, ceiling))


# --- Retry-After --------------------------------------------------------------------------


def clamp_retry_after(
    hint: float | None, config: AdaptiveConfig, *, service: str = "", fallback: float = 1.0
) -> float:
    """A vendor's ``Retry-After`` as a sane wait, logging what was clamped.

    Args:
        hint: Seconds the vendor asked for (``None``: none or unparsable).
        config: The bounds (``retry_after_min_seconds``, ``retry_after_max_seconds``).
        service: For the log line.
        fallback: The wait without a hint (clamped too).

    Returns:
        Seconds within ``[retry_after_min_seconds, retry_after_max_seconds]``.
    """
    low, high = config.retry_after_min_seconds, config.retry_after_max_seconds
    if hint is None:
        return clamp(fallback, low, high)
    wait = clamp(hint, low, high)
    if wait != hint:
        log.warning(
            "%s: Retry-After %r clamped to %.3gs (bounds %.3g-%.3gs)",
            service or "vendor",
            hint,
            wait,
            low,
            high,
        )
    return wait


@dataclass(frozen=True)
class AdaptivePolicy:
    """Adaptive execution of an engine (:class:`~integrations.config.EngineConfig`).

    Attributes:
        config: Bounds and gains.
        budget_path: The host-wide rate budget's SQLite file (``None``: no budget).
        budgets: ``(service, rate per second, burst)`` of every budgeted service.
    """

    config: AdaptiveConfig = AdaptiveConfig()
    budget_path: str | None = None
    budgets: tuple[tuple[str, float, float], ...] = ()
