"""Anomalies for the report: the streaming detector over each service's recent hourly
series (in worker processes), and the two detectors' findings as tables.

The forecast interval (Prophet, :mod:`analytics.forecast`) knows the daily/weekly shape
but judges after the fact; the streaming detector (:mod:`analytics.anomaly`) sees one
point at a time. A point both flag is *confirmed*.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from analytics.anomaly_alarm import alarm_series
from analytics.forecast import (
    Forecast,
    ForecastOutcome,
    NotEnoughData,
    clean_series,
    merge_stream_scores,
)
from analytics.workers import Pending, submit_parallel
from junction.settings import get_settings

ANOMALY_COLUMNS = [
    "service",
    "metric",
    "ds",
    "y",
    "yhat",
    "yhat_lower",
    "yhat_upper",
    "severity",
    "stream_score",
    "confirmed",
]
DETECTION_COLUMNS = ["service", "metric", "timestamp", "value", "score"]
RECENT_POINTS = 24 * 7
"""Points of each hourly series the streaming detector scores (a week: the report is
about what is happening now)."""


def anomaly_table(
    forecasts: Mapping[tuple[str, str], ForecastOutcome],
    stream_scores: Mapping[tuple[str, str], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every history point outside its forecast interval, with the streaming score.

    Returns:
        Columns :data:`ANOMALY_COLUMNS`; ``severity`` is the distance outside the
        interval in half-widths of the interval on that side.
    """
    parts = []
    for key, fc in forecasts.items():
        if not isinstance(fc, Forecast):
            continue
        merged = merge_stream_scores(fc, (stream_scores or {}).get(key))
        hits = merged[merged["anomaly"]].copy()
        if hits.empty:
            continue
        above = hits["y"] > hits["yhat_upper"]
        width = np.where(
            above, hits["yhat_upper"] - hits["yhat"], hits["yhat"] - hits["yhat_lower"]
        )
        excess = np.where(above, hits["y"] - hits["yhat_upper"], hits["yhat_lower"] - hits["y"])
        hits["severity"] = excess / np.maximum(width, 1e-9)
        hits.insert(0, "metric", key[1])
        hits.insert(0, "service", key[0])
        parts.append(hits)
    if not parts:
        return pd.DataFrame(columns=ANOMALY_COLUMNS)
    out = pd.concat(parts, ignore_index=True)[ANOMALY_COLUMNS]
    out["confirmed"] = out["confirmed"].astype(bool)
    return out


def stream_detections(scores: Mapping[tuple[str, str], pd.DataFrame] | None) -> pd.DataFrame:
    """Every point the streaming detector flagged.

    For ``error_rate`` series only rises (above the series' median) are kept: errors
    falling back to normal after a bad hour is not news. Frames with an ``alert`` column
    (:func:`score_tail`'s) list only the alarms at or above the alert threshold.

    Returns:
        Columns :data:`DETECTION_COLUMNS`.
    """
    parts = []
    for (svc, metric), frame in (scores or {}).items():
        if frame is None or "is_anomaly" not in frame.columns:
            continue
        hits = frame[frame["alert" if "alert" in frame.columns else "is_anomaly"].astype(bool)]
        if metric == "error_rate":
            hits = hits[hits["value"] > float(frame["value"].median())]
        if len(hits):
            parts.append(
                pd.DataFrame(
                    {
                        "service": svc,
                        "metric": metric,
                        "timestamp": pd.to_datetime(hits["timestamp"]),
                        "value": hits["value"].astype(float),
                        "score": hits["score"].astype(float),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    return pd.concat(parts, ignore_index=True)[DETECTION_COLUMNS]


def score_tail(
    frame: pd.DataFrame,
    last_points: int,
    sensitivity: str | None = None,
    alert_threshold: float | None = None,
) -> pd.DataFrame | None:
    """The alarm detector over the last ``last_points`` clean points of a ds/y series.

    ``sensitivity`` and ``alert_threshold`` default to the settings'
    (``JUNCTION_ANOMALY_SENSITIVITY``, ``JUNCTION_ANOMALY_ALERT_THRESHOLD``). ``None`` when
    the series has too few usable points (see :func:`analytics.forecast.clean_series`).
    """
    clean = clean_series(frame)
    if isinstance(clean, NotEnoughData):
        return None
    tail = clean.tail(last_points) if last_points > 0 else clean
    settings = get_settings()
    return alarm_series(
        pd.DataFrame({"timestamp": tail["ds"], "value": tail["y"]}),
        sensitivity or settings.anomaly_sensitivity,
        settings.anomaly_alert_threshold if alert_threshold is None else alert_threshold,
    )


def start_stream_scores(
    series: Mapping[tuple[str, str], pd.DataFrame],
    *,
    workers: int | None = None,
    last_points: int = RECENT_POINTS,
    pool: Executor | None = None,
) -> Pending:
    """Start scoring every series on the worker pool; ``.result()`` returns
    ``(service, metric) -> timestamp/value/score/is_anomaly`` for the series scored."""
    keys = list(series)
    jobs: dict[Hashable, tuple[Any, ...]] = {k: (f, last_points) for k, f in series.items()}

    def finish(scored: dict[Hashable, Any]) -> dict[tuple[str, str], pd.DataFrame]:
        return {k: scored[k] for k in keys if scored.get(k) is not None}

    return submit_parallel(score_tail, jobs, workers=workers, pool=pool, finish=finish)


def stream_scores_for(
    series: Mapping[tuple[str, str], pd.DataFrame],
    *,
    workers: int | None = None,
    last_points: int = RECENT_POINTS,
    pool: Executor | None = None,
) -> dict[tuple[str, str], pd.DataFrame]:
    """Run the streaming detector over each series (point by point, no look-ahead),
    in parallel across processes, and wait for the scores."""
    result: dict[tuple[str, str], pd.DataFrame] = start_stream_scores(
        series, workers=workers, last_points=last_points, pool=pool
    ).result()
    return result


__all__ = [
    "ANOMALY_COLUMNS",
    "DETECTION_COLUMNS",
    "RECENT_POINTS",
    "anomaly_table",
    "score_tail",
    "start_stream_scores",
    "stream_detections",
    "stream_scores_for",
]
