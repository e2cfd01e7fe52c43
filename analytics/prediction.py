"""Failure prediction: will a service cross a critical line within the horizon, and when?

Three risks per service, each a :class:`Prediction` (probability, expected time, the
threshold, a one-sentence explanation) or a :class:`~analytics.forecast.NotEnoughData`:

* ``latency`` -- hourly p95 latency above ``response_time_critical_ms``. From the latency
  forecast's predictive samples (Prophet's simulated paths: trend uncertainty plus
  observation noise): probability = share of paths with at least one hour above the
  line; expected time = median first crossing among those paths. Without samples the
  interval gives a normal approximation per hour.
* ``success_rate`` -- the *expected* success rate falling below
  ``success_rate_critical``. Hourly success is too noisy at a dozen calls an hour (two
  failures make 83 %), so this is about the trend: a weighted least-squares line through
  the last 3 days of hourly error ratios, its parameter uncertainty sampled (normal,
  OLS covariance); probability = share of sampled lines crossing within the horizon.
* ``error_budget`` -- the SLA error budget running out: budget = ``(1 - slo)`` x calls in
  the SLA window (the last ``window_days`` of data), spent = failures in that window.
  Monte Carlo: error ratio ~ Beta(failures + 1, successes + 1) of the last 24 h, hourly
  volume from the volume forecast's sample paths (else the last week's mean), failures
  ~ Poisson(volume x ratio); probability = share of paths whose cumulative failures reach
  the remaining budget; expected time = their median. Conservative: old failures are
  not rolled out of the window during the horizon. A budget already spent by past
  failures is a fact, not a prediction: its probability is the chance that the last
  24 h's error rate is above the SLO's (the budget keeps burning; 1.0 when the observed
  burn rate is at least 1x), so a service that failed two weeks ago and is healthy now
  is not reported as a certain failure.

Minimum evidence (a prediction needs evidence; too little data says so instead):

* every risk needs at least :data:`MIN_EVIDENCE_HOURS` (24) hours between the service's
  first and last hour with calls: ten minutes of probes predict nothing;
* the error budget also needs a budget of at least :data:`MIN_BUDGET_FAILURES` allowed
  failure (at SLO 99 %, 100 calls in the window): an empty budget is not an exhausted
  one.

Below either line the outcome is :class:`~analytics.forecast.NotEnoughData` with the
reason ("3 h of history; predictions need 24 h"), which the report lists as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import norm

from analytics.forecast import Forecast, NotEnoughData

Kind = Literal["latency", "success_rate", "error_budget"]

_KINDS: tuple[Kind, ...] = ("latency", "success_rate", "error_budget")

MIN_EVIDENCE_HOURS = 24.0
"""Hours of call history (first to last hour with calls) any prediction needs."""
MIN_BUDGET_FAILURES = 1.0
"""Allowed failures the SLA window's error budget must reach before it is predicted."""


def history_hours(rows: pd.DataFrame) -> float:
    """Hours from a service's first to its last hour with calls, both included (0: none)."""
    if rows.empty:
        return 0.0
    return float((rows["ds"].iloc[-1] - rows["ds"].iloc[0]) / timedelta(hours=1)) + 1.0


def evidence_gap(rows: pd.DataFrame) -> str | None:
    """Why ``rows`` (one service's hours with calls) are too little to predict, or None."""
    hours = history_hours(rows)
    if hours < MIN_EVIDENCE_HOURS:
        return f"{hours:.0f} h of history; predictions need {MIN_EVIDENCE_HOURS:.0f} h"
    return None


@dataclass(frozen=True)
class Prediction:
    """One risk of one service.

    Attributes:
        service: The service.
        kind: ``latency``, ``success_rate`` or ``error_budget``.
        probability: 0-1, within the horizon.
        expected_at: Median first crossing among the paths that cross (naive UTC);
            ``None`` when none does.
        horizon_end: End of the horizon (naive UTC).
        threshold: The line (ms, a rate, or the remaining budget in failures).
        current: The latest value of what is compared (``None`` if unknown).
        explanation: One sentence a person can act on.
        eta_hours: Hours from the end of the history to ``expected_at``.
    """

    service: str
    kind: Kind
    probability: float
    expected_at: datetime | None
    horizon_end: datetime
    threshold: float
    current: float | None
    explanation: str
    eta_hours: float | None = None


PredictionOutcome = Prediction | NotEnoughData


def _fmt_eta(hours: float) -> str:
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} days"


