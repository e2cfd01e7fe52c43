"""Slowing down token guessing: failed logins and bad bearer tokens per client.

A client (its address) that fails :data:`MAX_FAILURES` times within
:data:`WINDOW_SECONDS` gets 429 with ``Retry-After`` until its oldest failure leaves the
window, even for the right token: a guesser learns nothing while blocked. A success
clears the client's failures. The table is bounded (the oldest client goes first), so a
flood of spoofed-looking addresses cannot grow memory without limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 10
"""Failed attempts a client may make within the window before it is refused."""
WINDOW_SECONDS = 60.0
"""The sliding window over which failures count."""
MAX_CLIENTS = 10_000
"""Clients remembered at most (the least recently failing are forgotten first)."""


class AuthThrottle:
    """Counts failed authentications per client over a sliding window.

    Args:
        max_failures: Failures allowed within ``window`` seconds.
        window: The window, in seconds.
        max_clients: Clients remembered at most.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or not math.isfinite(window) or window <= 0 or max_clients < 1:
            raise ValueError("the throttle needs max_failures >= 1, window > 0, max_clients >= 1")
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or ``None`` when it may try now."""
        now = self._clock()
        times = self._recent(client, now)
        if times is None or len(times) < self.max_failures:
            return None
        return max(times[0] + self.window - now, 0.0)

    def failed(self, client: str) -> None:
        """Record a failed attempt of ``client``."""
        now = self._clock()
        times = self._recent(client, now)
        if times is None:
            times = self._failures[client] = deque(maxlen=self.max_failures)
        times.append(now)
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures (it knows the token)."""
        self._failures.pop(client, None)


__all__ = ["MAX_CLIENTS", "MAX_FAILURES", "WINDOW_SECONDS", "AuthThrottle"]
