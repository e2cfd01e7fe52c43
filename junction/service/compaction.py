"""The metrics store's compaction, run periodically inside ``junction serve``.

Every writer's flush leaves one segment file in its day's partition, and DuckDB opens
each one on every read of that day: today's partition gets slow to read after ~150 of
them. Every ``JUNCTION_SERVE_COMPACT_INTERVAL_SECONDS`` the service runs the store's own
:meth:`junction.store.MetricsStore.compact` in a thread. It is safe while writers append
and readers read: it takes the store's compaction lock (one compactor at a time, across
processes), leaves out segments whose writer still spools them (a flush in progress), and
swaps files under the store's exclusive read lock (a read sees the old files or the new
one, never half of each). The windowed metrics look at the files just before, so every
merged segment is one they know and the merge is recognised as the same rows (their
cached rollups stay).
"""

from __future__ import annotations

import asyncio
import logging

from junction.service.state import ServiceState

log = logging.getLogger(__name__)


def compact_once(state: ServiceState) -> int:
    """Compact the store now; the segment files merged away."""
    state.windowed.check()  # the segments about to be merged are known first
    merged = sum(state.store().compact().values())
    state.windowed.check()
    return merged


async def compact_periodically(state: ServiceState, interval: float) -> None:
    """Compact the store every ``interval`` seconds until cancelled (``<= 0``: never).

    A failed compaction is logged once per streak of failures and tried again at the
    next tick; the service serves throughout.
    """
    if interval <= 0:
        return
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            merged = await asyncio.to_thread(compact_once, state)
        except Exception as exc:
            if not failing:
                log.warning("compacting the metrics store failed: %s", exc)
            failing = True
            continue
        if failing:
            log.info("compacting the metrics store works again")
        failing = False
        if merged:
            log.debug("compaction merged %d segment files", merged)


__all__ = ["compact_once", "compact_periodically"]
