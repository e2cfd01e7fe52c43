"""Per-service circuit breakers (closed → open → half-open → closed).

Written here rather than taken from pybreaker/aiobreaker because we need: asyncio
support without tornado (pybreaker's async path), an injectable clock so tests and the
sandbox can step time, state that is observable and shared by every client of a service
in the process (the registry below), and a choice of *what* counts as a failure (5xx,
timeouts and connection errors, not a 404 or a 401). The whole state machine is the
~60 lines below.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    """Breaker states, as recorded in metrics."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSnapshot:
    """What a breaker looks like at one instant."""

    service: str
    state: BreakerState
    consecutive_failures: int
    opened_at: float | None
    retry_in: float


StateListener = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    """A consecutive-failure circuit breaker.

    Args:
        service: The service it guards.
        failure_threshold: Consecutive failures that open it.
        reset_timeout: Seconds an open breaker waits before allowing one trial call.
        clock: Monotonic time source (injectable for tests).
    """

    def __init__(
        self,
        service: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self._listeners: list[StateListener] = []

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(service, old, new)`` on every state change."""
        self._listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker past its timeout reads as half-open."""
        with self._lock:
            return self._current()

    def _current(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._opened_at is not None
            and self._clock() - self._opened_at >= self.reset_timeout
        ):
            return BreakerState.HALF_OPEN
        return self._state

    def _set(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        if old is not new:
            for listener in self._listeners:
                listener(self.service, old, new)

    def allow(self) -> tuple[bool, float]:
        """Ask to make a call.

        Returns:
            ``(allowed, retry_in)``: in half-open only one trial call is allowed at a
            time; ``retry_in`` is the seconds until an open breaker allows a trial.
        """
        with self._lock:
            current = self._current()
            if current is BreakerState.CLOSED:
                return True, 0.0
            if current is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._set(BreakerState.HALF_OPEN)
                self._trial_in_flight = True
                return True, 0.0
            assert self._opened_at is not None
            return False, max(0.0, self.reset_timeout - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        """A call succeeded: close the breaker and reset the failure count."""
        with self._lock:
            self._failures = 0
            self._trial_in_flight = False
            self._opened_at = None
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """A call failed in a way that counts (5xx, timeout, connection)."""
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)

    def release(self) -> None:
        """A trial call ended without a verdict (e.g. a 4xx): let another trial run."""
        with self._lock:
            self._trial_in_flight = False

    def reset(self) -> None:
        """Force the breaker closed (operator action, tests)."""
        self.record_success()

    def snapshot(self) -> BreakerSnapshot:
        """Return the current state for display or metrics."""
        with self._lock:
            current = self._current()
            retry_in = 0.0
            if current is BreakerState.OPEN and self._opened_at is not None:
                retry_in = max(0.0, self.reset_timeout - (self._clock() - self._opened_at))
            return BreakerSnapshot(self.service, current, self._failures, self._opened_at, retry_in)


class BreakerRegistry:
    """One breaker per service, shared by every client in the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(
        self, service: str, *, failure_threshold: int = 5, reset_timeout: float = 30.0
    ) -> CircuitBreaker:
        """Return the service's breaker, creating it with these limits on first use."""
        with self._lock:
            breaker = self._breakers.get(service)
            if breaker is None:
                breaker = CircuitBreaker(
                    service, failure_threshold=failure_threshold, reset_timeout=reset_timeout
                )
                self._breakers[service] = breaker
            return breaker

    def snapshots(self) -> list[BreakerSnapshot]:
        """Snapshots of every breaker created so far."""
        with self._lock:
            breakers = list(self._breakers.values())
        return [b.snapshot() for b in breakers]

    def clear(self) -> None:
        """Forget every breaker (tests)."""
        with self._lock:
            self._breakers.clear()


breakers = BreakerRegistry()
