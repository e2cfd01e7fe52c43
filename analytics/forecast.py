"""Prophet forecasts of call volume and latency per service, fitted in parallel.

Input is a plain DataFrame (``ds`` timestamps + ``y`` values, or ``timestamp``/``value``);
output is a :class:`Forecast` (history + horizon with ``yhat`` and the interval, the
predictive samples of the horizon, and the history points that left the interval) or,
instead of an exception, a typed :class:`NotEnoughData` saying why nothing was fitted
(empty, too few points, too short a span, a constant series, only NaNs).

What is forecast (see :func:`hourly_series`): per service and hour, ``volume`` = calls
in the hour and ``latency`` = p95 latency (ms) of the hour's successful calls, the same
statistic the health score compares with ``response_time_critical_ms``. Fitting hourly
aggregates rather than the raw 5-minute points keeps a fit at ~0.2 s instead of ~1-2 s
(FINDINGS) and smooths the per-call noise that says nothing about the seasonal shape.

Model: daily seasonality when the history spans at least 2 days, weekly when it spans
at least 7 (Prophet would silently drop it otherwise), no yearly, MAP fit
(``mcmc_samples=0``), ``interval_width`` 0.99 so that a point outside the interval is
rare enough to call an anomaly (about 7 a month of hourly points by chance). Volume is
fitted on the square-root scale and latency on the log scale (:data:`TRANSFORMS`) and
transformed back, so intervals follow the noise and are never negative.

Parallelism: :func:`forecast_many` fans the fits out to the worker processes of
:mod:`analytics.workers`; each imports Prophet once and silences cmdstanpy, whose logger
would otherwise print two INFO lines per fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from analytics.workers import Pending, prepare_worker, silence_cmdstanpy, submit_parallel
from junction.store import MetricsStore

Metric = Literal["volume", "latency"]
METRICS: tuple[Metric, ...] = ("volume", "latency")
Transform = Literal["none", "sqrt", "log"]

MIN_POINTS = 24
"""Fewest distinct, finite points a series needs before it is fitted."""
MIN_SPAN = timedelta(days=1)
"""Shortest history (first to last point) that is fitted."""


@dataclass(frozen=True)
class NotEnoughData:
    """Why a series was not fitted (a result, not an error).

    Attributes:
        service: The service the series belongs to ("" when unknown).
        metric: ``volume``, ``latency`` or a free-form name.
        reason: One human sentence ("3 points; at least 24 are needed").
        points: Usable points found.
    """

    service: str
    metric: str
    reason: str
    points: int = 0


@dataclass
class Forecast:
    """A fitted series: history and horizon with the forecast interval.

    Attributes:
        service: The service.
        metric: ``volume``, ``latency`` or a free-form name.
        frame: One row per time step: ``ds`` (naive UTC), ``y`` (actual; NaN in the
            horizon), ``yhat``, ``yhat_lower``, ``yhat_upper``, ``future`` (bool: in the
            horizon) and ``anomaly`` (bool: an actual outside the interval).
        samples: Predictive samples of the horizon, shape ``(horizon steps, n)``; ``n``
            is 0 when the fit ran with ``uncertainty_samples=0``.
        interval_width: Probability mass of ``[yhat_lower, yhat_upper]``.
        freq: Step of the series (pandas offset alias, ``"h"``).
        fit_seconds: Wall time of fit + predict in the worker.
        transform: Scale the model was fitted on (``none``, ``sqrt``, ``log``).
    """

    service: str
    metric: str
    frame: pd.DataFrame
    samples: np.ndarray = field(repr=False)
    interval_width: float
    freq: str
    fit_seconds: float
    transform: str = "none"

    @property
    def history(self) -> pd.DataFrame:
        """Rows with an actual value."""
        return self.frame[~self.frame["future"]]

    @property
    def horizon(self) -> pd.DataFrame:
        """Rows of the forecast horizon."""
        return self.frame[self.frame["future"]]

    @property
    def anomalies(self) -> pd.DataFrame:
        """History rows whose actual left the interval."""
        return self.frame[self.frame["anomaly"]]

    @property
    def coverage(self) -> float:
        """Fraction of history actuals inside the interval."""
        hist = self.history
        return 1.0 - float(hist["anomaly"].mean()) if len(hist) else math.nan


ForecastOutcome = Forecast | NotEnoughData


@dataclass(frozen=True)
class ForecastConfig:
    """How series are fitted.

    Attributes:
        horizon: How far ahead to forecast.
        freq: Step of the input series (the horizon uses the same step).
        interval_width: Mass of the forecast interval (anomaly = actual outside it).
        uncertainty_samples: Prophet's simulated paths (intervals and ``samples``);
            fewer is faster, 0 disables both (the interval collapses to ``yhat``).
        changepoint_prior_scale: Prophet's trend flexibility.
        transform: Force a scale for every series (default: :data:`TRANSFORMS` by metric).
    """

    horizon: timedelta = timedelta(days=7)
    freq: str = "h"
    interval_width: float = 0.99
    uncertainty_samples: int = 100
    changepoint_prior_scale: float = 0.05
    transform: Transform | None = None


def clean_series(
    df: pd.DataFrame, *, service: str = "", metric: str = "value"
) -> pd.DataFrame | NotEnoughData:
    """Normalise a series to ``ds`` (naive UTC, sorted, unique) + finite float ``y``.

    Accepts ``ds``/``y`` or ``timestamp``/``value`` columns. Unparseable timestamps and
    non-numeric, NaN or infinite values are dropped; duplicate timestamps are averaged.

    Args:
        df: The raw series.
        service: Named in a :class:`NotEnoughData`.
        metric: Named in a :class:`NotEnoughData`.

    Returns:
        The clean frame, or :class:`NotEnoughData` (empty, too short, constant, bad
        columns).
    """
    if "ds" in df.columns and "y" in df.columns:
        ts, val = df["ds"], df["y"]
    elif "timestamp" in df.columns and "value" in df.columns:
        ts, val = df["timestamp"], df["value"]
    else:
        cols = ", ".join(map(str, df.columns)) or "none"
        return NotEnoughData(service, metric, f"needs columns ds,y or timestamp,value (got {cols})")
    ds = pd.to_datetime(ts, errors="coerce", utc=True).dt.tz_localize(None)
    y = pd.to_numeric(val, errors="coerce").astype("float64")
    out = pd.DataFrame({"ds": ds.to_numpy(), "y": y.to_numpy()})
    out = out[out["ds"].notna() & np.isfinite(out["y"])]
    out = out.groupby("ds", as_index=False, sort=True)["y"].mean()
    n = len(out)
    if n == 0:
        return NotEnoughData(service, metric, "no usable points (empty, or all NaN)", 0)
    if n < MIN_POINTS:
        return NotEnoughData(service, metric, f"{n} points; at least {MIN_POINTS} needed", n)
    span = out["ds"].iloc[-1] - out["ds"].iloc[0]
    if span < MIN_SPAN:
        return NotEnoughData(service, metric, f"history spans {span}; at least {MIN_SPAN}", n)
    if float(out["y"].max() - out["y"].min()) == 0.0:
        value = float(out["y"].iloc[0])
        return NotEnoughData(service, metric, f"constant series ({value:g}): nothing to model", n)
    return out.reset_index(drop=True)


TRANSFORMS: dict[str, Transform] = {"volume": "sqrt", "latency": "log"}
"""Variance-stabilising transform per metric (others: none). Counts are Poisson-like
(variance grows with the mean: sqrt evens it out), latencies multiplicative and skewed
(log): fitted on the transformed scale, the interval is as wide at the daily peak as
the noise really is, and back-transformed it can never go negative."""


def _forward(y: np.ndarray, transform: Transform) -> np.ndarray:
    if transform == "sqrt":
        return np.sqrt(np.clip(y, 0, None))
    if transform == "log":
        return np.log1p(np.clip(y, 0, None))
    return y


def _inverse(y: np.ndarray, transform: Transform) -> np.ndarray:
    if transform == "sqrt":
        return np.square(np.clip(y, 0, None))
    if transform == "log":
        return np.expm1(np.clip(y, None, 50.0))
    return np.clip(y, 0, None)


def _fit_one(
    service: str, metric: str, data: pd.DataFrame, config: ForecastConfig
) -> ForecastOutcome:
    """Fit and predict one clean series (runs in a worker process or inline)."""
    silence_cmdstanpy()
    # Function-level: Prophet (and CmdStan) take ~2.5 s to import; only fits need them.
    from prophet import Prophet

    started = time.perf_counter()
    transform: Transform = config.transform or TRANSFORMS.get(metric, "none")
    span = data["ds"].iloc[-1] - data["ds"].iloc[0]
    model = Prophet(
        daily_seasonality=span >= timedelta(days=2),
        weekly_seasonality=span >= timedelta(days=7),
        yearly_seasonality=False,
        interval_width=config.interval_width,
        uncertainty_samples=config.uncertainty_samples,
        changepoint_prior_scale=config.changepoint_prior_scale,
        mcmc_samples=0,
    )
    fit_data = pd.DataFrame(
        {"ds": data["ds"], "y": _forward(data["y"].to_numpy(dtype="float64"), transform)}
    )
    try:
        model.fit(fit_data)
    except Exception as exc:  # Stan can fail on pathological input; report, never raise
        return NotEnoughData(service, metric, f"fit failed: {exc}", len(data))
    # A fixed step ("h", "5min"): Prophet's grid and the horizon are in whole steps.
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(config.freq).nanos, unit="ns")
    periods = max(1, int(pd.Timedelta(config.horizon).value // step.value))
    future = pd.DataFrame(
        {"ds": pd.date_range(data["ds"].iloc[-1] + step, periods=periods, freq=config.freq)}
    )
    grid = pd.concat([data[["ds"]], future], ignore_index=True)
    pred = model.predict(grid)
    frame = pd.DataFrame({"ds": grid["ds"]})
    frame["y"] = np.concatenate([data["y"].to_numpy(), np.full(periods, np.nan)])
    frame["yhat"] = _inverse(pred["yhat"].to_numpy(), transform)
    if config.uncertainty_samples > 0:
        frame["yhat_lower"] = _inverse(pred["yhat_lower"].to_numpy(), transform)
        frame["yhat_upper"] = _inverse(pred["yhat_upper"].to_numpy(), transform)
        samples = _inverse(np.asarray(model.predictive_samples(future)["yhat"]), transform)
    else:
        frame["yhat_lower"] = frame["yhat"]
        frame["yhat_upper"] = frame["yhat"]
        samples = np.empty((periods, 0))
    frame["future"] = np.concatenate([np.zeros(len(data), bool), np.ones(periods, bool)])
    frame["anomaly"] = ~frame["future"] & (
        (frame["y"] < frame["yhat_lower"]) | (frame["y"] > frame["yhat_upper"])
    )
    return Forecast(
        service=service,
        metric=metric,
        frame=frame,
        samples=np.asarray(samples, dtype="float64"),
        interval_width=config.interval_width,
        freq=config.freq,
        fit_seconds=time.perf_counter() - started,
        transform=transform,
    )


def forecast_series(
    df: pd.DataFrame,
    *,
    service: str = "",
    metric: str = "value",
    config: ForecastConfig | None = None,
) -> ForecastOutcome:
    """Forecast one series in this process.

    Args:
        df: ``ds``/``y`` (or ``timestamp``/``value``) at ``config.freq`` steps.
        service: Label for the result.
        metric: Label for the result.
        config: Fit options (defaults: 7 days ahead, hourly, 95 % interval).

    Returns:
        A :class:`Forecast`, or :class:`NotEnoughData` explaining why not.
    """
    clean = clean_series(df, service=service, metric=metric)
    if isinstance(clean, NotEnoughData):
        return clean
    return _fit_one(service, metric, clean, config or ForecastConfig())


def start_forecasts(
    series: Mapping[tuple[str, str], pd.DataFrame],
    *,
    config: ForecastConfig | None = None,
    workers: int | None = None,
    pool: Executor | None = None,
) -> Pending:
    """Start :func:`forecast_many`'s fits; ``.result()`` returns its dict."""
    cfg = config or ForecastConfig()
    early: dict[tuple[str, str], ForecastOutcome] = {}
    jobs: dict[Hashable, tuple[Any, ...]] = {}
    for key, df in series.items():
        clean = clean_series(df, service=key[0], metric=key[1])
        if isinstance(clean, NotEnoughData):
            early[key] = clean
        else:
            jobs[key] = (key[0], key[1], clean, cfg)
    keys = list(series)

    def finish(fitted: dict[Hashable, Any]) -> dict[tuple[str, str], ForecastOutcome]:
        merged: dict[tuple[str, str], ForecastOutcome] = {**early}
        for key in keys:
            if key in fitted:
                merged[key] = fitted[key]
        return {key: merged[key] for key in keys}

    return submit_parallel(
        _fit_one,
        jobs,
        workers=workers,
        initializer=prepare_worker,
        weight=lambda a: len(a[2]),
        pool=pool,
        finish=finish,
    )


