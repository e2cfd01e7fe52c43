"""The production streaming anomaly detector (analytics/anomaly.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analytics.anomaly import (
    DetectorConfig,
    StreamingDetector,
    score_series,
    score_values,
)
from bench import nab

START = pd.Timestamp("2024-03-01 00:00:00")
STEP = pd.Timedelta(minutes=5)


def seasonal_series(n: int = 2400, seed: int = 7) -> pd.DataFrame:
    """5-minute latency-like series: daily cycle (288 points) plus noise."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    values = 200 + 40 * np.sin(2 * math.pi * i / 288) + rng.normal(0, 4, n)
    return pd.DataFrame({"timestamp": START + STEP * i, "value": values})


def _add(df: pd.DataFrame, where: slice, delta: float | np.ndarray) -> None:
    values = df["value"].to_numpy(dtype=float, copy=True)
    values[where] += delta
    df["value"] = values


def test_deterministic() -> None:
    df = seasonal_series()
    a = score_series(df)["score"].to_numpy()
    b = score_series(df)["score"].to_numpy()
    assert np.array_equal(a, b)


def test_no_look_ahead() -> None:
    """A point's score does not change when later points are appended."""
    df = seasonal_series()
    _add(df, slice(1500, 1501), 150)
    full = score_values(zip(df["timestamp"], df["value"], strict=True))
    for cut in (400, 1501, 1800):
        head = score_values(zip(df["timestamp"][:cut], df["value"][:cut], strict=True))
        assert head == full[:cut]


def test_score_series_matches_streaming_updates() -> None:
    df = seasonal_series(800)
    det = StreamingDetector()
    streamed = [det.update(t, v) for t, v in zip(df["timestamp"], df["value"], strict=True)]
    out = score_series(df)
    assert list(out.columns) == ["timestamp", "value", "score", "is_anomaly"]
    assert out["score"].tolist() == streamed
    assert all(0.0 <= s <= 1.0 for s in streamed)
    assert out["is_anomaly"].tolist() == [s >= DetectorConfig().threshold for s in streamed]


def test_detects_an_injected_spike() -> None:
    df = seasonal_series()
    _add(df, slice(1500, 1501), 80)  # 20 sigma of the noise, inside the daily range
    out = score_series(df)
    assert bool(out.loc[1500, "is_anomaly"])
    assert out.loc[1500, "score"] == out["score"][1000:].max()


def test_detects_a_level_shift_quickly() -> None:
    df = seasonal_series()
    _add(df, slice(1500, None), 60)
    out = score_series(df)
    hits = np.flatnonzero(out["is_anomaly"].to_numpy()[1000:]) + 1000
    assert len(hits) and 1500 <= hits[hits >= 1500][0] <= 1505


def test_detects_a_flat_line_in_a_daily_pattern() -> None:
    """A seasonal series that stops moving (values stay in range): the daily context."""
    df = seasonal_series(3000)
    flat = 200 + np.random.default_rng(1).normal(0, 4, 301)
    _add(df, slice(2000, 2301), flat - df["value"].to_numpy()[2000:2301])
    out = score_series(df)
    assert out["is_anomaly"][2000:2300].any()


def test_few_false_alarms_on_a_clean_seasonal_series() -> None:
    detections = [
        int(score_series(seasonal_series(2400, seed))["is_anomaly"].sum()) for seed in range(3)
    ]
    # 2,250 scored points each; alarms are suppressed for 100 points after each one.
    assert max(detections) <= 3, detections


def test_constant_series_scores_zero_and_a_change_after_it_is_caught() -> None:
    n = 600
    df = pd.DataFrame({"timestamp": START + STEP * np.arange(n), "value": np.full(n, 5.0)})
    assert score_series(df)["score"].max() == 0.0
    _add(df, slice(500, 501), 1.0)
    assert bool(score_series(df).loc[500, "is_anomaly"])


def test_rejects_non_finite_values() -> None:
    det = StreamingDetector()
    det.update(START, 1.0)
    with pytest.raises(ValueError, match="finite"):
        det.update(START + STEP, float("nan"))


def test_accepts_numbers_and_numpy_times_as_timestamps() -> None:
    values = seasonal_series(400)["value"].tolist()
    secs = [1_700_000_000 + 300 * i for i in range(400)]
    np_times = [np.datetime64(s, "s") for s in secs]
    a = score_values(zip(secs, values, strict=True))
    b = score_values(zip(np_times, values, strict=True))
    assert a == b
    det = StreamingDetector()
    for t, v in zip(secs, values, strict=True):
        det.update(t, v)
    assert det.features.period == 288


def test_nab_subset() -> None:
    """Three small NAB files at the detector's own threshold: most windows are caught."""
    root = nab.nab_dir()
    if not (root / "labels" / "combined_windows.json").exists():
        pytest.skip("NAB corpus not present")
    names = [
        "realAdExchange/exchange-3_cpc_results.csv",
        "realTraffic/occupancy_t4013.csv",
        "realAdExchange/exchange-4_cpm_results.csv",
    ]
    files = nab.load_corpus(root, names)
    thr = DetectorConfig().threshold
    results = [
        nab.score_file(f, nab.detector_scores(f), thr, nab.PROFILES["standard"]) for f in files
    ]
    tp = sum(r.tp for r in results)
    windows = sum(len(f.windows) for f in files)
    assert tp >= windows - 3, [(r.name, r.tp, r.fn, r.fp) for r in results]
    assert sum(r.raw for r in results) > 3.0
