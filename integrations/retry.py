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

    Attributes:
        max_attempts: Attempts in all, the first included.
        backoff_base: First delay in seconds; doubles per attempt.
        backoff_max: Cap on one delay.
        retry_after_max: Longest ``Retry-After`` honoured; a longer one fails the call.
        jitter: Random seconds (0..jitter) added to each exponential delay.
    """

    max_attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 30.0
    jitter: float = 0.5

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
        """Delay before the next attempt: the server's ``Retry-After``, else backoff."""
        hint = getattr(exc, "retry_after", None)
        if hint is not None:
            return float(min(max(hint, 0.0), self.retry_after_max))
        # tenacity's wait_exponential_jitter formula, applied to our attempt number
        exponential = self.backoff_base * 2 ** (attempt - 1) + random.uniform(0, self.jitter)
        return float(min(exponential, self.backoff_max))


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
