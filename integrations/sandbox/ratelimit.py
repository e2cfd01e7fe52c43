"""The sandbox's hidden rate limits, and the headers a sandboxed vendor sends with them.

Limiters (one per service, configured by ``rate_limit`` in a fault profile or through
``POST /_admin/faults/<service>``, see :class:`~integrations.sandbox.profile.RateLimitSpec`):

- ``token_bucket`` (the default): a rejected request costs nothing, so a client that
  hammers loses nothing by it. Stripe's and GitLab's published limiters work this way.
- ``sliding_log``: every request, a rejected one too, is logged and counts against the
  window, so a client that keeps sending past the limit keeps itself locked out until it
  stops for a window. Many vendor and API-gateway limiters are such logs (a Redis sorted
  set that records a request before counting; Okta's and Slack's per-minute limits count
  attempts, not successes).
- ``penalty_after``: after that many 429s within one window the service answers every
  request with 429 for ``penalty_seconds`` (a penalty box); a client that keeps sending
  ``penalty_after`` more requests while boxed doubles the box, up to
  ``penalty_max_seconds``, and ``Retry-After`` says what is left. This models GitHub's
  secondary rate limits ("continuing to make requests while rate limited may result in
  the banning of your integration"), Okta's and Slack's asks to honour ``Retry-After``.
  The level falls back after a clean window.

The sandbox does not tell clients apart: the limit is the service's, as one integration's
credentials see it. :class:`ServiceQueues` is the latency side: a service with a
``capacity`` queues past it (``capacity``, ``contention`` in a fault profile).

Which set of headers a service sends is its ``rate_limit_headers`` in ``services.yaml``;
the numbers come from the fault controller (the configured limiter, else a nominal
per-minute window that never runs out).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from integrations.sandbox.services import RateLimitStyle

if TYPE_CHECKING:  # faults.py imports this module
    from integrations.sandbox.faults import RateLimitState
    from integrations.sandbox.profile import RateLimitSpec

Clock = Callable[[], float]


class Limiter(Protocol):
    """What the fault controller asks of a service's limiter."""

    capacity: int

    def take(self) -> float:
        """Admit one request: 0.0 if granted, else the seconds to wait (Retry-After)."""
        ...

    def remaining(self) -> int:
        """Requests left now."""
        ...

    def full_in(self) -> float:
        """Seconds until the whole capacity is available again."""
        ...


class TokenBucket:
    """A token bucket (``rate`` tokens/s, ``capacity`` tokens), monotonic clock."""

    def __init__(self, rate: float, capacity: int, clock: Clock = time.monotonic):
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = float(capacity)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self) -> float:
        """Take one token: 0.0 if granted, else the seconds until one is available."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def remaining(self) -> int:
        """Whole tokens left."""
        self._refill()
        return int(self._tokens)

    def full_in(self) -> float:
        """Seconds until the bucket is full again."""
        self._refill()
        return (self.capacity - self._tokens) / self.rate


class SlidingWindowLog:
    """At most ``capacity`` requests in any ``window`` seconds, rejected ones included."""

    KEEP = 64  # the log keeps at most KEEP x capacity entries (memory), enough to reject

    def __init__(self, capacity: int, window: float, clock: Clock = time.monotonic):
        self.capacity = capacity
        self.window = window
        self._clock = clock
        self._log: deque[float] = deque(maxlen=capacity * self.KEEP)

    def _prune(self) -> float:
        now = self._clock()
        while self._log and self._log[0] <= now - self.window:
            self._log.popleft()
        return now

    def take(self) -> float:
        """Log the request; 0.0 if fewer than ``capacity`` were logged in the window,
        else the seconds until the log falls below ``capacity`` if nothing more comes."""
        now = self._prune()
        self._log.append(now)
        over = len(self._log) - self.capacity
        if over <= 0:
            return 0.0
        return max(1e-3, self._log[over - 1] + self.window - now)

    def remaining(self) -> int:
        """Requests left in the window."""
        self._prune()
        return max(0, self.capacity - len(self._log))

    def full_in(self) -> float:
        """Seconds until the newest logged request leaves the window."""
        now = self._prune()
        return max(0.0, self._log[-1] + self.window - now) if self._log else 0.0


class PenaltyBox:
    """``inner``, plus a box that answers 429 to everything after repeated 429s.

    Args:
        inner: The limiter outside the box.
        after: 429s within ``window`` seconds that open the box.
        first: The first box, seconds; each next one (the client kept sending ``after``
            requests while boxed) doubles, up to ``longest``.
        longest: The longest box, seconds.
        window: Where 429s are counted; a window without any 429 resets the level.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        inner: Limiter,
        *,
        after: int,
        first: float,
        longest: float,
        window: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.inner = inner
        self.capacity = inner.capacity
        self.after, self.first, self.longest, self.window = after, first, longest, window
        self._clock = clock
        self._rejected: deque[float] = deque(maxlen=after)
        self.level = 0
        self.boxed_until = 0.0
        self.boxes = 0
        self._strikes = 0  # requests while boxed

    def _open(self, now: float) -> float:
        self.level += 1
        self.boxes += 1
        self._strikes = 0
        self._rejected.clear()
        length = min(self.longest, self.first * 2 ** (self.level - 1))
        self.boxed_until = now + length
        return length

    def take(self) -> float:
        """0.0 if granted; else the wait, the box's remainder while boxed."""
        now = self._clock()
        if now < self.boxed_until:
            self.inner.take()  # a sliding log counts it too
            self._strikes += 1
            if self._strikes >= self.after:
                return self._open(now)
            return self.boxed_until - now
        last = self._rejected[-1] if self._rejected else self.boxed_until
        if self.level and now - max(last, self.boxed_until) >= self.window:
            self.level = 0  # a clean window: forgiven
        wait = self.inner.take()
        if wait <= 0:
            return 0.0
        self._rejected.append(now)
        if len(self._rejected) >= self.after and now - self._rejected[0] < self.window:
            return self._open(now)
        return wait

    def remaining(self) -> int:
        """0 while boxed, else the inner limiter's."""
        return 0 if self._clock() < self.boxed_until else self.inner.remaining()

    def full_in(self) -> float:
        """The box's remainder plus the inner limiter's refill."""
        return max(0.0, self.boxed_until - self._clock()) + self.inner.full_in()


