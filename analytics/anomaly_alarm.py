"""Alarms an operator can act on: the streaming detector plus the seasonal expectation,
with a sensitivity setting and a confidence that gates alerts.

:class:`~analytics.anomaly.StreamingDetector` ranks points well on NAB, but its score says
"this point beats the series' own recent record", and on operations metrics some feature
beats its record by chance every day or so: about 19 false alarms per series-month on the
operations corpus (:mod:`analytics.opscorpus`) at its threshold, and it misses traffic
that stays at its morning level through the usual peak. :class:`AlarmDetector` scores
four pieces of evidence, each in units of its medium-sensitivity cut:

* the residual against the **seasonal expectation** (same time yesterday, a week and two
  weeks ago, the closest of them), averaged over the last 24 points, as a robust z-score
  (:class:`~analytics.anomaly_seasonal.SeasonalResidual`, values square-rooted first so
  counts and rates have the same scale at night and at the peak): cut at z = 6;
* the volatility (mean step between consecutive values over the same 24 points, the two
  largest left out, against its usual level: a variance change): cut at z = 10;
* the deficit below every weekly expectation (same time a week and two weeks ago),
  averaged over 24 points, one-sided (traffic missing at its usual peak): cut at z = 6;
* the streaming detector's record ratio ``r = s / (1 - s)`` of its score ``s``: cut at 4
  (a point beating every feature's record four-fold: spikes, outages, and series
  without a daily rhythm, where there is no seasonal expectation).

``strength`` is the largest of the three ratios and the **confidence** is
``1 - 20 ** -strength``: 0.95 exactly at the medium cut, rising towards 1. The sensitivity
sets the confidence from which a point is an anomaly (:data:`SENSITIVITY_THRESHOLDS`):

======== ========== ================================================
low      0.98       strength >= 1.31 (seasonal z >= 7.8)
medium   0.95       strength >= 1 (seasonal z >= 6)
high     0.92       strength >= 0.84 (seasonal z >= 5.1)
======== ========== ================================================

An **alarm** is the first anomalous point of an excursion, at least ``cooldown`` (1 h)
after the previous alarm: one incident, one alarm. ``alert_threshold`` (default 0.95,
``JUNCTION_ANOMALY_ALERT_THRESHOLD``) gates which alarms raise alerts: an alarm alerts
when its confidence is at least that, so at high sensitivity the anomalies between 0.92 and
0.95 are shown but do not page.

The parameters were chosen on the TUNE and HOLDOUT parts of the operations corpus; its
HOLDOUT2 part and NAB are reported by ``bench/alarms.py`` (bench/README.md "False alarms").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from analytics.anomaly import StreamingDetector, _seconds
from analytics.anomaly_seasonal import SeasonalResidual

Sensitivity = Literal["low", "medium", "high"]

SENSITIVITY_THRESHOLDS: dict[str, float] = {"low": 0.98, "medium": 0.95, "high": 0.92}
"""Confidence from which a point is an anomaly, per sensitivity."""

SEASONAL_CUT = 6.0
"""Seasonal residual z-score at strength 1 (the medium cut)."""
SPREAD_CUT = 10.0
"""Volatility z-score at strength 1."""
DEFICIT_CUT = 6.0
"""Weekly deficit z-score at strength 1."""
RECORD_CUT = 4.0
"""Streaming detector record ratio at strength 1."""
COOLDOWN_SECONDS = 3600.0
"""No second alarm within this long after one (points when there are no timestamps)."""
_BASE = 20.0  # confidence = 1 - _BASE ** -strength: 0.95 at strength 1


def threshold_for(sensitivity: str) -> float:
    """The confidence threshold of a sensitivity (``low``, ``medium`` or ``high``).

    Raises:
        ValueError: Unknown sensitivity (the message names the choices).
    """
    try:
        return SENSITIVITY_THRESHOLDS[sensitivity]
    except KeyError:
        choices = ", ".join(SENSITIVITY_THRESHOLDS)
        raise ValueError(f"sensitivity must be one of {choices}, got {sensitivity!r}") from None


def confidence(strength: float) -> float:
    """``1 - 20 ** -strength`` in [0, 1): 0.95 at the medium cut (strength 1)."""
    if not strength > 0:
        return 0.0
    return 1.0 - _BASE ** (-strength)


@dataclass(frozen=True)
class AlarmPoint:
    """One point's verdict.

    Attributes:
        score: The streaming detector's score (NAB-tuned ranking, :mod:`analytics.anomaly`).
        confidence: How sure the anomaly is, in [0, 1) (0.95 = the medium cut).
        is_anomaly: ``confidence`` at or above the sensitivity's threshold.
        alarm: The first anomalous point of an excursion (at most one per cooldown).
        alert: An alarm whose confidence reaches ``alert_threshold``.
    """

    score: float
    confidence: float
    is_anomaly: bool
    alarm: bool
    alert: bool


class AlarmDetector:
    """Streaming alarms for one series: ``update(ts, value)`` -> :class:`AlarmPoint`.

    Raises ``ValueError`` on an unknown sensitivity or an ``alert_threshold`` outside [0, 1].
    """

    def __init__(self, sensitivity: str = "medium", alert_threshold: float = 0.95) -> None:
        self.threshold = threshold_for(sensitivity)
        if not 0.0 <= alert_threshold <= 1.0:
            raise ValueError(f"alert_threshold must be within 0..1, got {alert_threshold!r}")
        self.alert_threshold = alert_threshold
        self.detector = StreamingDetector()
        self.seasonal = SeasonalResidual()
        self._above = False
        self._last_alarm: float | None = None
        self._n = 0

    def strength(self, ts: Any, value: float) -> tuple[float, float]:
        """Feed one point; the streaming score and the strength of the evidence."""
        score = self.detector.update(ts, value)
        period = self.detector.features.period
        if period is not None:
            self.seasonal.set_period(period)
        ev = self.seasonal.update(float(value))
        record = score / (1.0 - score) if score < 1.0 else math.inf
        ratios = [
            record / RECORD_CUT,
            ev.level / SEASONAL_CUT,
            ev.volatility / SPREAD_CUT,
            ev.deficit / DEFICIT_CUT,
        ]
        return score, max((r for r in ratios if not math.isnan(r)), default=0.0)

    def update(self, ts: Any, value: float) -> AlarmPoint:
        """Feed the next point; its verdict.

        Raises:
            ValueError: On a non-finite value.
        """
        score, strength = self.strength(ts, value)
        conf = confidence(strength)
        anomalous = conf >= self.threshold
        now = _seconds(ts) if ts is not None else None
        clock = float(self._n) if now is None else now
        cooldown = COOLDOWN_SECONDS if now is not None else 12.0
        self._n += 1
        alarm = (
            anomalous
            and not self._above
            and (self._last_alarm is None or clock - self._last_alarm > cooldown)
        )
        self._above = anomalous
        if alarm:
            self._last_alarm = clock
        return AlarmPoint(score, conf, anomalous, alarm, alarm and conf >= self.alert_threshold)


def alarm_values(
    points: Iterable[tuple[Any, float]], sensitivity: str = "medium", alert_threshold: float = 0.95
) -> list[AlarmPoint]:
    """The verdicts of a stream of ``(timestamp, value)`` points, through one detector."""
    det = AlarmDetector(sensitivity, alert_threshold)
    return [det.update(t, v) for t, v in points]


def alarm_series(
    df: pd.DataFrame, sensitivity: str = "medium", alert_threshold: float = 0.95
) -> pd.DataFrame:
    """Score a ``timestamp, value`` frame point by point.

    Returns:
        Columns ``timestamp, value, score, confidence, is_anomaly, alarm, alert``.
    """
    ts = pd.to_datetime(df["timestamp"]).tolist()
    values = df["value"].astype(float).tolist()
    verdicts = alarm_values(zip(ts, values, strict=True), sensitivity, alert_threshold)
    return pd.DataFrame(
        {
            "timestamp": ts,
            "value": values,
            "score": [p.score for p in verdicts],
            "confidence": [p.confidence for p in verdicts],
            "is_anomaly": [p.is_anomaly for p in verdicts],
            "alarm": [p.alarm for p in verdicts],
            "alert": [p.alert for p in verdicts],
        }
    )


__all__ = [
    "COOLDOWN_SECONDS",
    "SENSITIVITY_THRESHOLDS",
    "AlarmDetector",
    "AlarmPoint",
    "Sensitivity",
    "alarm_series",
    "alarm_values",
    "confidence",
    "threshold_for",
]
