"""How the runner treats a failure: whether a step-level retry or the next alternative is
safe (a side effect may already have happened), and how a failure is told in one line.
"""

from __future__ import annotations

from pydantic import ValidationError

from integrations.actions import ActionSpec
from integrations.errors import (
    APIConnectionError,
    APIStatusError,
    CircuitOpenError,
    ConfigurationError,
    IntegrationError,
    RateLimitError,
)

__all__ = [
    "describe",
    "error_class",
    "may_fall_back",
    "may_retry",
    "nothing_happened",
    "one_line",
    "unkeyed_side_effect",
]


def nothing_happened(exc: BaseException) -> bool:
    """Whether a failure proves the vendor did not act on the request.

    True for an open breaker (never sent), a refused connection, a 429, a 503 (the
    service refused to take the request: down, in maintenance, overloaded), a
    client-side configuration error, and a 4xx refusal (the vendor rejected it). A 500,
    502, 504, a timeout or a reset after the request went out are ambiguous: the side
    effect may have committed (the sandbox's ``lost_after_commit`` answers 504 or resets).
    """
    if isinstance(exc, CircuitOpenError | ConfigurationError | RateLimitError):
        return True
    if isinstance(exc, APIConnectionError) and not exc.request_sent:
        return True
    if isinstance(exc, APIStatusError):
        code = exc.status_code
        return code == 503 or (400 <= code < 500 and code != 408)
    return False


def may_retry(exc: BaseException, action: ActionSpec) -> bool:
    """Whether a step-level retry of the same action is worth it and safe.

    Transient failures only (timeouts, connection errors, 5xx, 429, garbled bodies,
    an open breaker that will half-open); for a non-idempotent action only when
    :func:`nothing_happened`.
    """
    if not isinstance(exc, IntegrationError) or isinstance(exc, ConfigurationError):
        return False
    transient = exc.retryable or isinstance(exc, CircuitOpenError)
    if not transient:
        return False
    return action.idempotent or nothing_happened(exc)


def may_fall_back(exc: BaseException, action: ActionSpec) -> bool:
    """Whether the next alternative may be tried after ``exc``.

    Always for reads and idempotent actions (they check before they create); for a
    non-idempotent action only when :func:`nothing_happened`, because an ambiguous
    failure (timeout, reset, 5xx after the request went out) may hide a delivered side
    effect that a second provider would duplicate.
    """
    if action.read_only or action.idempotent:
        return True
    return nothing_happened(exc)


def unkeyed_side_effect(action: ActionSpec) -> bool:
    """A side effect no vendor can deduplicate: no key field, not idempotent by itself."""
    return not action.read_only and not action.idempotent and action.key_field is None


def one_line(exc: BaseException) -> str:
    """An input error as one line (pydantic's message spans several, with a docs link)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'inputs'}: {e['msg']}" for e in exc.errors()
        )
    return " ".join(str(exc).split())


def describe(exc: BaseException) -> str:
    """One line: a vendor's message may span several."""
    if isinstance(exc, IntegrationError):
        return " ".join(f"{exc.error_class}: {exc.message}".split())
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def error_class(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, IntegrationError):
        return exc.error_class
    return type(exc).__name__