def make_limiter(spec: RateLimitSpec, clock: Clock = time.monotonic) -> Limiter:
    """The limiter ``spec`` describes."""
    inner: Limiter
    if spec.mode == "sliding_log":
        capacity = max(1, math.floor(spec.requests_per_second * spec.window_seconds))
        inner = SlidingWindowLog(capacity, spec.window_seconds, clock)
    else:
        inner = TokenBucket(spec.requests_per_second, spec.capacity, clock)
    if spec.penalty_after is None:
        return inner
    return PenaltyBox(
        inner,
        after=spec.penalty_after,
        first=spec.penalty_seconds,
        longest=max(spec.penalty_seconds, spec.penalty_max_seconds),
        window=spec.window_seconds,
        clock=clock,
    )


class ServiceQueues:
    """Requests each service is serving, and the latency they cost past its capacity.

    A service with a ``capacity`` serves that many requests at once at its base latency;
    past it, requests share the servers and contend for them: the latency of a request
    that arrives with ``n`` in flight (itself included) is the base times
    ``(n / capacity) ** contention``. With ``contention`` 1 that is processor sharing
    (throughput flat past the capacity); above 1 throughput falls as more are sent
    (locks, thrashing: the retrograde part of the Universal Scalability Law). A request
    stays in flight for its whole latency even when its client gave up (a timeout does
    not stop the server's work), so timed-out retries pile on.
    """

    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}

    def in_flight(self, service: str) -> int:
        """Requests ``service`` is serving now."""
        return self._in_flight.get(service, 0)

    def factor(self, service: str, capacity: int | None, contention: float) -> float:
        """The latency factor of a request arriving now (1.0 within the capacity)."""
        if capacity is None:
            return 1.0
        return max(1.0, (self.in_flight(service) + 1) / capacity) ** contention

    @contextmanager
    def serving(self, service: str) -> Iterator[None]:
        """Count one request in flight for the ``with`` block."""
        self._in_flight[service] = self.in_flight(service) + 1
        try:
            yield
        finally:
            self._in_flight[service] -= 1


Headers = list[tuple[bytes, bytes]]


def _epoch_in(seconds: float) -> bytes:
    return str(math.ceil(time.time() + seconds)).encode()


def _openai_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m{secs:.0f}s" if minutes else f"{secs:.3g}s"


_Value = Callable[["RateLimitState"], bytes]


def _limit(st: RateLimitState) -> bytes:
    return b"%d" % st.limit


def _remaining(st: RateLimitState) -> bytes:
    return b"%d" % st.remaining


def _used(st: RateLimitState) -> bytes:
    return b"%d" % st.used


def _reset_epoch(st: RateLimitState) -> bytes:
    return _epoch_in(st.reset_in)


def _reset_duration(st: RateLimitState) -> bytes:
    return _openai_duration(st.reset_in).encode()


def _core(st: RateLimitState) -> bytes:
    return b"core"


STYLES: dict[RateLimitStyle, tuple[tuple[bytes, _Value], ...]] = {
    "github": (
        (b"x-ratelimit-limit", _limit),
        (b"x-ratelimit-remaining", _remaining),
        (b"x-ratelimit-reset", _reset_epoch),
        (b"x-ratelimit-used", _used),
        (b"x-ratelimit-resource", _core),
    ),
    "gitlab": (
        (b"ratelimit-limit", _limit),
        (b"ratelimit-remaining", _remaining),
        (b"ratelimit-reset", _reset_epoch),
        (b"ratelimit-observed", _used),
    ),
    "okta": (
        (b"x-rate-limit-limit", _limit),
        (b"x-rate-limit-remaining", _remaining),
        (b"x-rate-limit-reset", _reset_epoch),
    ),
    "openai": (
        (b"x-ratelimit-limit-requests", _limit),
        (b"x-ratelimit-remaining-requests", _remaining),
        (b"x-ratelimit-reset-requests", _reset_duration),
    ),
    "x-ratelimit": (
        (b"x-ratelimit-limit", _limit),
        (b"x-ratelimit-remaining", _remaining),
        (b"x-ratelimit-reset", _reset_epoch),
    ),
}
"""Each style's headers, in order: name and how its value is made."""


def rate_limit_headers(style: RateLimitStyle, state: RateLimitState) -> Headers:
    """The headers of ``style`` for ``state`` (ASGI form: lower-case bytes)."""
    return [(name, value(state)) for name, value in STYLES[style]]