FitRunner = Callable[[Mapping[tuple[str, str], pd.DataFrame], ForecastConfig], Pending]
"""Starts a report's fits elsewhere than :func:`start_forecasts`' process pool (the Dask
fan-out of ``flows/forecast_dask.py``); ``.result()`` returns :func:`forecast_many`'s dict."""


def forecast_many(
    series: Mapping[tuple[str, str], pd.DataFrame],
    *,
    config: ForecastConfig | None = None,
    workers: int | None = None,
    pool: Executor | None = None,
) -> dict[tuple[str, str], ForecastOutcome]:
    """Forecast many series, in parallel across processes.

    Args:
        series: ``(service, metric) -> ds/y frame``.
        config: Fit options shared by all series.
        workers: Worker processes (default: the CPU count); 1, or at most two series
            to fit, fits inline (a process pool costs ~3 s to start).
        pool: A running pool (:func:`shared_pool`) to use instead of a new one.

    Returns:
        ``(service, metric) -> Forecast | NotEnoughData``, in the input's order.
    """
    result: dict[tuple[str, str], ForecastOutcome] = start_forecasts(
        series, config=config, workers=workers, pool=pool
    ).result()
    return result


def hourly_series(
    store: MetricsStore,
    *,
    days: int = 30,
    until: datetime | None = None,
    table: str = "calls",
) -> pd.DataFrame:
    """Hourly per-service aggregates from the metrics store (DuckDB).

    Args:
        store: The metrics store.
        days: How many days back from ``until`` to read.
        until: End of the window (default: the newest row's timestamp).
        table: ``calls`` or ``probes`` (both have ts/service/ok/latency_ms).

    Returns:
        Columns ``service``, ``ds`` (naive UTC hour), ``calls``, ``failures``,
        ``mean_latency_ms`` and ``p95_latency_ms`` (successful calls; NaN when none).
    """
    if table not in ("calls", "probes"):
        raise ValueError(f"table must be calls or probes, got {table!r}")
    end = f"(SELECT max(ts) FROM {table})" if until is None else "?"
    params: list[Any] = [] if until is None else [until]
    sql = f"""
        SELECT service,
               date_trunc('hour', ts) AS ds,
               count(*) AS calls,
               count(*) FILTER (WHERE NOT ok) AS failures,
               avg(latency_ms) FILTER (WHERE ok) AS mean_latency_ms,
               quantile_cont(latency_ms, 0.95) FILTER (WHERE ok) AS p95_latency_ms
        FROM {table}
        WHERE ts > {end} - INTERVAL {int(days)} DAY AND ts <= {end}
        GROUP BY ALL ORDER BY service, ds
    """
    frame = store.query(sql, params + params if params else None)
    if len(frame):
        frame["ds"] = pd.to_datetime(frame["ds"], utc=True).dt.tz_localize(None)
    for col in ("calls", "failures"):
        frame[col] = frame[col].astype("int64")
    return frame


