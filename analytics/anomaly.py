"""The production streaming anomaly detector.

Point by point, no look-ahead: the score of a point depends only on it and the points
before it, so appending later points never changes an earlier score. Three stages:

1. **Robust local statistics** (``FeatureExtractor``): robust z-scores (median / MAD of the
   *previous* points) of the value over a short and a long window, of the first difference,
   of the mean of the last few points (a level shift shows there before any single point
   looks odd), of the change since the same time yesterday (the daily period is learnt
   from the first timestamps: a daily pattern that stops or shifts) and of the recent mean
   step size (volatility rising). Scales have a floor so quantised or flat series do not
   divide by zero (a sliver of the window's range without its extreme values: one spike
   must not widen every scale after it). Plus **contextual novelty** (``ContextNovelty``,
   after CAD-OSE): how many of the last few points formed a context never seen before:
   two consecutive (level, step) pairs, or a level at a time of day, levels quantised on
   the range learnt over the first day. ``DetectorConfig.features`` picks which features score.
2. **Records** (``RecordScorer``): each feature is divided by the largest value it
   reached over the previous ``history`` points, so a point scores high when it beats
   what *this* series routinely does (a z of 8 is normal for a noisy series, alarming for
   a quiet one). Score = ``r / (1 + r)`` of the largest ratio: 0.5 = ties the record.
   A run of record-breaking points raises the record at most ``record_clip`` fold, so
   one spike cannot blind a feature for the whole window.
3. **Suppression**: after a detection (score >= ``threshold``) the next ``suppress`` points
   are damped: NAB-style scoring rewards only the earliest detection of an incident, and
   repeated alarms for the same incident are noise for an operator too.

The first ``warmup`` points only feed the statistics and score 0 (NAB does not score the
first 15 % of a series either).

Measured on NAB (``bench/nab.py``; see bench/README.md "Anomaly detection (NAB)"). For
alarms on operations metrics (a sensitivity, a seasonal expectation, one alarm per
incident, an alert gate) see :mod:`analytics.anomaly_alarm` (bench/README.md "False alarms").
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of the detector: one set for every series (tuned on the whole NAB corpus).

    Attributes:
        short_window: Points of the short robust window (value z-score).
        long_window: Points of the long robust window (value, difference, level z-scores).
        mean_window: Previous points averaged with the current one (level-shift z-score).
        refresh: Recompute the long-window statistics every this many points (speed).
        warmup: Points that only train the statistics; they score 0.
        volatility_window: Points whose mean absolute step is the volatility feature.
        max_period: Longest daily period (points per day) kept for the daily feature.
        min_seasonal: Day-over-day changes needed before the daily feature scores.
        history: Points over which each feature's record (largest z-score) is kept.
        min_record: Floor of a feature's record, so tiny z-scores never score high.
        record_clip: A run of record-breaking points enters a feature's history at most
            this many times the record from before the run (0: no limit), so one spike
            (a 5,000 on a series around 50) does not hide what comes after it for the
            whole ``history`` window.
        range_trim: Values left out at each end of a window's range when it sets the
            scale floor (flat or quantised data), so one spike does not inflate the
            scale of every point after it.
        daily_smooth: Compare with the median of yesterday's value and its two
            neighbours, so a spike yesterday is not an anomaly again today.
        threshold: Score from which a point is a detection (``is_anomaly``).
        suppress: Points after a detection whose scores are damped.
        damping: Factor applied to scores during suppression.
        novelty_bins: Value levels of the contextual-novelty feature (over the range
            seen while learning plus a 10 % margin each side).
        novelty_order: Consecutive levels that form one context.
        novelty_step_levels: Resolution of the step (difference) in the second novelty
            feature, whose contexts are (level, step) pairs: steps are rounded to
            ``span / novelty_step_levels`` (at most 3 such units either way).
        novelty_step_order: Consecutive (level, step) pairs that form one context.
        novelty_time_bins: Parts of the day in the third novelty feature, whose contexts
            are (level, part of the day) pairs: a level never seen at this time of day
            (0: off; it is off anyway for points without timestamps).
        novelty_window: Recent points whose novel contexts are counted.
        novelty_learn_max: Longest time (points) the novelty's level grid is learnt.
        novelty_min_record: Floor of the novelty feature's record: after a stretch with
            no novel context at all, one alone does not beat it (two do).
        novelty_step_min_record: The same for the (level, step) novelty, whose finer
            contexts turn up new more often by chance (three novel ones needed).
        novelty_time_min_record: The same for the (level, time of day) novelty.
        features: The features that score (names from ``FeatureExtractor.names``). The
            others are computed but left out: on NAB the short-window value z-score, the
            first difference and the level-only novelty each cost more in false alarms
            than they caught (see bench/README.md).
    """

    short_window: int = 64
    long_window: int = 512
    mean_window: int = 6
    refresh: int = 4
    warmup: int = 150
    volatility_window: int = 24
    max_period: int = 2016
    min_seasonal: int = 32
    history: int = 1500
    min_record: float = 0.0
    record_clip: float = 10.0
    range_trim: int = 1
    daily_smooth: bool = True
    threshold: float = 0.515
    suppress: int = 120
    damping: float = 0.0
    novelty_bins: int = 12
    novelty_order: int = 3
    novelty_step_levels: int = 4
    novelty_step_order: int = 2
    novelty_time_bins: int = 12
    novelty_window: int = 12
    novelty_learn_max: int = 600
    novelty_min_record: float = 1.0
    novelty_step_min_record: float = 2.0
    novelty_time_min_record: float = 2.0
    features: tuple[str, ...] = (
        "value_long",
        "level",
        "daily",
        "volatility",
        "novelty_steps",
        "novelty_time",
    )


