"""Incremental rollups: identical to a full recompute, idempotent per hour, only dirty hours."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analytics.rollups import Rollups, daily_from_raw, hourly_from_raw
from analytics.synthetic import generate_history
from junction.store import MetricsStore

START = datetime(2026, 2, 2, tzinfo=UTC)
STEP = timedelta(minutes=15)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True
    )


def _assert_exact(rollups: Rollups, store: MetricsStore) -> None:
    for table in ("calls", "probes"):
        _same(rollups.hourly(table), hourly_from_raw(store, table))
        _same(rollups.daily(table), daily_from_raw(store, table))


def _call(ts: datetime, latency: float, service: str = "openai", ok: bool = True) -> dict[str, Any]:
    return {
        "ts": ts,
        "service": service,
        "action": "get_record",
        "method": "GET",
        "path": "/records/{id}",
        "status": 200 if ok else 503,
        "ok": ok,
        "latency_ms": latency,
        "attempts": 1,
        "breaker_state": "closed",
        "source": "workflow",
    }


@pytest.fixture
def history(tmp_path: Path) -> Path:
    # 2 days ending at noon: the next hour lands in an existing day partition.
    generate_history(
        tmp_path,
        services=3,
        duration=timedelta(days=1, hours=12),
        step=STEP,
        start=START,
        incidents_per_30_days=10,
    )
    return tmp_path


def test_refresh_equals_full_recompute_and_is_idempotent(history: Path) -> None:
    with MetricsStore(history) as store:
        rollups = Rollups(store)
        first = rollups.refresh()
        assert first.hours_recomputed == {"calls": 36, "probes": 36}
        assert first.days_recomputed == {"calls": 2, "probes": 2}
        assert first.watermark is not None and first.watermark < START + timedelta(days=1, hours=12)
        _assert_exact(rollups, store)
        before = rollups.hourly()
        again = rollups.refresh()
        assert again.new_files == 0 and again.hours_recomputed == {"calls": 0, "probes": 0}
        _same(rollups.hourly(), before)
        # Forget the watermark: every hour is recomputed and replaced, never duplicated.
        (history / "_rollups" / "state.json").unlink()
        redo = rollups.refresh()
        assert redo.hours_recomputed["calls"] == 36
        _same(rollups.hourly(), before)
        assert rollups.hourly()[["bucket", "service", "action"]].duplicated().sum() == 0


def test_one_new_hour_touches_only_that_hour(history: Path) -> None:
    end = START + timedelta(days=1, hours=12)
    with MetricsStore(history) as store:
        rollups = Rollups(store)
        rollups.refresh()
        old = rollups.hourly()
        generate_history(
            history,
            services=3,
            start=end,
            duration=timedelta(hours=1),
            step=STEP,
            if_exists="append",
            seed=9,
        )
        result = rollups.refresh()
        assert result.new_files == 2  # calls + probes (workflow_runs has no rollup)
        assert result.hours_recomputed == {"calls": 1, "probes": 1}
        assert result.days_recomputed == {"calls": 1, "probes": 1}
        assert result.watermark is not None and result.watermark >= end
        new = rollups.hourly()
        assert set(new.bucket) - set(old.bucket) == {end}
        _same(new[new.bucket < end], old)  # earlier hours untouched
        _assert_exact(rollups, store)


def test_hourly_only_refresh_skips_days(history: Path) -> None:
    with MetricsStore(history) as store:
        rollups = Rollups(store, tables=["calls"])
        result = rollups.refresh(daily=False)
        assert result.days_recomputed == {"calls": 0}
        assert rollups.daily().empty
        _same(rollups.hourly(), hourly_from_raw(store))


def test_late_rows_in_an_old_hour_are_picked_up(history: Path) -> None:
    with MetricsStore(history) as store:
        rollups = Rollups(store)
        rollups.refresh()
        late = START + timedelta(hours=3, minutes=7)
        store.append("calls", [_call(late, 99_999.0), _call(late, 1.0, ok=False)])
        store.flush()
        result = rollups.refresh()
        assert result.hours_recomputed == {"calls": 1, "probes": 0}
        _assert_exact(rollups, store)
        hour = rollups.hourly(since=START + timedelta(hours=3), until=START + timedelta(hours=4))
        assert hour["max_ms"].max() == 99_999.0


def test_compaction_and_deleted_files(history: Path) -> None:
    with MetricsStore(history) as store:
        rollups = Rollups(store)
        rollups.refresh()
        store.append("calls", [_call(START + timedelta(hours=5), 5.0)])
        store.flush()
        rollups.refresh()
        merged = store.compact("calls")
        assert merged["calls"] >= 2
        rollups.refresh()
        _assert_exact(rollups, store)
        # A whole day of raw data goes away (e.g. retention): its rollup rows go too.
        day = history / "calls" / f"date={START.date().isoformat()}"
        for f in day.glob("*.parquet"):
            f.unlink()
        result = rollups.refresh()
        assert result.gone_files >= 1 and result.hours_recomputed["calls"] == 24
        _assert_exact(rollups, store)
        assert rollups.hourly()["bucket"].min() >= START + timedelta(days=1)


def test_state_and_reading(history: Path) -> None:
    with MetricsStore(history) as store:
        rollups = Rollups(store)
        assert rollups.watermark is None
        assert rollups.hourly().empty and list(rollups.hourly().columns)[:3] == [
            "bucket",
            "service",
            "action",
        ]
        rollups.refresh()
        state = json.loads((history / "_rollups" / "state.json").read_text())
        assert state["version"] == 1 and state["tables"]["calls"]
        assert rollups.watermark is not None
        probes = rollups.hourly("probes", services=["openai"])
        assert set(probes.service) == {"openai"} and "uptime" in probes.columns
        assert rollups.hourly(services=[]).empty
        with pytest.raises(ValueError, match="no rollups"):
            rollups.hourly("alerts")
        rebuilt = rollups.rebuild()
        assert rebuilt.hours_recomputed["calls"] == 36
        _assert_exact(rollups, store)


def test_empty_store(tmp_path: Path) -> None:
    with MetricsStore(tmp_path) as store:
        rollups = Rollups(store)
        result = rollups.refresh()
        assert result.watermark is None and result.hours_recomputed == {"calls": 0, "probes": 0}
        assert rollups.hourly().empty and rollups.daily("probes").empty