def error_rate_series(hourly: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """``(service, "error_rate") -> ds/y``: failed share of each hour's calls.

    For the streaming detector (the third series the issue asks it to watch); not
    forecast with Prophet (a share in [0, 1] with mostly zeros does not fit its model).
    """
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for svc, rows in hourly[hourly["calls"] > 0].groupby("service", sort=True):
        out[(str(svc), "error_rate")] = pd.DataFrame(
            {"ds": rows["ds"].to_numpy(), "y": (rows["failures"] / rows["calls"]).to_numpy()}
        )
    return out


def series_from_hourly(
    hourly: pd.DataFrame, services: list[str] | None = None
) -> dict[tuple[str, str], pd.DataFrame]:
    """Split :func:`hourly_series` output into ``(service, metric) -> ds/y`` frames.

    Volume hours with no row are filled with 0 between a service's first and last hour
    (no calls is a real observation for volume; for latency it is simply missing).
    """
    out: dict[tuple[str, str], pd.DataFrame] = {}
    names = services if services is not None else sorted(hourly["service"].unique())
    for svc in names:
        rows = hourly[hourly["service"] == svc]
        if rows.empty:
            out[(svc, "volume")] = pd.DataFrame({"ds": [], "y": []})
            out[(svc, "latency")] = pd.DataFrame({"ds": [], "y": []})
            continue
        vol = rows.set_index("ds")["calls"].astype("float64")
        full = pd.date_range(vol.index.min(), vol.index.max(), freq="h")
        vol = vol.reindex(full, fill_value=0.0)
        out[(svc, "volume")] = pd.DataFrame({"ds": vol.index, "y": vol.to_numpy()})
        out[(svc, "latency")] = pd.DataFrame(
            {"ds": rows["ds"].to_numpy(), "y": rows["p95_latency_ms"].to_numpy()}
        )
    return out


def merge_stream_scores(
    forecast: Forecast, scores: pd.DataFrame | None, *, threshold: float = 0.5
) -> pd.DataFrame:
    """Combine the forecast interval with a streaming detector's scores.

    The streaming detector (``analytics.anomaly``) flags a point within seconds but has
    no seasonal context; the forecast interval knows the daily/weekly shape but only
    judges after the fact. A point both flag is ``confirmed``.

    Args:
        forecast: A fitted forecast.
        scores: ``ds``/``timestamp`` + ``score`` (0-1) per point, any resolution (the
            maximum per forecast step is used), or ``None``.
        threshold: Score at or above which the streaming detector flags a point, when
            ``scores`` has no ``is_anomaly`` column (``score_series`` output has one).

    Returns:
        The forecast's history frame with ``stream_score`` (NaN without scores),
        ``stream_flag`` and ``confirmed`` (both detectors flag it) columns added.
    """
    hist = forecast.history.copy()
    hist["stream_score"] = np.nan
    hist["stream_flag"] = False
    if scores is not None and len(scores) and "score" in scores.columns:
        ts_col = "ds" if "ds" in scores.columns else "timestamp"
        ts = pd.to_datetime(scores[ts_col], utc=True).dt.tz_localize(None)
        per_step = (
            pd.DataFrame({"ds": ts.dt.floor(forecast.freq), "s": scores["score"].to_numpy()})
            .groupby("ds")["s"]
            .max()
        )
        hist["stream_score"] = hist["ds"].map(per_step).astype("float64")
        if "is_anomaly" in scores.columns:  # the detector's own threshold decides
            flags = (
                pd.DataFrame({"ds": ts.dt.floor(forecast.freq), "f": scores["is_anomaly"]})
                .groupby("ds")["f"]
                .any()
            )
            hist["stream_flag"] = hist["ds"].map(flags).fillna(False).astype(bool)
        else:
            hist["stream_flag"] = hist["stream_score"].fillna(0.0) >= threshold
    hist["confirmed"] = hist["anomaly"] & hist["stream_flag"]
    return hist
