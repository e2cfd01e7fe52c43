"""The adaptive gate of one integration: what the engine does around each attempt.

:class:`AdaptiveGate` joins the pure parts of :mod:`integrations.adaptive` for one
service, shared by every client of it in the process (:data:`gates`, like the circuit
breakers): before an attempt it waits out the short pause that follows a 429 (the floor
of ``Retry-After``; the throttled request itself waits the vendor's clamped
``Retry-After`` through the retry policy) or, when the vendor keeps saying no to a busy
client (a request sent after a 429 is throttled too, or ``Retry-After`` grows), the
vendor's whole ``Retry-After``, at every priority: a sliding-window log counts the
rejected requests and a penalty box lengthens while a client keeps sending, so sending
into them only digs deeper. A client already paced at a rate measured over a whole second
is not held for its overshoot (its rate cut lets the window drain), unless the 429s keep
coming, ``Retry-After`` grows, or they follow a hold. Then it takes a token of the host-wide
:class:`~integrations.budget.RateBudget` (when the service has one), a slot of the
adaptive concurrency limit and its turn in the adaptive send rate, at the caller's
priority (:data:`~integrations.adaptive.current_priority`); it gives the attempt its
adaptive timeout; after it, it feeds the latency, the 429 or the timeout back.

A timeout changes only how long an attempt waits: whether a timed-out attempt is retried
is still the retry policy's decision (never blind for a non-idempotent create, see
:mod:`integrations.idempotency`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from integrations.adaptive import (
    AdaptiveConfig,
    AdaptivePolicy,
    AdaptiveRate,
    AdaptiveTimeout,
    ConcurrencyLimit,
    Priority,
    clamp_retry_after,
    current_priority,
)
from integrations.budget import BucketSpec, RateBudget
from integrations.hedge import Hedger
from integrations.retry import parse_retry_after


class AdaptiveGate:
    """Adaptive timeouts, concurrency, budget and pauses of one integration.

    Args:
        service: The integration.
        config: Bounds and gains.
        budget: The host-wide budget (``None``: none).
        clock: Monotonic seconds (injectable).
    """

    STORM_SPAN = 2.0  # seconds within which a second 429 means the vendor insists
    STORM_COUNT = 5  # 429s within a second that hold a paced client too

    def __init__(
        self,
        service: str,
        config: AdaptiveConfig,
        *,
        budget: RateBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.config = config
        self.budget = budget if budget is not None and budget.limited(service) else None
        self._clock = clock
        self.timeouts = AdaptiveTimeout(config)
        self.limit = ConcurrencyLimit(config, clock)
        self.rate = AdaptiveRate(config.low_priority_share, clock)
        self.hedger = Hedger(config, clock)
        self.paused_until = 0.0
        self.held_until = 0.0
        self.throttled = 0
        self.timed_out = 0
        self.holds = 0
        self.sending = 0
        self._last_429 = -math.inf
        self._last_hint: float | None = None
        self._storm: deque[float] = deque(maxlen=self.STORM_COUNT)

    def pause_left(self, priority: Priority = "normal") -> float:
        """Seconds left of the current pause for ``priority`` (never above the cap):
        a vendor's held ``Retry-After`` for everyone, the short floor for all but ``high``."""
        now = self._clock()
        cap = self.config.retry_after_max_seconds
        if self.paused_until - now > cap:  # a clock stepped back: restart at the cap
            self.paused_until = now + cap
        if self.held_until - now > cap:
            self.held_until = now + cap
        until = self.held_until if priority == "high" else max(self.held_until, self.paused_until)
        return max(0.0, until - now)

    def pause(self, seconds: float) -> None:
        """Hold ``normal`` and ``low`` calls for ``seconds`` (already clamped)."""
        self.paused_until = max(self.paused_until, self._clock() + seconds)
        if self.budget is not None:
            self.budget.pause(self.service, seconds)

    def hold(self, seconds: float) -> None:
        """Hold every call for ``seconds`` (the vendor's ``Retry-After``, already clamped)."""
        self.holds += 1
        self.held_until = max(self.held_until, self._clock() + seconds)
        if self.budget is not None:
            self.budget.pause(self.service, seconds)

    def _throttled(self, response: httpx.Response, sent_at: float) -> None:
        """A 429: slow down; hold everyone for ``Retry-After`` when the vendor insists."""
        self.throttled += 1
        now = self._clock()
        busy = self.rate.busy(now)
        hint = parse_retry_after(response.headers.get("Retry-After"))
        wait = clamp_retry_after(hint, self.config, service=self.service)
        since = now - self._last_429
        again = sent_at > self._last_429 and since < self.STORM_SPAN
        last = self._last_hint
        growing = last is not None and wait > last and since < last + self.STORM_SPAN
        held = now - self.held_until < self.STORM_SPAN  # throttled right after a hold
        self._last_429, self._last_hint = now, wait
        self._storm.append(now)
        storm = len(self._storm) == self._storm.maxlen and now - self._storm[0] < 1.0
        insist = growing or (again and (busy or held))
        paced = self.rate.rate is not None and self.rate.confirmed(now)
        self.limit.on_drop(sent_at)
        self.rate.on_throttle(self.limit.rtt, insist=insist, sent_at=sent_at)
        # A paced client's 429 (its rate measured over a whole span) is its pacing's
        # overshoot: the rate cut lets the vendor's window drain in a fraction of a
        # second, and holding everyone for a Retry-After of whole seconds would waste
        # most of one. Hold when the vendor insists on an unpaced client (a start), its
        # Retry-After grows (a penalty box), it refuses right after a hold, or 429s keep
        # coming despite the cut.
        if insist and (growing or held or storm or not paced):
            self.hold(wait)
        else:
            # The throttled request itself waits the vendor's Retry-After (the retry
            # policy); everyone else only slows down (the rate cut) and waits the floor,
            # so a Retry-After of 0 cannot make a hot loop. A lie is logged and clamped.
            self.pause(self.config.retry_after_min_seconds)

    async def send(
        self,
        action: str,
        configured: float | None,
        attempt: Callable[[float], Awaitable[httpx.Response]],
    ) -> httpx.Response:
        """Run one attempt through the gate.

        Args:
            action: The action (its latencies set its timeout).
            configured: The configured read timeout, used until there are enough samples
                (``None``, no timeout: the longest bound).
            attempt: Sends the request with the given read timeout and reads the answer.

        Returns:
            The answer (a 429 too: the engine raises it as usual).
        """
        priority = current_priority.get()
        while (left := self.pause_left(priority)) > 0:
            await asyncio.sleep(left)
        if self.budget is not None:
            await self.budget.acquire(self.service, priority)
        await self.limit.acquire(priority)
        try:
            wait = self.rate.delay(priority)
            if wait > 0:
                await asyncio.sleep(wait)
            # A hold that began while this call queued for its slot applies to it too:
            # sending it anyway is one more 429 counted against the client.
            while (left := self.pause_left(priority)) > 0:
                await asyncio.sleep(left)
        except BaseException:
            self.limit.release()
            raise
        fallback = self.config.timeout_max_seconds if configured is None else configured
        timeout = self.timeouts.timeout(action, fallback)
        # Requests on the wire (not those holding a slot while paced): the limit grows
        # only while that many are used, so a rate-limited phase does not inflate it.
        self.sending += 1
        busy = self.sending
        started = self._clock()
        try:
            response = await attempt(timeout)
        except httpx.TimeoutException as exc:
            if not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                self.timed_out += 1
                self.timeouts.observe_timeout(action, timeout)
                self.limit.on_drop(started)
            raise
        finally:
            self.sending -= 1
            self.limit.release()
        elapsed = self._clock() - started
        if response.status_code == 429:
            self._throttled(response, started)
        else:
            self.timeouts.observe(action, elapsed)
            self.limit.on_success(elapsed, in_flight=busy)
            self.rate.on_success()
        return response


