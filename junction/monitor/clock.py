"""The monitor's clock: wall-clock stamps that advance with the monotonic clock.

Intervals, timeouts and scheduling use the monotonic clock. Observations are stamped by a
:class:`MonitorClock` (wall time at start + monotonic elapsed); when the wall clock jumps
(NTP step, manual change) by more than :data:`CLOCK_JUMP_TOLERANCE` the monitor shifts its
windows by the jump and re-anchors the clock, so a jump neither empties a window
(forward) nor hides new observations behind old ones (backward).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

CLOCK_JUMP_TOLERANCE = 2.0
"""Seconds the wall clock may disagree with the monitor's clock before it counts as a jump."""


class MonitorClock:
    """Wall-clock timestamps that advance with the monotonic clock.

    Args:
        wall: Wall clock (aware UTC); injectable to simulate jumps in tests.
        mono: Monotonic clock in seconds.
    """

    def __init__(
        self,
        wall: Callable[[], datetime] | None = None,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall or (lambda: datetime.now(UTC))
        self._mono = mono
        self._anchor_wall = self._wall()
        self._anchor_mono = self._mono()

    def now(self) -> datetime:
        """The monitor's current time (UTC)."""
        return self._anchor_wall + timedelta(seconds=self._mono() - self._anchor_mono)

    def monotonic(self) -> float:
        """The monotonic clock (seconds)."""
        return self._mono()

    def wall(self) -> datetime:
        """The wall clock right now."""
        return self._wall()

    def jump(self) -> float:
        """Seconds the wall clock is ahead (+) or behind (-) the monitor's time."""
        return (self._wall() - self.now()).total_seconds()

    def reanchor(self) -> None:
        """Adopt the wall clock's current time."""
        self._anchor_wall = self._wall()
        self._anchor_mono = self._mono()

    def jumped(self) -> float:
        """The wall clock's jump beyond :data:`CLOCK_JUMP_TOLERANCE`, or 0.0.

        A jump re-anchors the clock: the caller shifts what it stamped by the result.
        """
        jump = self.jump()
        if abs(jump) <= CLOCK_JUMP_TOLERANCE:
            return 0.0
        self.reanchor()
        return jump


__all__ = ["CLOCK_JUMP_TOLERANCE", "MonitorClock"]
