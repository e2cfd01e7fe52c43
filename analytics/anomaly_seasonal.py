"""The seasonal-expectation feature of the streaming detector.

Operations metrics follow the clock: call volume peaks in business hours and sags at
night and at weekends, and latency and errors follow the load. A recent-level comparison
calls every morning's rise an anomaly and misses traffic that *stays* at its morning level
when it should be peaking (a seasonal break: no value outside the day's range). This
feature compares each point with what the same time of day looked like before:

* candidate expectations are the values at the same time **yesterday**, **a week ago**
  and **two weeks ago** (each the median of that point and its ``smooth`` neighbours
  either side, so a blip then is not compared with now), those with enough history;
* the residual is the difference to the *closest* candidate: a point is only unusual if
  it matches none of them (a Monday after a quiet Sunday matches last Monday; a level
  that changed yesterday for good matches yesterday and is alarmed once, not daily);
* the residuals are averaged over the last ``persist`` points (one blip is not an
  incident; a missing peak lasts hours) and scored as a robust z-score (median / MAD of
  the previous ``window`` averaged residuals, with a floor for quantised series);
* beside it, the **volatility**: the mean step between consecutive values over the same
  ``persist`` points, as a one-sided robust z-score (noise rising: a variance change
  keeps the level, so the residual's mean does not show it).

Values are square-rooted first (counts and rates: the noise of a count grows with it, so
the peak's noise would otherwise set the scale for the night).

Streaming and causal like the rest of the detector: a point's value depends only on it
and the points before it.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

_MAD_TO_SIGMA = 1.4826
_SIGMA_PER_MEAN_DEV = 1.2533


class SeasonalResidual:
    """Robust z-score of the recent residual against the closest seasonal expectation."""

    def __init__(
        self,
        *,
        lags_days: tuple[int, ...] = (1, 7, 14),
        smooth: int = 2,
        persist: int = 24,
        window: int = 1024,
        refresh: int = 4,
        min_history: int = 64,
    ) -> None:
        """Start with no history.

        Args:
            lags_days: Days back to the candidate expectations.
            smooth: Neighbours either side in each candidate's median.
            persist: Residuals averaged into the scored one.
            window: Previous averaged residuals the robust scale is taken over.
            refresh: Recompute the median / scale every this many points (speed).
            min_history: Averaged residuals needed before the feature scores.
        """
        self.lags_days = lags_days
        self.smooth = smooth
        self.persist = persist
        self.window = window
        self.refresh = refresh
        self.min_history = min_history
        self.period: int | None = None
        self._buf: np.ndarray | None = None
        self.n = 0
        self._recent: deque[float] = deque(maxlen=persist)
        self._recent_abs: deque[float] = deque(maxlen=persist)
        self._prev: float | None = None
        self._hist = np.zeros(window)
        self._spread = np.zeros(window)
        self._hist_n = 0
        self._stats = (0.0, 1.0, 0.0, 1.0)

    def set_period(self, period: int) -> None:
        """Points per day (learnt by the caller from the first timestamps)."""
        if self.period is None:
            self.period = period
            self._size = period * max(self.lags_days) + self.smooth + 1
            self._buf = np.zeros(self._size)

    def _expected_residual(self, value: float) -> float:
        assert self._buf is not None and self.period is not None
        best = math.nan
        h = self.smooth
        for days in self.lags_days:
            lag = days * self.period
            if self.n < lag + h:
                continue
            lo = (self.n - lag - h) % self._size
            if lo + 2 * h + 1 <= self._size:
                around = self._buf[lo : lo + 2 * h + 1].tolist()
            else:
                around = [self._buf[(lo + j) % self._size] for j in range(2 * h + 1)]
            expected = float(sorted(around)[h])
            e = value - expected
            if math.isnan(best) or abs(e) < abs(best):
                best = e
        return best

    def _scale(self, hist: np.ndarray) -> tuple[float, float]:
        """Median and robust scale of ``hist``.

        MAD is 0 where most residuals are exactly 0 (an error rate of 0 % all night): half
        the mean absolute deviation is the floor then.
        """
        med = float(np.median(hist))
        dev = np.abs(hist - med)
        mad = float(np.median(dev))
        return med, max(_MAD_TO_SIGMA * mad, 0.5 * _SIGMA_PER_MEAN_DEV * float(dev.mean()), 1e-9)

    def update(self, value: float) -> tuple[float, float]:
        """Feed one value; the z-scores of the averaged residual and of the volatility.

        The first is two-sided (the level is off the seasonal expectation), the second only
        counts rises (the values jump more than usual: a variance change). Both are NaN
        while learning.
        """
        if self._buf is None:
            return math.nan, math.nan
        value = math.copysign(math.sqrt(abs(value)), value)
        e = self._expected_residual(value)
        self._buf[self.n % self._size] = value
        self.n += 1
        if math.isnan(e):
            return math.nan, math.nan
        self._recent.append(e)
        if self._prev is not None:
            self._recent_abs.append(abs(value - self._prev))
        self._prev = value
        if not self._recent_abs:
            return math.nan, math.nan
        mean = sum(self._recent) / len(self._recent)
        spread = sum(self._recent_abs) / len(self._recent_abs)
        z = z_spread = math.nan
        if self._hist_n >= self.min_history:
            if self._hist_n % self.refresh == 0 or self._hist_n < self.window:
                end = min(self._hist_n, self.window)
                self._stats = (*self._scale(self._hist[:end]), *self._scale(self._spread[:end]))
            med, scale, med_s, scale_s = self._stats
            z = abs(mean - med) / scale
            z_spread = max(spread - med_s, 0.0) / scale_s
        if len(self._recent) == self.persist:
            self._hist[self._hist_n % self.window] = mean
            self._spread[self._hist_n % self.window] = spread
            self._hist_n += 1
        return z, z_spread
