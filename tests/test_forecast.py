"""Prophet forecasts: seasonal data, the not-enough-data paths, parallel fits, store input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.forecast import (
    Forecast,
    ForecastConfig,
    NotEnoughData,
    clean_series,
    forecast_many,
    forecast_series,
    hourly_series,
    merge_stream_scores,
    series_from_hourly,
)

FAST = ForecastConfig(horizon=timedelta(days=2), uncertainty_samples=50)


def seasonal(days: int = 14, seed: int = 1, spike_at: int | None = None) -> pd.DataFrame:
    hours = np.arange(days * 24)
    rng = np.random.default_rng(seed)
    y = (
        200
        + 60 * np.sin(2 * np.pi * hours / 24)
        + 25 * np.sin(2 * np.pi * hours / 168)
        + rng.normal(0, 6, hours.size)
    )
    if spike_at is not None:
        y[spike_at] += 400
    return pd.DataFrame({"ds": pd.date_range("2026-10-01", periods=hours.size, freq="h"), "y": y})


def test_seasonal_series_interval_covers_actuals_and_spike_is_an_anomaly() -> None:
    data = seasonal(spike_at=200)
    result = forecast_series(data, service="okta", metric="latency", config=FAST)
    assert isinstance(result, Forecast), result
    assert result.coverage >= 0.9
    assert len(result.horizon) == 48 and result.samples.shape == (48, 50)
    assert (result.horizon["yhat_lower"] <= result.horizon["yhat_upper"]).all()
    flagged = set(result.anomalies["ds"])
    assert data["ds"].iloc[200] in flagged
    # The forecast follows the daily cycle: peak hour 6 (sin max) is above hour 18.
    fut = result.horizon.set_index(result.horizon["ds"].dt.hour)["yhat"]
    assert fut.loc[6].mean() > fut.loc[18].mean() + 60


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (pd.DataFrame({"ds": [], "y": []}), "no usable points"),
        (pd.DataFrame({"ds": ["2026-10-01"], "y": [1.0]}), "1 points"),
        (
            pd.DataFrame({"ds": pd.date_range("2026-10-01", periods=72, freq="h"), "y": 5.0}),
            "constant",
        ),
        (
            pd.DataFrame({"ds": pd.date_range("2026-10-01", periods=72, freq="h"), "y": np.nan}),
            "no usable",
        ),
        (pd.DataFrame({"when": [1], "what": [2]}), "needs columns"),
        (
            pd.DataFrame(
                {"ds": pd.date_range("2026-10-01", periods=30, freq="min"), "y": range(30)}
            ),
            "spans",
        ),
    ],
)
def test_not_enough_data_is_a_typed_result(frame: pd.DataFrame, reason: str) -> None:
    result = forecast_series(frame, service="s", metric="m", config=FAST)
    assert isinstance(result, NotEnoughData)
    assert reason in result.reason and result.service == "s"


def test_clean_series_handles_nans_strings_duplicates_and_disorder() -> None:
    data = seasonal(days=3)
    shuffled = data.sample(frac=1, random_state=0)
    messy = pd.concat([shuffled, shuffled.head(5)], ignore_index=True)  # duplicates
    messy["y"] = messy["y"].astype(object)
    messy.loc[0, "y"] = "n/a"
    messy.loc[1, "y"] = np.nan
    messy = messy.rename(columns={"ds": "timestamp", "y": "value"})
    clean = clean_series(messy)
    assert isinstance(clean, pd.DataFrame)
    assert clean["ds"].is_monotonic_increasing and clean["ds"].is_unique
    assert len(clean) >= 70 and clean["y"].notna().all()


def test_forecast_many_in_parallel_matches_inline() -> None:
    series = {
        ("a", "latency"): seasonal(days=4, seed=1),
        ("b", "latency"): seasonal(days=4, seed=2),
        ("c", "latency"): seasonal(days=4, seed=3),
        ("d", "latency"): pd.DataFrame({"ds": [], "y": []}),
    }
    cfg = ForecastConfig(horizon=timedelta(hours=12), uncertainty_samples=20)
    parallel = forecast_many(series, config=cfg, workers=2)
    assert list(parallel) == list(series)
    assert isinstance(parallel[("d", "latency")], NotEnoughData)
    inline = forecast_series(series[("a", "latency")], metric="latency", config=cfg)
    par_a = parallel[("a", "latency")]
    assert isinstance(par_a, Forecast) and isinstance(inline, Forecast)
    np.testing.assert_allclose(par_a.horizon["yhat"], inline.horizon["yhat"], rtol=1e-3)


def test_hourly_series_from_the_store_and_stream_score_merge(tmp_path: Path) -> None:
    from junction.store import MetricsStore

    start = datetime(2026, 10, 1, tzinfo=UTC)
    rows = []
    for i in range(4 * 24 * 12):  # 4 days at 5 minutes
        ts = start + timedelta(minutes=5 * i)
        rows.append(
            {
                "ts": ts,
                "service": "okta",
                "action": "get_user",
                "method": "GET",
                "path": "/api/v1/users/1",
                "status": 200 if i % 50 else 500,
                "ok": bool(i % 50),
                "latency_ms": 100.0 + 50 * np.sin(2 * np.pi * i / 288) + (i % 7),
                "attempts": 1,
                "breaker_state": "closed",
                "source": "test",
            }
        )
    with MetricsStore(tmp_path / "m") as store:
        store.append("calls", rows)
        store.flush()
        hourly = hourly_series(store, days=30)
    assert set(hourly.columns) >= {"service", "ds", "calls", "failures", "p95_latency_ms"}
    assert hourly["calls"].sum() == len(rows)
    assert hourly["failures"].sum() == sum(1 for r in rows if not r["ok"])
    series = series_from_hourly(hourly, ["okta", "ghost"])
    assert len(series[("okta", "volume")]) == 96 and series[("ghost", "latency")].empty
    fc = forecast_series(series[("okta", "latency")], service="okta", metric="latency", config=FAST)
    assert isinstance(fc, Forecast)
    bad = fc.history["ds"].iloc[10]
    scores = pd.DataFrame({"timestamp": [bad + timedelta(minutes=5)], "score": [0.9]})
    merged = merge_stream_scores(fc, scores)
    assert merged.loc[merged["ds"] == bad, "stream_score"].iloc[0] == pytest.approx(0.9)
    assert merged["stream_score"].notna().sum() == 1
