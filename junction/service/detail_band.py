"""The slow parts of the service page: the forecast band with anomalies, and co-failures.

Both read more than the window (a forecast needs history; co-failures compare every
service), so they are computed off the request path, in a thread, and kept for a short
while in a :class:`TtlCache` per (service, window): the page loads them after it renders.

The band is of the p95 latency of successful calls:

* **prophet** (:func:`analytics.forecast.forecast_series`): windows longer than
  :data:`STREAMING_MAX_WINDOW` (6 h), fitted on hourly points over
  :data:`PROPHET_HISTORY` (or the window, if longer); anomalies are the window's points
  outside the 99 % interval. Prophet needs a day of history and 24 points; without them
  the page falls back, saying why.
* **streaming** (:class:`analytics.anomaly.StreamingDetector`): shorter windows, at the
  page's bucket width, the detector warmed up on the buckets before the window; the band
  is a trailing robust one (median +- 3 sigma from the MAD of the previous points).
* **band**: too few points for the detector's warm-up: the robust band alone, a point
  above or below it is the anomaly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from analytics.anomaly import DetectorConfig, StreamingDetector
from analytics.forecast import Forecast, ForecastConfig, forecast_series
from junction.service.detail import PeerCoFailure, Window, peer_cofailures, window_label
from junction.store import MetricsStore
from junction.workflows.depmap import DependencyMap, build_map

STREAMING_MAX_WINDOW = 6 * 3600
"""Windows up to this many seconds get the streaming detector, not a Prophet fit."""
PROPHET_HISTORY = timedelta(days=7)
"""History a Prophet fit reads (at least the window)."""
COFAILURE_LOOKBACK = timedelta(hours=24)
"""Longest history the co-failures compare (every service's calls, minute by minute)."""
BAND_TRAILING = 30
"""Previous points the robust band is computed from."""
BAND_MIN_POINTS = 5
"""Previous points needed before a point has a band."""
BAND_SIGMAS = 3.0
CACHE_SECONDS = 300.0
"""How long a computed band or co-failure list is reused."""

BandMethod = Literal["prophet", "streaming", "band", "none"]


class BandPoint(BaseModel):
    """One step of the series with its expected range."""

    ts: datetime = Field(description="Start of the step (UTC).")
    value: float | None = Field(None, description="Observed p95 latency (ms); null: no calls.")
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    score: float | None = Field(None, description="Streaming detector score (0-1), when it ran.")
    anomaly: bool = False


class ForecastBand(BaseModel):
    """The p95 latency of the window against its expected band."""

    metric: str = "p95_latency_ms"
    method: BandMethod = Field(description="prophet, streaming, band, or none (no data).")
    reason: str = Field(description="Why this method was used.")
    step_seconds: int
    points: list[BandPoint]
    anomalies: int
    computed_at: datetime


class CoFailures(BaseModel):
    """Services that failed in the same minutes as this one."""

    since: datetime = Field(description="Start of the history compared.")
    peers: list[PeerCoFailure] = Field(description="Strongest first.")
    groups: list[list[str]] = Field(description="Co-failure groups containing the service.")


class Insights(BaseModel):
    """The slow panels of the service page."""

    band: ForecastBand
    cofailures: CoFailures


# --------------------------------------------------------------------------- series


def p95_series(
    store: MetricsStore, service: str, since: datetime, until: datetime, step: int
) -> pd.DataFrame:
    """``ds`` (naive UTC step start) and ``y`` (p95 latency of successful calls) per step.

    Steps without a successful call are left out.
    """
    frame = store.query(
        """
        SELECT to_timestamp(CAST(floor(epoch(ts) / ?) AS BIGINT) * ?) AS ds,
               quantile_cont(latency_ms, 0.95) AS y
        FROM calls
        WHERE service = ? AND date >= ? AND date <= ? AND ts > ? AND ts <= ? AND ok
        GROUP BY 1 ORDER BY 1
        """,
        [step, step, service, since.date(), until.date(), since, until],
    )
    if len(frame):
        frame["ds"] = pd.to_datetime(frame["ds"], utc=True).dt.tz_localize(None)
    return frame


def robust_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected value and band of each point from the :data:`BAND_TRAILING` points before
    it: median +- :data:`BAND_SIGMAS` robust sigmas (1.4826 x MAD, floored at 5 % of the
    median so a flat series does not flag every wiggle). NaN until
    :data:`BAND_MIN_POINTS` points came before."""
    prior = pd.Series(values).shift(1).rolling(BAND_TRAILING, min_periods=BAND_MIN_POINTS)
    median = prior.median()
    mad = prior.apply(lambda w: float(np.median(np.abs(w - np.median(w)))), raw=True)
    sigma = np.maximum(1.4826 * mad.to_numpy(), 0.05 * np.abs(median.to_numpy()))
    center = median.to_numpy()
    return center, center - BAND_SIGMAS * sigma, center + BAND_SIGMAS * sigma


def _f(value: Any) -> float | None:
    number = float(value)
    return round(number, 3) if np.isfinite(number) else None


def _timeline(window: Window, step: int) -> pd.DatetimeIndex:
    first = int(window.since.timestamp() // step) * step
    last = int(window.until.timestamp() // step) * step
    return pd.date_range(
        pd.Timestamp(first, unit="s"), pd.Timestamp(last, unit="s"), freq=pd.Timedelta(seconds=step)
    )


def _prophet_band(
    store: MetricsStore, service: str, window: Window, now: datetime
) -> ForecastBand | str:
    history = max(PROPHET_HISTORY, timedelta(seconds=window.seconds))
    series = p95_series(store, service, window.until - history, window.until, 3600)
    outcome = forecast_series(
        series,
        service=service,
        metric="latency",
        config=ForecastConfig(horizon=timedelta(hours=1), uncertainty_samples=50),
    )
    if not isinstance(outcome, Forecast):
        return f"Prophet not fitted: {outcome.reason}"
    fitted = outcome.history.set_index("ds")
    points = []
    for ts in _timeline(window, 3600):
        row = fitted.loc[ts] if ts in fitted.index else None
        if row is None:
            points.append(BandPoint(ts=ts.tz_localize(UTC)))  # no successful call
            continue
        points.append(
            BandPoint(
                ts=ts.tz_localize(UTC),
                value=_f(row["y"]),
                expected=_f(row["yhat"]),
                lower=_f(row["yhat_lower"]),
                upper=_f(row["yhat_upper"]),
                score=None,
                anomaly=bool(row["anomaly"]),
            )
        )
    return ForecastBand(
        method="prophet",
        reason=f"Prophet fitted on {len(fitted)} hourly points "
        f"({outcome.interval_width:.0%} interval)",
        step_seconds=3600,
        points=points,
        anomalies=sum(p.anomaly for p in points),
        computed_at=now,
    )


def _streaming_band(
    store: MetricsStore, service: str, window: Window, now: datetime, why: str
) -> ForecastBand:
    config = DetectorConfig()
    step = window.bucket
    warm = window.since - timedelta(seconds=step * (config.warmup + BAND_TRAILING))
    series = p95_series(store, service, warm, window.until, step)
    if series.empty:
        return ForecastBand(
            method="none",
            reason=f"{why}; no successful calls in the window",
            step_seconds=step,
            points=[],
            anomalies=0,
            computed_at=now,
        )
    values = series["y"].to_numpy(dtype="float64")
    center, lower, upper = robust_band(values)
    streaming = len(values) > config.warmup
    scores = np.full(len(values), np.nan)
    if streaming:
        detector = StreamingDetector(config)
        scores = np.array(
            [detector.update(t, v) for t, v in zip(series["ds"], values, strict=True)]
        )
    by_ts = {ts: i for i, ts in enumerate(series["ds"])}
    points = []
    for ts in _timeline(window, step):
        i = by_ts.get(ts)
        if i is None:
            points.append(BandPoint(ts=ts.tz_localize(UTC)))  # no successful call
            continue
        if streaming:
            anomaly = bool(scores[i] >= config.threshold)
        else:
            anomaly = bool(np.isfinite(center[i]) and not lower[i] <= values[i] <= upper[i])
        points.append(
            BandPoint(
                ts=ts.tz_localize(UTC),
                value=_f(values[i]),
                expected=_f(center[i]),
                lower=_f(lower[i]),
                upper=_f(upper[i]),
                score=_f(scores[i]),
                anomaly=anomaly,
            )
        )
    if streaming:
        reason = f"{why}; streaming detector over {len(values)} points"
    else:
        reason = (
            f"{why}; {len(values)} points are too few for the streaming detector "
            f"(warm-up {config.warmup}): robust band of the previous {BAND_TRAILING} points"
        )
    return ForecastBand(
        method="streaming" if streaming else "band",
        reason=reason,
        step_seconds=step,
        points=points,
        anomalies=sum(p.anomaly for p in points),
        computed_at=now,
    )


def forecast_band(
    store: MetricsStore, service: str, window: Window, now: datetime | None = None
) -> ForecastBand:
    """The p95 latency of ``service`` over ``window`` with its band and anomalies.

    Prophet for windows over 6 hours with enough history (seconds: call it off the event
    loop), else the streaming detector or the robust band (see the module docstring).
    """
    at = now or datetime.now(UTC)
    if window.seconds <= STREAMING_MAX_WINDOW:
        why = f"a {window_label(window.seconds)} window is too short for a seasonal forecast"
        return _streaming_band(store, service, window, at, why)
    fitted = _prophet_band(store, service, window, at)
    if isinstance(fitted, ForecastBand):
        return fitted
    return _streaming_band(store, service, window, at, fitted)


def cofailure_since(window: Window) -> datetime:
    """Start of the history the co-failures compare: the window, at most
    :data:`COFAILURE_LOOKBACK`."""
    return window.until - min(timedelta(seconds=window.seconds), COFAILURE_LOOKBACK)


# --------------------------------------------------------------------------- the cache

T = TypeVar("T")


class TtlCache:
    """Results computed in a thread, kept for ``ttl`` seconds; callers asking for a key
    being computed wait for that one computation.

    Args:
        ttl: Seconds a result is reused.
        max_entries: Oldest results are dropped beyond this many.
        serial: One computation at a time (a Prophet fit takes a core for seconds).
        clock: Monotonic clock (tests).
    """

    def __init__(
        self,
        ttl: float = CACHE_SECONDS,
        *,
        max_entries: int = 512,
        serial: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._done: dict[Hashable, tuple[float, Any]] = {}
        self._running: dict[Hashable, asyncio.Future[Any]] = {}
        self._slot = asyncio.Semaphore(1) if serial else None
        self.computed = 0

    def peek(self, key: Hashable) -> Any:
        """The fresh result for ``key``, or ``None`` (never computes)."""
        entry = self._done.get(key)
        if entry is None or self._clock() - entry[0] >= self.ttl:
            return None
        return entry[1]

    async def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The fresh result for ``key``, computing it in a thread when there is none.

        The computation is a task of its own: a caller that goes away (a closed page)
        does not cancel it, and its result is cached for the next one.
        """
        fresh: T | None = self.peek(key)
        if fresh is not None:
            return fresh
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._compute(key, compute))
            task.add_done_callback(_retrieve)
            self._running[key] = task
        result: T = await asyncio.shield(task)
        return result

    async def _compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        try:
            # Waiting happens here, not in a worker thread: the default executor's few
            # threads stay free for the requests' own queries.
            async with self._slot or contextlib.nullcontext():
                self.computed += 1
                value = await asyncio.to_thread(compute)
        finally:
            self._running.pop(key, None)
        now = self._clock()
        for stale in [k for k, (at, _) in self._done.items() if now - at >= self.ttl]:
            del self._done[stale]
        self._done[key] = (now, value)
        while len(self._done) > self.max_entries:
            self._done.pop(next(iter(self._done)))
        return value


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a computation's failure as seen when every caller went away before it ended."""
    if not task.cancelled():
        task.exception()


async def insights(cache: TtlCache, store: MetricsStore, service: str, window: Window) -> Insights:
    """The band and co-failures of ``service`` over ``window``, from ``cache`` or computed.

    The dependency map with co-failures compares every service, so one map per lookback
    serves every service's page.
    """
    band = await cache.get(
        ("band", service, window.seconds), lambda: forecast_band(store, service, window)
    )
    since, depmap = await cache.get(
        ("depmap", int(window.until.timestamp() - cofailure_since(window).timestamp())),
        lambda: _depmap(store, cofailure_since(window)),
    )
    peers, groups = peer_cofailures(depmap, service)
    return Insights(band=band, cofailures=CoFailures(since=since, peers=peers, groups=groups))


def _depmap(store: MetricsStore, since: datetime) -> tuple[datetime, DependencyMap]:
    return since, build_map(store=store, since=since)


__all__ = [
    "CACHE_SECONDS",
    "STREAMING_MAX_WINDOW",
    "BandPoint",
    "CoFailures",
    "ForecastBand",
    "Insights",
    "TtlCache",
    "cofailure_since",
    "forecast_band",
    "insights",
    "p95_series",
    "robust_band",
]