def predict_latency(forecast: Forecast, threshold_ms: float) -> Prediction:
    """Probability and time of the hourly p95 latency crossing ``threshold_ms``.

    Args:
        forecast: A ``latency`` forecast (its ``samples`` are used when present).
        threshold_ms: The critical line.
    """
    horizon = forecast.horizon
    times = pd.to_datetime(horizon["ds"]).to_list()
    start = forecast.history["ds"].iloc[-1]
    current = float(forecast.history["y"].iloc[-24:].mean())
    samples = forecast.samples
    if samples.size and samples.shape[0] == len(times):
        above = samples > threshold_ms
        crosses = above.any(axis=0)
        probability = float(crosses.mean())
        first = np.argmax(above, axis=0)[crosses]
        idx = int(np.median(first)) if first.size else None
    else:
        # Normal approximation per hour from the interval, hours taken as independent.
        z = _z(forecast.interval_width)
        sd = ((horizon["yhat_upper"] - horizon["yhat_lower"]) / (2 * z)).clip(lower=1e-9)
        p_hour = 1 - _norm_cdf((threshold_ms - horizon["yhat"]) / sd)
        probability = float(1 - np.prod(1 - p_hour.to_numpy()))
        cum = 1 - np.cumprod(1 - p_hour.to_numpy())
        hit = np.nonzero(cum >= 0.5)[0]
        idx = int(hit[0]) if hit.size else None
    expected_at = None if idx is None else times[idx]
    eta = None if expected_at is None else (expected_at - start).total_seconds() / 3600
    trend = _slope_per_day(forecast.history)
    if expected_at is None:
        text = (
            f"p95 latency {current:,.0f} ms (last 24 h), trend {trend:+,.0f} ms/day: no "
            f"simulated path crosses {threshold_ms:,.0f} ms within the horizon"
        )
    else:
        assert eta is not None
        text = (
            f"p95 latency {current:,.0f} ms (last 24 h), trend {trend:+,.0f} ms/day: "
            f"{probability:.0%} of simulated paths cross {threshold_ms:,.0f} ms; median "
            f"first crossing in {_fmt_eta(eta)} ({expected_at:%Y-%m-%d %H:%M} UTC)"
        )
    return Prediction(
        service=forecast.service,
        kind="latency",
        probability=probability,
        expected_at=expected_at,
        horizon_end=times[-1],
        threshold=threshold_ms,
        current=current,
        explanation=text,
        eta_hours=eta,
    )


def _slope_per_day(history: pd.DataFrame) -> float:
    tail = history.tail(72)
    if len(tail) < 3:
        return 0.0
    x = (tail["ds"] - tail["ds"].iloc[0]).dt.total_seconds().to_numpy() / 86400
    if float(np.ptp(x)) == 0.0:
        return 0.0
    return float(np.polyfit(x, tail["y"].to_numpy(dtype="float64"), 1)[0])


def _z(width: float) -> float:
    return float(norm.ppf(0.5 + width / 2))


def _norm_cdf(x: pd.Series) -> pd.Series:
    return pd.Series(norm.cdf(x.to_numpy()), index=x.index)


def _service_hours(hourly: pd.DataFrame, service: str) -> pd.DataFrame:
    rows = hourly[hourly["service"] == service].sort_values("ds")
    return rows[rows["calls"] > 0]


