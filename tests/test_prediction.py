"""Failure prediction: degrading services get a high probability and a sane ETA."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from analytics.forecast import Forecast, ForecastConfig, NotEnoughData, forecast_series
from analytics.prediction import (
    Prediction,
    predict_error_budget,
    predict_latency,
    predict_services,
    predict_success_rate,
    worst,
)

CFG = ForecastConfig(horizon=timedelta(days=7), uncertainty_samples=100)
START = pd.Timestamp("2026-10-01")


def latency(days: int, base: float, per_day: float, seed: int = 0) -> pd.DataFrame:
    hours = np.arange(days * 24)
    rng = np.random.default_rng(seed)
    y = (
        base
        + per_day * hours / 24
        + 40 * np.sin(2 * np.pi * hours / 24)
        + rng.normal(0, 30, hours.size)
    )
    return pd.DataFrame({"ds": pd.date_range(START, periods=hours.size, freq="h"), "y": y})


def hourly(service: str, days: int, calls: int, err: np.ndarray | float) -> pd.DataFrame:
    n = days * 24
    rate = np.broadcast_to(np.asarray(err, dtype=float), (n,))
    failures = np.round(calls * rate).astype(int)
    return pd.DataFrame(
        {
            "service": service,
            "ds": pd.date_range(START, periods=n, freq="h"),
            "calls": calls,
            "failures": failures,
            "mean_latency_ms": 100.0,
            "p95_latency_ms": 200.0,
        }
    )


def test_degrading_latency_crosses_with_high_probability_and_sane_eta() -> None:
    # 14 days climbing 250 ms/day to ~4,000 ms; critical at 5,000 ms -> ~4 days out.
    fc = forecast_series(latency(14, 500, 250), service="jira", metric="latency", config=CFG)
    assert isinstance(fc, Forecast)
    pred = predict_latency(fc, 5000)
    assert pred.probability >= 0.9, pred.explanation
    assert pred.eta_hours is not None and 2 * 24 <= pred.eta_hours <= 6.5 * 24, pred
    assert pred.expected_at is not None and pred.expected_at <= pred.horizon_end
    assert "5,000 ms" in pred.explanation and "first crossing" in pred.explanation


def test_stable_latency_has_low_probability() -> None:
    fc = forecast_series(latency(14, 300, 0), service="okta", metric="latency", config=CFG)
    assert isinstance(fc, Forecast)
    pred = predict_latency(fc, 5000)
    assert pred.probability <= 0.05 and pred.expected_at is None
    assert "no simulated path" in pred.explanation
    # Without samples the interval's normal approximation agrees.
    fc.samples = np.empty((len(fc.horizon), 0))
    assert predict_latency(fc, 5000).probability <= 0.05


def test_success_rate_trend_and_error_budget_on_a_degrading_service() -> None:
    err = np.linspace(0.0, 0.08, 10 * 24)  # error ratio climbing ~0.8 %/day
    frame = pd.concat([hourly("bad", 10, 200, err), hourly("good", 10, 200, 0.001)])
    bad = predict_success_rate(frame, "bad", 0.90)
    good = predict_success_rate(frame, "good", 0.90)
    assert isinstance(bad, Prediction) and isinstance(good, Prediction)
    assert bad.probability >= 0.8, bad.explanation
    assert bad.eta_hours is not None and 24 <= bad.eta_hours <= 5 * 24, bad
    assert good.probability <= 0.05
    budget_bad = predict_error_budget(frame, "bad", 0.99)
    budget_good = predict_error_budget(frame, "good", 0.99)
    assert isinstance(budget_bad, Prediction) and budget_bad.probability == 1.0
    assert "already exhausted" in budget_bad.explanation
    assert isinstance(budget_good, Prediction) and budget_good.probability <= 0.05


def test_error_budget_running_out_within_the_horizon() -> None:
    # 1 % SLO; 0.2 % errors for 20 days then 3 % for the last day -> budget lasts days.
    err = np.r_[np.full(20 * 24, 0.002), np.full(24, 0.03)]
    frame = hourly("svc", 21, 100, err)
    pred = predict_error_budget(frame, "svc", 0.99)
    assert isinstance(pred, Prediction)
    assert pred.probability >= 0.9, pred.explanation
    assert pred.eta_hours is not None and 24 <= pred.eta_hours <= 7 * 24
    assert "burn rate" in pred.explanation


def test_no_data_paths_and_predict_services() -> None:
    frame = hourly("svc", 2, 100, 0.0)
    empty = frame.iloc[0:0]
    assert isinstance(predict_success_rate(empty, "svc", 0.9), NotEnoughData)
    assert isinstance(predict_error_budget(empty, "svc", 0.99), NotEnoughData)
    short = frame.head(3)
    assert isinstance(predict_success_rate(short, "svc", 0.9), NotEnoughData)
    forecasts = {("svc", "latency"): NotEnoughData("svc", "latency", "constant series (200)")}
    out = predict_services(
        frame, forecasts, latency_critical_ms=5000, success_rate_critical=0.9, slo=0.99
    )
    lat, rate, budget = out["svc"]
    assert isinstance(lat, NotEnoughData) and "constant" in lat.reason
    assert isinstance(rate, Prediction) and isinstance(budget, Prediction)
    assert worst(out["svc"]) in (rate, budget)
    assert worst([lat]) is None
