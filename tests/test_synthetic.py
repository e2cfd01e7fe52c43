"""Synthetic history: determinism, the store's layout and schema, and the ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics.synthetic import TIMEOUT_MS, generate_history
from junction.store import TABLES, MetricsStore

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


def _read(root: Path, table: str) -> pa.Table:
    files = sorted((root / table).glob("date=*/*.parquet"))
    return pa.concat_tables([pq.read_table(f, partitioning=None) for f in files])


def test_deterministic_by_seed(tmp_path: Path) -> None:
    kw = dict(
        services=4,
        days=2,
        step=timedelta(minutes=15),
        start=START,
        alerts=True,
        incidents_per_30_days=30,
    )
    a = generate_history(tmp_path / "a", seed=7, **kw)  # type: ignore[arg-type]
    b = generate_history(tmp_path / "b", seed=7, **kw)  # type: ignore[arg-type]
    c = generate_history(tmp_path / "c", seed=8, **kw)  # type: ignore[arg-type]
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()
    for table in ("calls", "probes", "workflow_runs", "alerts"):
        assert _read(tmp_path / "a", table).equals(_read(tmp_path / "b", table)), table
    assert not _read(tmp_path / "a", "calls").equals(_read(tmp_path / "c", "calls"))
    assert [p.name for p in a.files] == [p.name for p in b.files]


def test_layout_schema_and_counts(tmp_path: Path) -> None:
    truth = generate_history(
        tmp_path, services=3, days=3, step=timedelta(minutes=10), start=START, seed=1
    )
    for path in truth.files:
        table = path.parent.parent.name
        assert path.parent.name.startswith("date=") and path.name.startswith("part-")
        schema = pq.read_schema(path)
        assert schema.equals(TABLES[table]), table
        ts = pq.read_table(path).column("started_at" if table == "workflow_runs" else "ts")
        days = {d.isoformat() for d in pa.compute.cast(ts, pa.date32()).to_pylist()}
        assert days == {path.parent.name.removeprefix("date=")}
    with MetricsStore(tmp_path) as store:
        for table in ("calls", "probes", "workflow_runs"):
            assert store.count(table) == truth.rows[table] > 0
        # One probe per service per step, with no monitor outage.
        assert truth.rows["probes"] == 3 * 3 * 24 * 6
        span = store.query("SELECT min(ts) AS lo, max(ts) AS hi FROM calls")
        assert span["lo"][0] >= START and span["hi"][0] < START + timedelta(days=3)
        ids = store.query("SELECT count(DISTINCT id) AS n FROM calls")["n"][0]
        assert ids == truth.rows["calls"]
    assert truth.service_names == ["openai", "gitlab", "workday"]  # catalog order


def test_many_services_get_generated_names(tmp_path: Path) -> None:
    truth = generate_history(
        tmp_path, services=60, days=1, step=timedelta(hours=1), start=START, seed=1
    )
    assert truth.service_names[0] == "svc-00" and len(set(truth.service_names)) == 60


def test_incidents_fail_calls_and_probes(tmp_path: Path) -> None:
    truth = generate_history(
        tmp_path,
        services=5,
        days=6,
        step=timedelta(minutes=5),
        start=START,
        seed=3,
        incidents_per_30_days=20,
        degradation_fraction=0.0,
        alerts=True,
    )
    assert truth.incidents, "the rate asked for several incidents"
    calls = _read(tmp_path, "calls").to_pandas()
    probes = _read(tmp_path, "probes").to_pandas()
    inside = np.zeros(len(calls), dtype=bool)
    inside_p = np.zeros(len(probes), dtype=bool)
    for name in truth.service_names:
        rows = (calls["service"] == name).to_numpy()
        inside[rows] = truth.in_incident(name, calls.loc[rows, "ts"].to_numpy())
        prow = (probes["service"] == name).to_numpy()
        inside_p[prow] = truth.in_incident(name, probes.loc[prow, "ts"].to_numpy())
    fail_in = 1 - calls.loc[inside, "ok"].mean()
    fail_out = 1 - calls.loc[~inside, "ok"].mean()
    assert fail_in > 0.4 and fail_out < 0.05
    assert 1 - probes.loc[inside_p, "ok"].mean() > 0.4
    timeouts = calls[calls["error_class"] == "APITimeoutError"]
    if any(i.mode != "errors" for i in truth.incidents):
        assert len(timeouts) and (timeouts["latency_ms"] >= TIMEOUT_MS).all()
        assert timeouts["status"].isna().all()
    alerts = _read(tmp_path, "alerts").to_pandas()
    assert len(alerts) == 2 * len(truth.incidents)
    assert set(alerts["state"]) == {"firing", "resolved"}


def test_degradation_raises_latency_by_its_factor(tmp_path: Path) -> None:
    truth = generate_history(
        tmp_path,
        services=4,
        days=10,
        step=timedelta(minutes=15),
        start=START,
        seed=5,
        incidents_per_30_days=0,
        degradation_fraction=1.0,
    )
    assert len(truth.degradations) == 4
    calls = _read(tmp_path, "calls").to_pandas()
    checked = 0
    for d in truth.degradations:
        mine = calls[(calls["service"] == d.service) & calls["ok"]]
        before = mine[mine["ts"] < d.start]["latency_ms"].median()
        at_peak = mine[
            (mine["ts"] >= d.peak) & (mine["ts"] < min(d.end, d.peak + timedelta(hours=12)))
        ]
        if len(at_peak) < 30 or len(mine[mine["ts"] < d.start]) < 30:
            continue
        ratio = at_peak["latency_ms"].median() / before
        assert ratio == pytest.approx(d.factor, rel=0.35), (d, ratio)
        checked += 1
    assert checked >= 2


def test_daily_and_weekly_seasonality_and_growth(tmp_path: Path) -> None:
    generate_history(
        tmp_path,
        services=3,
        days=28,
        step=timedelta(minutes=30),
        start=START,
        seed=2,
        calls_per_step=20,
        growth_per_week=0.10,
        incidents_per_30_days=0,
    )
    calls = _read(tmp_path, "calls").to_pandas()
    hour = calls["ts"].dt.hour
    by_hour = calls.groupby(hour).size()
    assert by_hour.loc[13:15].mean() > 2 * by_hour.loc[[1, 2, 3]].mean()
    weekday = calls["ts"].dt.weekday
    per_day = calls.groupby(calls["ts"].dt.date).size()
    weekend_days = per_day[[d.weekday() >= 5 for d in per_day.index]]
    week_days = per_day[[d.weekday() < 5 for d in per_day.index]]
    assert weekend_days.mean() < 0.75 * week_days.mean()
    assert (weekday >= 5).any()
    first = (calls["ts"] < START + timedelta(days=7)).sum()
    last = (calls["ts"] >= START + timedelta(days=21)).sum()
    assert last > 1.15 * first  # +10 %/week over three weeks


def test_monitor_outage_leaves_a_probe_gap(tmp_path: Path) -> None:
    truth = generate_history(
        tmp_path, services=2, days=1, step=timedelta(minutes=5), start=START, monitor_outages=1
    )
    [outage] = truth.monitor_outages
    probes = _read(tmp_path, "probes").to_pandas()
    assert not ((probes["ts"] >= outage.start) & (probes["ts"] < outage.end)).any()
    missing = (outage.end - outage.start) // timedelta(minutes=5)
    assert truth.rows["probes"] == 2 * (288 - missing)


def test_if_exists_and_appending_one_hour(tmp_path: Path) -> None:
    kw = dict(services=2, step=timedelta(minutes=30), seed=1)
    truth = generate_history(tmp_path, days=1, start=START, **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already has data"):
        generate_history(tmp_path, days=1, start=START, **kw)  # type: ignore[arg-type]
    more = generate_history(
        tmp_path,
        start=truth.end,
        duration=timedelta(hours=1),
        if_exists="append",
        **kw,  # type: ignore[arg-type]
    )
    assert more.start == truth.end and more.end == truth.end + timedelta(hours=1)
    assert more.services == truth.services  # same seed: same service profiles
    with MetricsStore(tmp_path) as store:
        assert store.count("probes") == truth.rows["probes"] + more.rows["probes"]
    again = generate_history(tmp_path, days=1, start=START, if_exists="replace", **kw)  # type: ignore[arg-type]
    with MetricsStore(tmp_path) as store:
        assert store.count("probes") == again.rows["probes"] == truth.rows["probes"]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="services"):
        generate_history(tmp_path, services=0, days=1)
    with pytest.raises(ValueError, match="step"):
        generate_history(tmp_path, services=1, days=1, step=timedelta(0))
    with pytest.raises(ValueError, match="at least one step"):
        generate_history(tmp_path, services=1, duration=timedelta(minutes=1))
    with pytest.raises(ValueError, match="unknown tables"):
        generate_history(tmp_path, services=1, days=1, tables=("nope",))