class GateRegistry:
    """One gate per (service, configuration), shared by every client in the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[tuple[str, AdaptivePolicy], AdaptiveGate] = {}
        self._budgets: dict[str, RateBudget] = {}

    def get(self, service: str, policy: AdaptivePolicy) -> AdaptiveGate:
        """The gate of ``service`` under ``policy`` (made on first use).

        Args:
            service: The integration.
            policy: Bounds, gains and the shared budget.
        """
        config, budget_path, budgets = policy.config, policy.budget_path, policy.budgets
        key = (service, policy)
        with self._lock:
            gate = self._gates.get(key)
            if gate is None:
                budget = None
                if budget_path is not None and any(name == service for name, _, _ in budgets):
                    budget = self._budgets.get(budget_path)
                    if budget is None:
                        specs = {name: BucketSpec(rate, burst) for name, rate, burst in budgets}
                        budget = self._budgets[budget_path] = RateBudget(
                            Path(budget_path),
                            specs,
                            reserve=1.0 - config.low_priority_share,
                            max_pause=config.retry_after_max_seconds,
                        )
                gate = self._gates[key] = AdaptiveGate(service, config, budget=budget)
            return gate

    def all(self) -> list[AdaptiveGate]:
        """Every gate made so far."""
        with self._lock:
            return list(self._gates.values())

    def clear(self) -> None:
        """Forget every gate and close the budgets (tests, benches)."""
        with self._lock:
            self._gates.clear()
            for budget in self._budgets.values():
                budget.close()
            self._budgets.clear()


gates = GateRegistry()
"""The process's gates."""


def gate_for(service: str, policy: AdaptivePolicy | None) -> AdaptiveGate | None:
    """The process's gate of ``service`` under ``policy`` (``None``: adaptive execution off)."""
    return None if policy is None else gates.get(service, policy)
