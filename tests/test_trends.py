"""Trends in DuckDB over the store, checked on a small hand-computable dataset."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analytics.trends import (
    LATENCY_COLUMNS,
    UPTIME_COLUMNS,
    compute_trends,
    latency_trends,
    service_summary,
    uptime,
    week_over_week,
)
from junction.store import MetricsStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC


def call(ts: datetime, latency: float, ok: bool = True, service: str = "a", **kw: Any) -> dict:
    row = {
        "ts": ts,
        "service": service,
        "action": kw.pop("action", "read"),
        "method": "GET",
        "path": "/x",
        "status": 200 if ok else 503,
        "ok": ok,
        "latency_ms": latency,
        "attempts": 1,
        "breaker_state": "closed",
        "source": kw.pop("source", "workflow"),
    }
    row.update(kw)
    return row


def probe(ts: datetime, ok: bool, service: str = "a", latency: float = 10.0) -> dict:
    return {
        "ts": ts,
        "sweep_id": "s",
        "service": service,
        "ok": ok,
        "status": 200 if ok else 503,
        "latency_ms": latency,
        "breaker_state": "closed",
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricsStore]:
    with MetricsStore(tmp_path / "store") as s:
        yield s


@pytest.fixture
def small(store: MetricsStore) -> MetricsStore:
    """Hour 10: a/read 100, 200, 300, 400 ms (one failure); hour 11: a/read 50 ms;
    b/write at 10:30 1000 ms; probes of a: 3 ok + 1 failed in hour 10."""
    m = timedelta(minutes=1)
    store.append(
        "calls",
        [
            call(T0 + 1 * m, 100),
            call(T0 + 2 * m, 200),
            call(T0 + 3 * m, 300),
            call(T0 + 4 * m, 400, ok=False),
            call(T0 + 61 * m, 50),
            call(T0 + 30 * m, 1000, service="b", action="write", source="cli"),
        ],
    )
    store.append(
        "probes",
        [probe(T0 + i * 15 * m, ok=i != 2) for i in range(4)]
        + [probe(T0 + 5 * m, True, "b", latency=30.0)],
    )
    store.flush()
    return store


def test_hourly_numbers_by_hand(small: MetricsStore) -> None:
    h = latency_trends(small, "hour")
    assert list(h.columns) == LATENCY_COLUMNS
    a10 = h[(h.service == "a") & (h.bucket == T0)].iloc[0]
    assert a10.calls == 4 and a10.ok_calls == 3
    assert a10.success_rate == pytest.approx(0.75)
    assert a10.p50_ms == pytest.approx(250.0)
    # quantile_cont: position (n-1)*q = 2.85 -> 300 + 0.85 * 100
    assert a10.p95_ms == pytest.approx(385.0)
    assert a10.p99_ms == pytest.approx(397.0)
    assert a10.mean_ms == pytest.approx(250.0)
    a11 = h[(h.service == "a") & (h.bucket == T0 + timedelta(hours=1))].iloc[0]
    assert (a11.calls, a11.p95_ms, a11.success_rate) == (1, 50.0, 1.0)
    b = h[h.service == "b"].iloc[0]
    assert (b.action, b.calls, b.p50_ms) == ("write", 1, 1000.0)
    assert list(h.bucket) == sorted(h.bucket)


def test_daily_filters_and_sources(small: MetricsStore) -> None:
    d = latency_trends(small, "day", by_action=False)
    a = d[d.service == "a"].iloc[0]
    assert a.bucket == T0.replace(hour=0) and a.action == "*"
    assert a.calls == 5 and a.p50_ms == pytest.approx(200.0)
    only_b = latency_trends(small, "day", services=["b"])
    assert list(only_b.service) == ["b"]
    late = latency_trends(small, "hour", since=T0 + timedelta(hours=1))
    assert list(late.calls) == [1]
    early = latency_trends(small, "hour", until=T0 + timedelta(hours=1))
    assert early.calls.sum() == 5
    cli = latency_trends(small, "day", sources=["cli"])
    assert list(cli.service) == ["b"]
    with pytest.raises(ValueError, match="grain"):
        latency_trends(small, "week")  # type: ignore[arg-type]


def test_uptime_from_probes(small: MetricsStore) -> None:
    u = uptime(small, "hour")
    assert list(u.columns) == UPTIME_COLUMNS
    a = u[u.service == "a"].iloc[0]
    assert (a.probes, a.ok_probes, a.uptime) == (4, 3, 0.75)
    daily = uptime(small, "day")
    assert list(daily.service) == ["a", "b"] and daily.uptime.tolist() == [0.75, 1.0]


def test_service_summary(small: MetricsStore) -> None:
    s = service_summary(small).set_index("service")
    assert s.loc["a", "calls"] == 5 and s.loc["a", "success_rate"] == pytest.approx(0.8)
    assert s.loc["a", "uptime"] == pytest.approx(0.75)
    assert s.loc["b", "p95_ms"] == 1000.0 and s.loc["b", "probes"] == 1


def test_week_over_week(store: MetricsStore) -> None:
    end = T0 + timedelta(days=14)
    rows = []
    # previous week: 2 calls at 100 ms, both ok; this week: 4 calls at 200 ms, one failed.
    for i in range(2):
        rows.append(call(end - timedelta(days=10, hours=i), 100))
    for i in range(4):
        rows.append(call(end - timedelta(days=2, hours=i), 200, ok=i != 0))
    rows.append(call(end - timedelta(days=1), 300, service="new"))
    rows.append(call(end - timedelta(days=30), 999))  # outside both weeks
    store.append("calls", rows)
    store.flush()
    w = week_over_week(store, until=end).set_index("service")
    a = w.loc["a"]
    assert (a.calls, a.prev_calls) == (4, 2)
    assert a.calls_change == pytest.approx(1.0)
    assert a.p95_change == pytest.approx(1.0)
    assert a.success_rate_change == pytest.approx(-0.25)
    new = w.loc[["new"], ["prev_calls", "calls_change"]]
    assert bool(new.isna().all(axis=None))
    # Default end: just after the latest call, so the same weeks here.
    auto = week_over_week(store).set_index("service")
    assert auto.loc["a", "calls"] == 4


def test_empty_store_gives_empty_frames(store: MetricsStore) -> None:
    t = compute_trends(store)
    assert t.hourly.empty and list(t.hourly.columns) == LATENCY_COLUMNS
    assert t.uptime_daily.empty and list(t.uptime_daily.columns) == UPTIME_COLUMNS
    assert t.week_over_week.empty and t.summary.empty


def test_compute_trends_on_synthetic_history(tmp_path: Path) -> None:
    from analytics.synthetic import generate_history

    truth = generate_history(
        tmp_path, services=3, days=8, step=timedelta(minutes=30), start=T0.replace(hour=0)
    )
    with MetricsStore(tmp_path) as store:
        t = compute_trends(store)
        assert t.hourly.calls.sum() == truth.rows["calls"] == t.daily.calls.sum()
        assert t.uptime_daily.probes.sum() == truth.rows["probes"]
        assert set(t.summary.service) == set(truth.service_names)
        assert len(t.week_over_week) == 3
        assert (t.hourly.p50_ms <= t.hourly.p95_ms).all()
        assert (t.hourly.p95_ms <= t.hourly.p99_ms).all()


def test_trends_from_rollups_match_raw(tmp_path: Path) -> None:
    from analytics.rollups import Rollups
    from analytics.synthetic import generate_history

    generate_history(
        tmp_path, services=3, days=2, step=timedelta(minutes=30), start=T0.replace(hour=0)
    )
    with MetricsStore(tmp_path) as store:
        raw = compute_trends(store)
        fast = compute_trends(store, rollups=Rollups(store))
        for name in ("hourly", "daily", "uptime_hourly", "uptime_daily"):
            a, b = getattr(raw, name), getattr(fast, name)
            assert list(a.columns) == list(b.columns)
            exact = [c for c in a.columns if c != "mean_ms"]
            pd.testing.assert_frame_equal(a[exact], b[exact], check_exact=True)
            if "mean_ms" in a:  # rollup means come from exact decimal sums (µs precision)
                assert (a["mean_ms"] - b["mean_ms"]).abs().max() < 1e-3
