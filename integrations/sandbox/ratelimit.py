"""The rate-limit headers a sandboxed vendor sends with every answer, in its own names.

Which set a service sends is its ``rate_limit_headers`` in ``services.yaml``; the numbers
come from the fault controller (a configured token bucket, else a nominal per-minute
window that never runs out).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from integrations.sandbox.faults import RateLimitState
from integrations.sandbox.services import RateLimitStyle

Headers = list[tuple[bytes, bytes]]


def _epoch_in(seconds: float) -> bytes:
    return str(math.ceil(time.time() + seconds)).encode()


def _openai_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m{secs:.0f}s" if minutes else f"{secs:.3g}s"


_Value = Callable[[RateLimitState], bytes]


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