class _Ring:
    """Fixed-size buffer of the last ``size`` floats (order irrelevant to medians)."""

    def __init__(self, size: int) -> None:
        self.buf = np.zeros(size)
        self.count = 0
        self.size = size

    def push(self, x: float) -> None:
        self.buf[self.count % self.size] = x
        self.count += 1

    def values(self) -> np.ndarray:
        return self.buf if self.count >= self.size else self.buf[: self.count]


class _WindowMax:
    """The largest of the last ``size`` values pushed, in O(1) amortised per push.

    A deque of (position, value) whose values decrease: a value that a newer, larger one
    outlives can never be the maximum again and is dropped.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self._q: deque[tuple[int, float]] = deque()

    def push(self, x: float) -> None:
        q = self._q
        while q and q[-1][1] <= x:
            q.pop()
        q.append((self.count, x))
        self.count += 1
        if q[0][0] <= self.count - 1 - self.size:
            q.popleft()

    def max(self) -> float:
        """The maximum of the window (``-inf`` when nothing was pushed)."""
        return self._q[0][1] if self._q else -math.inf


def _median(a: np.ndarray) -> float:
    # np.median's generic path (NaN checks, mean of the middle) costs 5x this here.
    m = a.size
    k = m // 2
    if m % 2:
        return float(np.partition(a, k)[k])
    p = np.partition(a, (k - 1, k))
    return float(0.5 * (p[k - 1] + p[k]))


def _robust(a: np.ndarray, trim: int) -> tuple[float, float, float]:
    """Median, MAD and the range of ``a`` without its ``trim`` most extreme values at
    each end.

    Trimming the range keeps one spike from setting the scale floor of every point
    that has it in its window. One ``np.partition`` for the median and both ends.
    """
    m = a.size
    k = m // 2
    j = min(max(trim, 0), (m - 1) // 2)
    kth = {j, m - 1 - j, k}
    if m % 2 == 0:
        kth.add(k - 1)
    p = np.partition(a, sorted(kth))
    med = float(p[k]) if m % 2 else float(0.5 * (p[k - 1] + p[k]))
    return med, _median(np.abs(a - med)), float(p[m - 1 - j] - p[j])


def _seconds(ts: Any) -> float | None:
    """Seconds since the epoch of a timestamp (datetime, pandas/numpy time or a number)."""
    if isinstance(ts, int | float):
        return float(ts)
    if hasattr(ts, "timestamp"):
        return float(ts.timestamp())
    if isinstance(ts, np.datetime64):
        return float(ts.astype("datetime64[ms]").astype(np.int64)) / 1000.0
    return None


class ContextNovelty:
    """How many of the last few points formed a sequence of levels never seen before.

    A contextual detector in the spirit of CAD-OSE (NAB's Contextual Anomaly Detector): the
    value is quantised into ``bins`` levels of the range seen while learning (values
    outside it get a few overflow levels), each point's context is the tuple of the last
    ``order`` levels (with ``step_levels``, of the last ``order`` (level, step) pairs, the
    step quantised too, so a new way of moving is novel as well as a new sequence of
    places; with ``phases``, of (level, part of the day) pairs: a level never seen at this
    time of day), and a context is *novel* the first time it occurs. The feature is the
    number of novel contexts among the last ``window`` points: a series that starts
    tracing a shape it never traced before (a new rhythm, a stall, a new plateau) scores
    even when no single value, step or level is extreme. The level grid is learnt over
    the warmup or one daily period, whichever is longer (at most ``novelty_learn_max``
    points: a grid from half a day would call the other half of the daily cycle novel),
    then fixed, so a context seen once stays known.
    """

    def __init__(
        self, cfg: DetectorConfig, order: int, step_levels: int = 0, phases: int = 0
    ) -> None:
        self.bins = cfg.novelty_bins
        self.order = order
        self.step_levels = step_levels
        self.phases = phases
        self.warmup = cfg.warmup
        self.learn_max = max(cfg.novelty_learn_max, cfg.warmup)
        # The values (and times), until the grid is fixed.
        self.buffer: list[tuple[float, float | None]] | None = []
        self.levels: deque[tuple[int, int, int]] = deque(maxlen=order)
        self.recent: deque[int] = deque(maxlen=cfg.novelty_window)
        self.seen: set[tuple[tuple[int, int, int], ...]] = set()
        self.lo = 0.0
        self.span = 1.0
        self.prev: float | None = None
        self.n = 0

    def _token(self, value: float, seconds: float | None) -> tuple[int, int, int]:
        b = min(max(math.floor((value - self.lo) / self.span * self.bins), -3), self.bins + 2)
        step = phase = 0
        if self.step_levels and self.prev is not None:
            step = min(max(round((value - self.prev) / self.span * self.step_levels), -3), 3)
        if self.phases and seconds is not None:
            phase = int((seconds % 86400.0) // (86400.0 / self.phases))
        self.prev = value
        return b, step, phase

    def _fix_grid(self) -> None:
        assert self.buffer is not None
        lo = min(v for v, _ in self.buffer)
        hi = max(v for v, _ in self.buffer)
        span = hi - lo if hi > lo else abs(hi) + 1.0
        self.lo, self.span = lo - 0.1 * span, 1.2 * span
        for v, t in self.buffer:
            self.levels.append(self._token(v, t))
            if len(self.levels) == self.order:
                self.seen.add(tuple(self.levels))
        self.buffer = None

    def update(
        self, value: float, period: int | None = None, seconds: float | None = None
    ) -> float:
        """Feed one value; the count of novel contexts in the recent window (NaN while
        the level grid is being learnt).

        Args:
            value: The new value.
            period: Points per day if known (it is, from the 17th point on, when the
                series has timestamps); sets how long the level grid is learnt.
            seconds: The point's time (seconds since the epoch), for ``phases``.
        """
        novel = 0
        learn = min(max(self.warmup, period or 0), self.learn_max)
        if self.buffer is not None:
            self.buffer.append((value, seconds))
            self.n += 1
            if self.n >= learn:
                self._fix_grid()
            return math.nan
        else:
            self.levels.append(self._token(value, seconds))
            key = tuple(self.levels)
            if key not in self.seen:
                self.seen.add(key)
                novel = 1
        self.n += 1
        self.recent.append(novel)
        return float(sum(self.recent))


class FeatureExtractor:
    """Robust z-scores of each new point against the points before it."""

    names = (
        "value_short",
        "value_long",
        "diff",
        "level",
        "daily",
        "volatility",
        "novelty",
        "novelty_steps",
        "novelty_time",
    )

    def __init__(self, cfg: DetectorConfig, only: Collection[str] | None = None) -> None:
        """Start with no history.

        Args:
            cfg: The detector's parameters.
            only: Compute only these features (the others are NaN); default: all of them.
        """
        self.cfg = cfg
        wanted = set(self.names if only is None else only)
        # The features that cost a statistic of their own per point, skipped when unused.
        self._short_on = "value_short" in wanted
        self._diff_on = "diff" in wanted
        self._novelty_on = "novelty" in wanted
        self.short = _Ring(cfg.short_window)
        self.long = _Ring(cfg.long_window)
        self.diffs = _Ring(cfg.long_window)
        self.abs_diffs = _Ring(cfg.long_window)
        self.recent_abs_diffs: deque[float] = deque(maxlen=max(cfg.volatility_window - 1, 1))
        self.seasonal = _Ring(cfg.long_window)
        self.recent: deque[float] = deque(maxlen=cfg.mean_window)
        self.prev: float | None = None
        self.n = 0
        self._long_stats = (0.0, 1.0, 0.0, 1.0, 0.0, 1.0)
        self._seasonal_stats = (0.0, 1.0)
        # The daily period in points, from the first intervals (None: no daily context).
        self._first_times: list[float] = []
        self.period: int | None = None
        self._lag: deque[float] | None = None
        self.novelty = ContextNovelty(cfg, cfg.novelty_order)
        self.novelty_steps = ContextNovelty(
            cfg, cfg.novelty_step_order, max(cfg.novelty_step_levels, 1)
        )
        self.novelty_time = ContextNovelty(cfg, 1, phases=cfg.novelty_time_bins)

    def _stats(self, ref: np.ndarray) -> tuple[float, float]:
        """Median and robust scale of ``ref``.

        MAD is 0 on quantised or flat data: the scale has a floor of a sliver of the
        (trimmed) range seen.
        """
        med, mad, spread = _robust(ref, self.cfg.range_trim)
        floor = 0.01 * spread + 1e-6 * abs(med) + 1e-9
        return med, max(_MAD_TO_SIGMA * mad, floor)

    def _learn_period(self, seconds: float | None) -> None:
        if seconds is None or len(self._first_times) > 16:
            return
        self._first_times.append(seconds)
        if len(self._first_times) == 17:
            step = float(np.median(np.diff(self._first_times)))
            period = round(86400.0 / step) if step > 0 else 0
            if 4 <= period <= self.cfg.max_period:
                self.period = period
                # With daily_smooth, one more: the points either side of yesterday's.
                self._lag = deque(maxlen=period + int(self.cfg.daily_smooth))

    def _daily(self, value: float) -> float:
        """z-score of the change since the same time yesterday (0 until learnt)."""
        if self._lag is None:
            return 0.0
        z = 0.0
        if len(self._lag) == self._lag.maxlen:
            if self.cfg.daily_smooth:
                # Yesterday's value as the median of it and its two neighbours: a spike
                # yesterday is not compared with today (a level change still is).
                a, b, c = self._lag[0], self._lag[1], self._lag[2]
                e = value - (a + b + c - min(a, b, c) - max(a, b, c))
            else:
                e = value - self._lag[0]
            if self.seasonal.count >= self.cfg.min_seasonal:
                if self.seasonal.count % self.cfg.refresh == 0 or (
                    self.seasonal.count < self.cfg.long_window
                ):
                    self._seasonal_stats = self._stats(self.seasonal.values())
                med, scale = self._seasonal_stats
                z = abs(e - med) / scale
            self.seasonal.push(e)
        self._lag.append(value)
        return z

    def update(self, value: float, ts: Any = None) -> np.ndarray | None:
        """Feed one value; its z-scores (None until there is history to compare with)."""
        seconds = _seconds(ts) if ts is not None else None
        self._learn_period(seconds)
        daily = self._daily(value)
        novelty = self.novelty.update(value, self.period) if self._novelty_on else math.nan
        novelty_steps = self.novelty_steps.update(value, self.period)
        # Off (NaN: never scored) without a time of day.
        novelty_time = (
            self.novelty_time.update(value, self.period, seconds)
            if seconds is not None and self.cfg.novelty_time_bins > 0
            else math.nan
        )
        feats: np.ndarray | None = None
        diff = value - self.prev if self.prev is not None else 0.0
        if self.n >= 8:
            if self.n % self.cfg.refresh == 0 or self.n < self.cfg.long_window:
                self._long_stats = (
                    *self._stats(self.long.values()),
                    *(self._stats(self.diffs.values()) if self._diff_on else (0.0, 1.0)),
                    *self._stats(self.abs_diffs.values()),
                )
            med_l, sc_l, med_d, sc_d, med_a, sc_a = self._long_stats
            med_s, sc_s = self._stats(self.short.values()) if self._short_on else (math.nan, 1.0)
            level = (sum(self.recent) + value) / (len(self.recent) + 1)
            # Volatility: the recent mean step size against the usual one (only increases).
            vol = (sum(self.recent_abs_diffs) + abs(diff)) / (len(self.recent_abs_diffs) + 1)
            feats = np.array(
                [
                    abs(value - med_s) / sc_s,
                    abs(value - med_l) / sc_l,
                    abs(diff - med_d) / sc_d if self._diff_on else math.nan,
                    abs(level - med_l) / sc_l,
                    daily,
                    max(0.0, vol - med_a) / sc_a,
                    novelty,
                    novelty_steps,
                    novelty_time,
                ]
            )
        self.short.push(value)
        self.long.push(value)
        if self.prev is not None:
            self.diffs.push(diff)
            self.abs_diffs.push(abs(diff))
            self.recent_abs_diffs.append(abs(diff))
        self.recent.append(value)
        self.prev = value
        self.n += 1
        return feats


class RecordScorer:
    """Scores a point by how far its z-scores exceed the largest of the recent past.

    A z-score is only surprising relative to what this series usually does: a noisy series
    routinely produces z = 8, a quiet one never does. So each feature's z-score is divided
    by the largest value that feature reached over the previous ``history`` points; a
    ratio above 1 is a new record. The score is ``r / (1 + r)`` of the largest ratio ``r``
    (0.5 = equal to the recent record).
    """

    def __init__(
        self, cfg: DetectorConfig, n_features: int, floors: list[float] | None = None
    ) -> None:
        self.cfg = cfg
        self.past = [_WindowMax(cfg.history) for _ in range(n_features)]
        # Per-feature floors of the record (count features need one: see DetectorConfig).
        self.floors = [max(cfg.min_record, f) for f in floors or [0.0] * n_features]
        self.since_detection = cfg.suppress + 1
        self.n = 0
        # Per feature: the record when the current run of record-breaking points began.
        self.base: list[float | None] = [None] * n_features

    def update(self, feats: np.ndarray | None) -> float:
        """Score of the point with these features, in [0, 1]."""
        cfg = self.cfg
        self.n += 1
        if feats is None:
            return 0.0
        ratio = 0.0
        clip = cfg.record_clip
        for i, (ring, z, floor) in enumerate(
            zip(self.past, feats.tolist(), self.floors, strict=True)
        ):
            if math.isnan(z):
                continue  # a feature still learning: no record yet, no score
            if ring.count >= 20:
                record = max(ring.max(), floor)
                ratio = max(ratio, z / (record + 1e-9))
                if clip > 0 and z > record > 0:
                    # A new record enters the history at most `clip` times the record
                    # from before this excursion began: one spike must not blind the
                    # feature for the whole history window.
                    base = self.base[i]
                    if base is None:
                        base = self.base[i] = record
                    z = min(z, clip * base)
                else:
                    self.base[i] = None
            ring.push(z)
        score = ratio / (1.0 + ratio) if self.n > cfg.warmup else 0.0
        self.since_detection += 1
        if self.since_detection <= cfg.suppress:
            score *= cfg.damping
        elif score >= cfg.threshold:
            self.since_detection = 0
        return score


class StreamingDetector:
    """Streaming anomaly detector: ``update(ts, value)`` returns the point's score in [0, 1].

    Example:
        >>> det = StreamingDetector()
        >>> scores = [det.update(t, v) for t, v in points]

    Raises ``ValueError`` if ``config.features`` names an unknown feature.

    Points are taken in the order given (``analytics.series_csv`` sorts a CSV; NAB's own files
    repeat and even reorder a few timestamps, and NAB scores them in file order).
    Timestamps set the daily period (points per day, from the median of the first
    intervals); otherwise the statistics are over points, so an irregular series is
    treated as its sequence of values.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.features = FeatureExtractor(self.config, only=self.config.features)
        names = FeatureExtractor.names
        unknown = [n for n in self.config.features if n not in names]
        if unknown or not self.config.features:
            raise ValueError(f"unknown or no features {unknown}; choose from {names}")
        self._columns = [names.index(n) for n in self.config.features]
        # The count features (novel contexts) need a floor on their records.
        counts = {
            "novelty": self.config.novelty_min_record,
            "novelty_steps": self.config.novelty_step_min_record,
            "novelty_time": self.config.novelty_time_min_record,
        }
        floors = [counts.get(name, 0.0) for name in self.config.features]
        self.scorer = RecordScorer(self.config, len(self._columns), floors)

    def update(self, ts: Any, value: float) -> float:
        """Feed the next point; its anomaly score in [0, 1].

        Raises:
            ValueError: On a non-finite value.
        """
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"value at {ts} is not a finite number: {value}")
        feats = self.features.update(value, ts)
        return self.scorer.update(None if feats is None else feats[self._columns])

    def is_anomaly(self, score: float) -> bool:
        """Whether a score is a detection under this detector's threshold."""
        return score >= self.config.threshold


def score_values(
    points: Iterable[tuple[Any, float]], config: DetectorConfig | None = None
) -> list[float]:
    """Scores of a stream of ``(timestamp, value)`` points, streamed through one detector."""
    det = StreamingDetector(config)
    return [det.update(t, v) for t, v in points]


def score_series(
    df: pd.DataFrame, config: DetectorConfig | None = None, threshold: float | None = None
) -> pd.DataFrame:
    """Score a ``timestamp, value`` frame point by point.

    Args:
        df: Columns ``timestamp`` (sorted, unique) and ``value`` (finite numbers).
        config: Detector parameters (default: the NAB-tuned ones).
        threshold: Detection threshold (default: the config's).

    Returns:
        A frame with columns ``timestamp, value, score, is_anomaly``.
    """
    cfg = config or DetectorConfig()
    thr = cfg.threshold if threshold is None else threshold
    ts = pd.to_datetime(df["timestamp"]).tolist()
    values = df["value"].astype(float).tolist()
    scores = score_values(zip(ts, values, strict=True), cfg)
    return pd.DataFrame(
        {
            "timestamp": ts,
            "value": values,
            "score": scores,
            "is_anomaly": [s >= thr for s in scores],
        }
    )
