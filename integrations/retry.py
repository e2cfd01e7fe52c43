"""The retry policy of integration calls: which failures are retried, and how long to wait.

Pure functions of an exception and an attempt number, so the engine
(:mod:`integrations.base`), check-before-create and the SMTP client share one policy.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC

from integrations.errors import (
    APIConnectionError,
    CircuitOpenError,
    IntegrationError,
    RateLimitError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry a failed attempt.

    The wait before retry ``n`` (``n`` = 1 after the first attempt) is the server's
    ``Retry-After`` when it sent one (clamped to ``[0, retry_after_max]``), else an
    exponential backoff with full jitter, as the AWS SDKs do: uniform between 0 and
    ``min(backoff_max, backoff_base * 2**(n-1))``. Full jitter keeps a first retry short
    (on average half the base) and spreads the retries of many clients apart. A 429 without
    a ``Retry-After`` backs off from ``throttle_base`` instead: the vendor is overloaded,
    and a retry right away would only be throttled again.

    Attributes:
        max_attempts: Attempts in all, the first included.
        backoff_base: Longest first delay in seconds; the bound doubles per attempt.
        backoff_max: Cap on one delay.
        retry_after_max: Longest ``Retry-After`` honoured; a longer one fails the call.
        jitter: Share of each delay drawn at random, in ``[0, 1]``: 1 is full jitter
            (uniform in ``[0, d]``), 0.5 equal jitter (``[d/2, d]``), 0 none (``d``).
        throttle_base: ``backoff_base`` of a 429 that carries no ``Retry-After``.
    """

    max_attempts: int = 3
    backoff_base: float = 0.1
    backoff_max: float = 8.0
    retry_after_max: float = 30.0
    jitter: float = 1.0
    throttle_base: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter must be within [0, 1], got {self.jitter!r}")

    def should_retry(self, exc: BaseException, *, idempotent: bool) -> bool:
        """Whether ``exc`` may be retried for a request of this idempotency.

        A 429 and a refused connection never reached the server's business logic, so
        they are retried for any request; 5xx, 408, timeouts, resets and garbled bodies
        may hide a success, so only idempotent requests are retried on them.
        """
        if isinstance(exc, CircuitOpenError) or not isinstance(exc, IntegrationError):
            return False
        if isinstance(exc, RateLimitError):
            return exc.retry_after is None or exc.retry_after <= self.retry_after_max
        if isinstance(exc, APIConnectionError) and not exc.request_sent:
            return True
        return exc.retryable and idempotent

    def wait_seconds(self, exc: BaseException | None, attempt: int) -> float:
        """Delay before the next attempt: the server's ``Retry-After``, else backoff.

        Args:
            exc: The failure of attempt ``attempt`` (``None``: unknown).
            attempt: The attempt that failed, from 1.

        Returns:
            Seconds, within ``[0, retry_after_max]`` for a hint and ``[0, backoff_max]``
            otherwise.
        """
        hint = getattr(exc, "retry_after", None)
        if hint is not None:
            return float(min(max(hint, 0.0), self.retry_after_max))
        base = self.throttle_base if isinstance(exc, RateLimitError) else self.backoff_base
        # 2**n overflows a float beyond ~1,000 attempts: the cap is reached long before
        bound = min(self.backoff_max, base * 2.0 ** min(max(attempt - 1, 0), 64))
        return float(bound * (1.0 - self.jitter) + random.uniform(0.0, bound * self.jitter))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or an HTTP date) into seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)
