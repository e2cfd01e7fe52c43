"""Run a health sweep and record it: probes and call metrics into the metrics store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any
from uuid import uuid4

from integrations.base import HealthResult
from integrations.metrics import add_sink, remove_sink
from junction.clients import sweep
from junction.settings import Settings, get_settings
from junction.store import MetricsStore
from junction.store import open_store as store_for


def open_store(settings: Settings | None = None) -> MetricsStore:
    """The metrics store configured by ``JUNCTION_STORE_URL`` / ``JUNCTION_STORE_DIR``."""
    return store_for(settings or get_settings())


@contextmanager
def recording_calls(store: MetricsStore) -> Iterator[MetricsStore]:
    """Record every integration call made inside the block into ``store.calls``."""
    add_sink(store.record_call)
    try:
        yield store
    finally:
        remove_sink(store.record_call)


def probe_rows(results: Sequence[HealthResult], sweep_id: str) -> list[dict[str, Any]]:
    """Rows of the ``probes`` table for one sweep's results."""
    rows = []
    for r in results:
        row = asdict(r)
        row["ts"] = row.pop("checked_at")
        row.pop("attempts", None)
        row["sweep_id"] = sweep_id
        rows.append(row)
    return rows


async def run_sweep(
    names: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    store: MetricsStore | None = None,
    sweep_id: str | None = None,
    concurrency: int | None = None,
) -> tuple[str, list[HealthResult]]:
    """Probe integrations once and record probes and call metrics.

    Args:
        names: Catalog names (default: every enabled integration).
        settings: Settings (default: the process's).
        store: Where to record (default: the configured store, opened and closed here).
        sweep_id: Id of this sweep (default: a new uuid).
        concurrency: Checks in flight at once.

    Returns:
        ``(sweep_id, results)``.
    """
    settings = settings or get_settings()
    sweep_id = sweep_id or uuid4().hex
    own = store is None
    store = store or open_store(settings)
    try:
        with recording_calls(store):
            results = await sweep(
                names, settings=settings, concurrency=concurrency, source="probe", run_id=sweep_id
            )
        store.append("probes", probe_rows(results, sweep_id))
        store.flush()
    finally:
        if own:
            store.close()
    return sweep_id, results