def predict_success_rate(
    hourly: pd.DataFrame,
    service: str,
    threshold: float,
    *,
    horizon: timedelta = timedelta(days=7),
    lookback: timedelta = timedelta(days=3),
    n_samples: int = 2000,
    seed: int = 0,
) -> PredictionOutcome:
    """Probability that the success-rate trend falls below ``threshold`` in the horizon.

    Args:
        hourly: :func:`analytics.forecast.hourly_series` output (all services).
        service: Which service.
        threshold: The critical success rate (0-1).
        horizon: How far ahead.
        lookback: History the trend line is fitted on.
        n_samples: Sampled trend lines.
        seed: RNG seed (results are reproducible).
    """
    rows = _service_hours(hourly, service)
    if rows.empty:
        return NotEnoughData(service, "success_rate", "no calls recorded")
    if (gap := evidence_gap(rows)) is not None:
        return NotEnoughData(service, "success_rate", gap, len(rows))
    end = rows["ds"].iloc[-1]
    rows = rows[rows["ds"] > end - lookback]
    if len(rows) < 6:
        return NotEnoughData(
            service, "success_rate", f"{len(rows)} hours of calls; 6 needed", len(rows)
        )
    x = (rows["ds"] - end).dt.total_seconds().to_numpy() / 3600  # hours, <= 0
    err = (rows["failures"] / rows["calls"]).to_numpy(dtype="float64")
    w = rows["calls"].to_numpy(dtype="float64")
    current = 1 - float(rows["failures"].tail(24).sum() / rows["calls"].tail(24).sum())
    limit = 1 - threshold  # error ratio line
    design = np.column_stack([np.ones_like(x), x])
    wd = design * w[:, None]
    xtwx = design.T @ wd
    try:
        inv = np.linalg.inv(xtwx)
    except np.linalg.LinAlgError:
        return NotEnoughData(service, "success_rate", "degenerate history (one hour)", len(rows))
    beta = inv @ (wd.T @ err)
    resid = err - design @ beta
    dof = max(1, len(rows) - 2)
    # Binomial noise floor: a run of zero-error hours must not give a zero-width slope.
    sigma2 = max(float((w * resid**2).sum() / dof), float(np.mean(err) * (1 - np.mean(err))) + 1e-6)
    cov = inv * sigma2
    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(beta, cov, size=n_samples, method="cholesky")
    hours = np.arange(1, int(horizon / timedelta(hours=1)) + 1, dtype="float64")
    paths = draws[:, :1] + draws[:, 1:2] * hours[None, :]  # error ratio per future hour
    above = paths > limit
    crosses = above.any(axis=1)
    probability = float(crosses.mean())
    horizon_end = (end + horizon).to_pydatetime()
    slope_day = float(beta[1]) * 24
    if probability > 0:
        first = np.argmax(above, axis=1)[crosses]
        eta = float(hours[int(np.median(first))])
        expected_at: datetime | None = (end + timedelta(hours=eta)).to_pydatetime()
        text = (
            f"success rate {current:.1%} (last 24 h), trend {-slope_day:+.2%}/day: "
            f"{probability:.0%} chance the expected rate drops below {threshold:.0%}; "
            f"median crossing in {_fmt_eta(eta)}"
        )
    else:
        eta, expected_at = None, None
        text = (
            f"success rate {current:.1%} (last 24 h), trend {-slope_day:+.2%}/day: "
            f"no sampled trend drops below {threshold:.0%} within the horizon"
        )
    return Prediction(
        service=service,
        kind="success_rate",
        probability=probability,
        expected_at=expected_at,
        horizon_end=horizon_end,
        threshold=threshold,
        current=current,
        explanation=text,
        eta_hours=eta,
    )


def predict_error_budget(
    hourly: pd.DataFrame,
    service: str,
    slo: float,
    *,
    volume: Forecast | None = None,
    window_days: int = 30,
    horizon: timedelta = timedelta(days=7),
    n_samples: int = 1000,
    seed: int = 0,
) -> PredictionOutcome:
    """Probability and time of the SLA error budget running out within the horizon.

    Args:
        hourly: :func:`analytics.forecast.hourly_series` output (all services).
        service: Which service.
        slo: Success objective of the SLA (0.99 = 1 % of calls may fail).
        volume: The service's volume forecast (sample paths drive future traffic).
        window_days: The SLA window.
        horizon: How far ahead.
        n_samples: Monte Carlo paths.
        seed: RNG seed.
    """
    rows = _service_hours(hourly, service)
    if rows.empty:
        return NotEnoughData(service, "error_budget", "no calls recorded")
    if (gap := evidence_gap(rows)) is not None:
        return NotEnoughData(service, "error_budget", gap, len(rows))
    end = rows["ds"].iloc[-1]
    window = rows[rows["ds"] > end - timedelta(days=window_days)]
    calls, failures = float(window["calls"].sum()), float(window["failures"].sum())
    budget = (1 - slo) * calls
    if budget < MIN_BUDGET_FAILURES:
        return NotEnoughData(
            service,
            "error_budget",
            f"{calls:,.0f} calls allow {budget:.1f} failures at SLO {slo:.2%}; the budget "
            f"needs at least {MIN_BUDGET_FAILURES:g}",
            len(rows),
        )
    remaining = budget - failures
    steps = int(horizon / timedelta(hours=1))
    horizon_end = (end + horizon).to_pydatetime()
    spent = failures / budget if budget > 0 else math.inf
    recent = rows[rows["ds"] > end - timedelta(hours=24)]
    r_fail, r_calls = float(recent["failures"].sum()), float(recent["calls"].sum())
    rng = np.random.default_rng(seed)
    ratio = rng.beta(r_fail + 1, r_calls - r_fail + 1, size=n_samples)
    if remaining <= 0:
        return _spent_budget(
            service, slo, budget, failures, calls, r_fail, r_calls, ratio, end, horizon_end
        )
    if volume is not None and volume.samples.size and volume.samples.shape[0] >= steps:
        cols = rng.integers(0, volume.samples.shape[1], size=n_samples)
        vol = volume.samples[:steps, cols].T  # (paths, hours)
    else:
        week = rows[rows["ds"] > end - timedelta(days=7)]
        hours_seen = max(1.0, (week["ds"].iloc[-1] - week["ds"].iloc[0]) / timedelta(hours=1) + 1)
        vol = np.full((n_samples, steps), float(week["calls"].sum()) / hours_seen)
    fails = rng.poisson(np.clip(vol, 0, None) * ratio[:, None])
    cum = np.cumsum(fails, axis=1)
    hit = cum >= remaining
    crosses = hit.any(axis=1)
    probability = float(crosses.mean())
    burn = r_fail / max(1.0, (1 - slo) * r_calls)  # 1.0 = spending exactly the budget rate
    head = (
        f"{spent:.0%} of the error budget spent ({failures:,.0f} of {budget:,.0f} failures "
        f"allowed at SLO {slo:.2%}), burn rate {burn:.1f}x over the last 24 h"
    )
    if probability > 0:
        eta = float(np.median(np.argmax(hit, axis=1)[crosses]) + 1)
        expected_at: datetime | None = (end + timedelta(hours=eta)).to_pydatetime()
        text = f"{head}: {probability:.0%} chance it runs out, median in {_fmt_eta(eta)}"
    else:
        eta, expected_at = None, None
        text = f"{head}: no simulated path exhausts it within the horizon"
    return Prediction(
        service=service,
        kind="error_budget",
        probability=probability,
        expected_at=expected_at,
        horizon_end=horizon_end,
        threshold=remaining,
        current=failures,
        explanation=text,
        eta_hours=eta,
    )


