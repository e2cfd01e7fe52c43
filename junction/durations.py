"""Durations as people write them in the CLI, alerting files and workflow specs.

``500ms``, ``30s``, ``5m``, ``2h``, ``1d``, ``1w``, compounds like ``1m30s``, or a bare
number of seconds. One grammar for the whole product; each caller decides what it accepts
(positive only, zero allowed) and how it words the error.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

UNIT_SECONDS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def duration_seconds(text: str) -> float | None:
    """Seconds in ``text``, or ``None`` when it is not a duration (or not finite).

    Whitespace is ignored and units are case-insensitive. A bare number may be negative;
    a string with units may not (callers reject negatives with their own message).
    """
    raw = "".join(text.split()).lower()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        pos, total = 0, 0.0
        for match in _PART.finditer(raw):
            if match.start() != pos:
                return None
            total += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
            pos = match.end()
        return total if pos == len(raw) else None
    return value if math.isfinite(value) else None


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An instant (UTC) from a duration back from ``now`` (``1h``, ``30m``, ``7d``; a bare
    number is seconds) or an ISO 8601 time (``Z`` or an offset; none means UTC).

    The one reading of ``since``/``until`` for the CLI, the API and the pages.

    Args:
        text: What the user typed.
        now: The reference instant (default: now).

    Raises:
        ValueError: Neither a duration nor an ISO time, a negative duration, or an instant
            before the first one representable (the message quotes ``text``).
    """
    raw = text.strip()
    seconds = duration_seconds(raw)
    try:
        if seconds is not None:
            if seconds < 0:
                raise ValueError(f"{text!r} is negative")
            return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a duration (1h, 30m, 7d) nor an ISO time"
            ) from None
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # 9999999d, or 0001-01-01T00:00+01:00 (before the first UTC instant)
        raise ValueError(f"{text!r} reaches before year 1") from None
