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
  ``persist`` points less their two largest (a one-point blip is two large steps), as a
  one-sided robust z-score (noise rising: a variance change keeps the level, so the
  residual's mean does not show it);
* and the **deficit**: how far the value stays below *every* weekly expectation (a week
  and two weeks ago), averaged over ``persist`` points, as a one-sided robust z-score.
  Traffic missing at its usual peak is below the same hour of the last weeks even when
  yesterday (a Sunday, say) was just as low, which the closest-candidate residual
  forgives.

Values are square-rooted first (counts and rates: the noise of a count grows with it, so
the peak's noise would otherwise set the scale for the night).

Streaming and causal like the rest of the detector: a point's value depends only on it
and the points before it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

_MAD_TO_SIGMA = 1.4826
_SIGMA_PER_MEAN_DEV = 1.2533


class _RobustZ:
    """Robust z-scores of values against the previous ``window`` values pushed."""

    def __init__(self, window: int, refresh: int, min_history: int) -> None:
        self.window = window
        self.refresh = refresh
        self.min_history = min_history
        self._hist = np.zeros(window)
        self.n = 0
        self._stats = (0.0, 1.0)

    def score(self, x: float) -> float:
        """Signed z of ``x`` (NaN while fewer than ``min_history`` values were pushed)."""
        if self.n < self.min_history:
            return math.nan
        if self.n % self.refresh == 0 or self.n < self.window:
            self._stats = _scale(self._hist[: min(self.n, self.window)])
        med, scale = self._stats
        return (x - med) / scale

    def push(self, x: float) -> None:
        """Add ``x`` to the history."""
        self._hist[self.n % self.window] = x
        self.n += 1


def _scale(hist: np.ndarray) -> tuple[float, float]:
    """Median and robust scale of ``hist``.

    MAD is 0 where most values are exactly 0 (an error rate of 0 % all night): half the
    mean absolute deviation is the floor then.
    """
    med = float(np.median(hist))
    dev = np.abs(hist - med)
    mad = float(np.median(dev))
    return med, max(_MAD_TO_SIGMA * mad, 0.5 * _SIGMA_PER_MEAN_DEV * float(dev.mean()), 1e-9)


def _trimmed_mean(values: deque[float], trim: int) -> float:
    """Mean of ``values`` without the ``trim`` largest (all of them when too few)."""
    if len(values) <= 2 * trim:
        return sum(values) / len(values)
    kept = sorted(values)[: len(values) - trim]
    return sum(kept) / len(kept)


@dataclass(frozen=True)
class SeasonalScores:
    """One point's seasonal evidence (each NaN while learning).

    Attributes:
        level: Two-sided z of the averaged residual against the closest expectation.
        volatility: One-sided z of the mean step (rises only).
        deficit: One-sided z of the averaged shortfall below every weekly expectation.
    """

    level: float
    volatility: float
    deficit: float = math.nan


_NOTHING = SeasonalScores(math.nan, math.nan)


class SeasonalResidual:
    """Robust z-scores of the recent residual against the seasonal expectations."""

    def __init__(
        self,
        *,
        lags_days: tuple[int, ...] = (1, 7, 14),
        smooth: int = 2,
        persist: int = 24,
        window: int = 1024,
        refresh: int = 4,
        min_history: int = 64,
        trim: int = 2,
    ) -> None:
        """Start with no history.

        Args:
            lags_days: Days back to the candidate expectations (those of 7 days or more
                are the weekly ones the deficit compares with).
            smooth: Neighbours either side in each candidate's median.
            persist: Residuals averaged into the scored one.
            window: Previous averaged residuals the robust scale is taken over.
            refresh: Recompute the median / scale every this many points (speed).
            min_history: Averaged residuals needed before the feature scores.
            trim: Largest steps left out of the volatility (a one-point blip is two
                large steps; a variance change is many).
        """
        self.lags_days = lags_days
        self.smooth = smooth
        self.persist = persist
        self.trim = trim
        self.period: int | None = None
        self._buf: np.ndarray | None = None
        self.n = 0
        self._recent: deque[float] = deque(maxlen=persist)
        self._recent_abs: deque[float] = deque(maxlen=persist)
        self._recent_deficit: deque[float] = deque(maxlen=persist)
        self._prev: float | None = None
        self._level = _RobustZ(window, refresh, min_history)
        self._spread = _RobustZ(window, refresh, min_history)
        self._deficit = _RobustZ(window, refresh, min_history)

    def set_period(self, period: int) -> None:
        """Points per day (learnt by the caller from the first timestamps)."""
        if self.period is None:
            self.period = period
            self._size = period * max(self.lags_days) + self.smooth + 1
            self._buf = np.zeros(self._size)

    def _candidate(self, days: int) -> float:
        """The smoothed value ``days`` ago (NaN without that much history)."""
        assert self._buf is not None and self.period is not None
        h = self.smooth
        lag = days * self.period
        if self.n < lag + h:
            return math.nan
        lo = (self.n - lag - h) % self._size
        if lo + 2 * h + 1 <= self._size:
            around = self._buf[lo : lo + 2 * h + 1].tolist()
        else:
            around = [self._buf[(lo + j) % self._size] for j in range(2 * h + 1)]
        return float(sorted(around)[h])

    def update(self, value: float) -> SeasonalScores:
        """Feed one value; its seasonal evidence (:class:`SeasonalScores`).

        The level is two-sided (off the seasonal expectation); the volatility and the
        deficit only count rises (the values jump more than usual: a variance change; the
        traffic stays below every recent week: a seasonal break).
        """
        if self._buf is None:
            return _NOTHING
        value = math.copysign(math.sqrt(abs(value)), value)
        candidates = {days: self._candidate(days) for days in self.lags_days}
        self._buf[self.n % self._size] = value
        self.n += 1
        weekly = [c for d, c in candidates.items() if d >= 7 and not math.isnan(c)]
        residuals = [value - c for c in candidates.values() if not math.isnan(c)]
        if not residuals:
            return _NOTHING
        self._recent.append(min(residuals, key=abs))
        if weekly:
            self._recent_deficit.append(min(weekly) - value)
        if self._prev is not None:
            self._recent_abs.append(abs(value - self._prev))
        self._prev = value
        if not self._recent_abs:
            return _NOTHING
        mean = sum(self._recent) / len(self._recent)
        spread = _trimmed_mean(self._recent_abs, self.trim)
        z = abs(self._level.score(mean))
        z_spread = max(self._spread.score(spread), 0.0)
        deficit = math.nan
        if len(self._recent_deficit) == self.persist:
            d = sum(self._recent_deficit) / self.persist
            deficit = max(self._deficit.score(d), 0.0)
            self._deficit.push(d)
        if len(self._recent) == self.persist:
            self._level.push(mean)
            self._spread.push(spread)
        return SeasonalScores(z, z_spread, deficit)