def _spent_budget(
    service: str,
    slo: float,
    budget: float,
    failures: float,
    calls: float,
    r_fail: float,
    r_calls: float,
    ratio: np.ndarray,
    end: pd.Timestamp,
    horizon_end: datetime,
) -> Prediction:
    """A budget already spent: certain while it still burns, else the chance it does."""
    burn = r_fail / max(1.0, (1 - slo) * r_calls)
    head = (
        f"{failures:,.0f} failures against a budget of {budget:,.0f} "
        f"({1 - slo:.2%} of {calls:,.0f} calls)"
    )
    if burn >= 1.0:
        return Prediction(
            service=service,
            kind="error_budget",
            probability=1.0,
            expected_at=end.to_pydatetime(),
            horizon_end=horizon_end,
            threshold=budget,
            current=failures,
            explanation=(
                f"error budget already exhausted: {head}, and still burning at "
                f"{burn:.1f}x over the last 24 h"
            ),
            eta_hours=0.0,
        )
    probability = float((ratio > 1 - slo).mean())
    return Prediction(
        service=service,
        kind="error_budget",
        probability=probability,
        expected_at=None,
        horizon_end=horizon_end,
        threshold=budget,
        current=failures,
        explanation=(
            f"error budget spent by past failures: {head}; burn rate {burn:.1f}x over the "
            f"last 24 h: {probability:.0%} chance the error rate is above the SLO's (below "
            "it, the budget recovers as old failures leave the window)"
        ),
        eta_hours=None,
    )


def predict_services(
    hourly: pd.DataFrame,
    forecasts: Mapping[tuple[str, str], Forecast | NotEnoughData],
    *,
    latency_critical_ms: float,
    success_rate_critical: float,
    slo: float,
    horizon: timedelta = timedelta(days=7),
    window_days: int = 30,
) -> dict[str, list[PredictionOutcome]]:
    """All three risks for every service in ``hourly`` (or with a forecast).

    Returns:
        ``service -> [latency, success_rate, error_budget]`` outcomes.
    """
    services = sorted(set(hourly["service"].unique()) | {k[0] for k in forecasts})
    out: dict[str, list[PredictionOutcome]] = {}
    for svc in services:
        rows = _service_hours(hourly, svc)
        gap = "no calls recorded" if rows.empty else evidence_gap(rows)
        if gap is not None:  # minimum evidence: no risk is predicted from too little
            out[svc] = [NotEnoughData(svc, k, gap, len(rows)) for k in _KINDS]
            continue
        lat = forecasts.get((svc, "latency"))
        vol = forecasts.get((svc, "volume"))
        latency: PredictionOutcome
        if isinstance(lat, Forecast):
            latency = predict_latency(lat, latency_critical_ms)
        elif isinstance(lat, NotEnoughData):
            latency = NotEnoughData(svc, "latency", lat.reason, lat.points)
        else:
            latency = NotEnoughData(svc, "latency", "no latency forecast")
        out[svc] = [
            latency,
            predict_success_rate(hourly, svc, success_rate_critical, horizon=horizon),
            predict_error_budget(
                hourly,
                svc,
                slo,
                volume=vol if isinstance(vol, Forecast) else None,
                window_days=window_days,
                horizon=horizon,
            ),
        ]
    return out


def worst(outcomes: list[PredictionOutcome]) -> Prediction | None:
    """The prediction with the highest probability (earliest ETA on ties), if any."""
    preds = [o for o in outcomes if isinstance(o, Prediction)]
    if not preds:
        return None
    return max(
        preds,
        key=lambda p: (p.probability, -(p.eta_hours if p.eta_hours is not None else 1e9)),
    )
