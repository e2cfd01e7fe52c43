"""The store's compaction inside the service (junction.service.compaction): segments merged
while a writer appends, no row lost, and the windowed metrics' slides kept (the merge is
recognised as the same rows) and still equal to the exact query."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from junction.service.compaction import compact_once, compact_periodically
from junction.service.routes.monitoring import (
    MetricsRow,
    _metrics_body,
    _render,
    _windowed_metrics,
)
from junction.service.state import ServiceState
from junction.settings import Settings
from junction.store import MetricsStore
from tests.test_service_windowed import NAMES, _compare, _rows, _write


def _segments(root: Path) -> int:
    return sum(1 for _ in root.glob("*/date=*/*.parquet"))


def test_compaction_in_the_service_keeps_rows_and_slides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    root = Settings().metrics_dir
    rng = random.Random(31)
    now = datetime.now(UTC)
    _write(root, _rows(rng, 3_000, now - timedelta(hours=28), 28.0))
    for i in range(6):  # a writer's flushes: one segment each
        _write(root, _rows(rng, 30, now - timedelta(minutes=20 - i), 0.01))
    written = 3_000 + 6 * 30

    async def run() -> None:
        state = ServiceState(Settings())
        await state.start()
        try:
            names, length = NAMES, timedelta(days=1)

            def read() -> None:
                # The route's answer (a slide, else the rollups or the exact query).
                body = json.loads(_metrics_body(state, names, length.total_seconds()))
                since = datetime.fromisoformat(body["since"])
                got = [MetricsRow.model_validate(r).model_dump() for r in body["services"]]
                _compare(got, _windowed_metrics(state, names, since))

            for _ in range(300):  # the day's hours are computed in the background first
                if await asyncio.to_thread(state.windowed.rendered, names, now - length, now,
                                           _render) is not None:  # fmt: skip
                    break
                await asyncio.sleep(0.1)
            await asyncio.to_thread(read)
            slide = next(iter(state.windowed._slides.values()))
            before = _segments(root)
            assert await asyncio.to_thread(compact_once, state) > 0
            assert _segments(root) < before
            await asyncio.to_thread(read)
            assert next(iter(state.windowed._slides.values())) is slide  # not rebuilt
            # Periodically, while a writer appends: every row kept, the reads exact (a
            # segment flushed between the look and the merge rebuilds the slide).
            task = asyncio.create_task(compact_periodically(state, 0.2))
            try:
                for _ in range(5):
                    fresh = _rows(rng, 20, datetime.now(UTC), 0.001)
                    await asyncio.to_thread(_write, root, fresh)
                    await state.live.refresh(max_age=0)
                    await asyncio.sleep(0.15)
                    await asyncio.to_thread(read)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            with MetricsStore(root) as store:
                assert store.count("probes") + store.count("calls") == written + 5 * 20
        finally:
            await state.aclose()

    asyncio.run(run())


def test_no_interval_means_no_compaction() -> None:
    # 0 turns it off: the task ends at once without touching the store.
    asyncio.run(asyncio.wait_for(compact_periodically(None, 0), 1))  # type: ignore[arg-type]
