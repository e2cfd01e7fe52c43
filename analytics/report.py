"""The analytics report: one self-contained HTML file, plus Markdown for Prefect artifacts.

Sections (each says "not enough data" instead of failing when its input is missing):
service health overview, performance metrics, active and recent alerts, trend charts,
forecast bands with anomalies marked, failure prediction, the dependency graph,
recommendations, the KPI scorecard and data validation. Charts are inline SVG
(matplotlib's SVG backend; the dependency graph is laid out here and written as SVG by
hand), CSS is inline, and nothing references an external URL: the file opens offline.

KPI definitions (targets from the product plan; window = the report's last 7 days,
"first week" = the first 7 days of recorded history, used only when the history spans
more than 14 days so the two do not overlap):

* **Workflow success rate** = completed / finished ``workflow_runs``; target >= 92 %;
  baseline 85 % (the plan's).
* **Average response time** = mean ``latency_ms`` of successful calls; target <= 800 ms;
  baseline = the first week's mean (the plan gives no number: "measured first week").
* **Uptime** = mean over services of the share of successful probes (probes run at a
  fixed interval, so the share is time-weighted); calls' success when no probes exist;
  target >= 99 %; baseline = first week.
* **Error detection time** = median over firing alerts of (alert time - onset), onset =
  the first failure of the run of one-minute windows with >= 50 % failed observations
  (probes and calls) that leads up to the alert (looked for 30 min back); target < 60 s;
  baseline 5-10 min (the plan's).
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analytics.forecast import Forecast, ForecastOutcome, NotEnoughData
from analytics.prediction import Prediction, PredictionOutcome, worst
from analytics.recommend import Recommendation

if TYPE_CHECKING:
    from junction.scoring import Thresholds
    from junction.store import MetricsStore

BASELINE_WORKFLOW_SUCCESS = 0.85
"""The product plan's baseline workflow success rate."""
BASELINE_DETECTION = "5-10 min"
"""The product plan's baseline error detection time."""
SUCCESS_STATUSES = ("completed", "succeeded", "success", "ok")


@dataclass(frozen=True)
class Kpi:
    """One line of the KPI scorecard.

    Attributes:
        name: What is measured.
        target: The plan's target, as text (">= 92%").
        value: The measured value, as text ("n/a" without data).
        baseline: The baseline, as text.
        baseline_source: Where the baseline comes from.
        met: Whether the target is met (``None``: not enough data).
        note: How it was measured, or why it could not be.
    """

    name: str
    target: str
    value: str
    baseline: str
    baseline_source: str
    met: bool | None
    note: str


@dataclass
class ReportData:
    """Everything the report shows (built by the flow's tasks or :func:`collect`).

    Attributes:
        generated_at: When the report was made (UTC).
        start: Start of the analysed window (UTC).
        end: End of the window (the newest row, UTC).
        health: Per service, last 24 h: calls, success_rate, p50_ms, p95_ms, uptime,
            score, status, reasons.
        performance: Per service over the window: calls_per_day, success_rate, p50/p95/
            p99_ms, wow_volume, wow_p95 (week-over-week change, fractions).
        alerts_active: Alerts whose latest transition is ``firing``.
        alerts_recent: The latest alert transitions.
        hourly: Hourly per-service aggregates (:func:`analytics.forecast.hourly_series`).
        forecasts: ``(service, metric) -> Forecast | NotEnoughData``.
        stream_scores: ``(service, metric) -> timestamp/score frame`` of the streaming
            detector, when it ran.
        predictions: ``service -> [latency, success_rate, error_budget]``.
        recommendations: Optimization recommendations.
        dependency: The dependency map (``junction.workflows.depmap.DependencyMap``).
        kpis: The scorecard.
        validation: The data validation report (``analytics.validation``), if it ran.
        notes: Problems met while collecting (a section's input missing, ...).
        timings: Seconds per stage, as measured by whoever built the data.
        week_over_week: Per service and action, this week against the last
            (``analytics.trends.week_over_week``), when available.
    """

    generated_at: datetime
    start: datetime
    end: datetime
    health: pd.DataFrame = field(default_factory=pd.DataFrame)
    performance: pd.DataFrame = field(default_factory=pd.DataFrame)
    alerts_active: pd.DataFrame = field(default_factory=pd.DataFrame)
    alerts_recent: pd.DataFrame = field(default_factory=pd.DataFrame)
    hourly: pd.DataFrame = field(default_factory=pd.DataFrame)
    forecasts: dict[tuple[str, str], ForecastOutcome] = field(default_factory=dict)
    stream_scores: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    predictions: dict[str, list[PredictionOutcome]] = field(default_factory=dict)
    recommendations: list[Recommendation] = field(default_factory=list)
    dependency: Any = None
    kpis: list[Kpi] = field(default_factory=list)
    validation: Any = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    week_over_week: pd.DataFrame | None = None


# ------------------------------------------------------------------ data


def window_end(store: MetricsStore) -> datetime | None:
    """The newest timestamp in calls/probes (UTC), ``None`` for an empty store."""
    frame = store.query(
        "SELECT greatest((SELECT max(ts) FROM calls), (SELECT max(ts) FROM probes)) AS t"
    )
    value = frame["t"].iloc[0] if len(frame) else None
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).tz_convert(UTC).to_pydatetime()


class _Row:
    """Attribute access to one record (keeps pandas' scalar union types out of mypy's way)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - only for typing
        raise AttributeError(name)


def _records(frame: pd.DataFrame) -> list[Any]:
    return [_Row({str(k): v for k, v in row.items()}) for row in frame.to_dict("records")]


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def health_overview(store: MetricsStore, settings: Thresholds, end: datetime) -> pd.DataFrame:
    """Per-service health over the 24 h before ``end`` (calls and probes together).

    Uses :func:`junction.scoring.health_score` on stats computed in DuckDB (p50/p95 are
    nearest-rank, ``quantile_disc``, like the scoring module's).
    """
    from junction.scoring import WindowStats, health_score

    sql = """
        WITH obs AS (
            SELECT service, ts, ok, latency_ms, error_class, breaker_state, 'call' AS kind
            FROM calls WHERE ts > ? - INTERVAL 24 HOUR AND ts <= ?
            UNION ALL
            SELECT service, ts, ok, latency_ms, error_class, breaker_state, 'probe' AS kind
            FROM probes WHERE ts > ? - INTERVAL 24 HOUR AND ts <= ?
        )
        SELECT service,
               count(*) AS n,
               count(*) FILTER (WHERE ok) AS successes,
               quantile_disc(latency_ms, 0.5) FILTER (WHERE ok) AS p50_ms,
               quantile_disc(latency_ms, 0.95) FILTER (WHERE ok) AS p95_ms,
               coalesce(avg(ok::INT) FILTER (WHERE kind = 'probe'), avg(ok::INT)) AS uptime,
               max(ts) FILTER (WHERE NOT ok) AS last_error_at,
               arg_max(error_class, ts) FILTER (WHERE NOT ok) AS last_error_class,
               arg_max(breaker_state, ts) AS breaker
        FROM obs GROUP BY service ORDER BY service
    """
    frame = store.query(sql, [end, end, end, end])
    rows = []
    for r in _records(frame):
        last_error = None if pd.isna(r.last_error_at) else pd.Timestamp(r.last_error_at)
        stats = WindowStats(
            as_of=end,
            count=int(r.n),
            successes=int(r.successes),
            success_rate=int(r.successes) / int(r.n) if r.n else None,
            p50_latency_ms=None if pd.isna(r.p50_ms) else float(r.p50_ms),
            p95_latency_ms=None if pd.isna(r.p95_ms) else float(r.p95_ms),
            uptime=None if pd.isna(r.uptime) else float(r.uptime),
            seconds_since_last_error=(
                None if last_error is None else (end - last_error.to_pydatetime()).total_seconds()
            ),
            last_error_at=None if last_error is None else last_error.to_pydatetime(),
            last_error_class=None if last_error is None else r.last_error_class,
            last_breaker_state=r.breaker,
        )
        score = health_score(stats, settings)
        rows.append(
            {
                "service": r.service,
                "calls": int(r.n),
                "success_rate": stats.success_rate,
                "p50_ms": stats.p50_latency_ms,
                "p95_ms": stats.p95_latency_ms,
                "uptime": stats.uptime,
                "score": score.score,
                "status": score.status,
                "reasons": "; ".join(score.reasons),
            }
        )
    columns = ["service", "calls", "success_rate", "p50_ms", "p95_ms", "uptime", "score"]
    frame = pd.DataFrame(rows, columns=[*columns, "status", "reasons"])
    # Worst first: what needs attention is at the top of a 30-row table.
    return frame.sort_values(["score", "service"], na_position="first").reset_index(drop=True)


def performance_table(store: MetricsStore, start: datetime, end: datetime) -> pd.DataFrame:
    """Per-service performance over ``[start, end]`` and week-over-week change."""
    sql = """
        SELECT service,
               count(*) / greatest(1.0, epoch(max(ts) - min(ts)) / 86400) AS calls_per_day,
               avg(ok::INT) AS success_rate,
               avg(latency_ms) FILTER (WHERE ok) AS mean_ms,
               quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FILTER (WHERE ok) AS q,
               count(*) FILTER (WHERE ts > ? - INTERVAL 7 DAY) AS vol_this,
               count(*) FILTER (WHERE ts <= ? - INTERVAL 7 DAY AND ts > ? - INTERVAL 14 DAY)
                   AS vol_prev,
               quantile_cont(latency_ms, 0.95) FILTER (WHERE ok AND ts > ? - INTERVAL 7 DAY)
                   AS p95_this,
               quantile_cont(latency_ms, 0.95)
                   FILTER (WHERE ok AND ts <= ? - INTERVAL 7 DAY AND ts > ? - INTERVAL 14 DAY)
                   AS p95_prev
        FROM calls WHERE ts >= ? AND ts <= ?
        GROUP BY service ORDER BY service
    """
    frame = store.query(sql, [end, end, end, end, end, end, start, end])
    out = pd.DataFrame(
        {
            "service": frame["service"],
            "calls_per_day": frame["calls_per_day"].astype(float),
            "success_rate": frame["success_rate"].astype(float),
            "mean_ms": frame["mean_ms"].astype(float),
        }
    )
    q = frame["q"].apply(lambda v: list(v) if v is not None else [np.nan] * 3)
    for i, name in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        out[name] = q.apply(lambda v, i=i: v[i] if v is not None else np.nan).astype(float)
    prev = frame["vol_prev"].replace(0, np.nan).astype(float)
    out["wow_volume"] = frame["vol_this"] / prev - 1
    out["wow_p95"] = frame["p95_this"].astype(float) / frame["p95_prev"].astype(float) - 1
    return out


def action_week_over_week(store: MetricsStore, end: datetime) -> pd.DataFrame | None:
    """G's week-over-week per service and action (``None`` if the module is missing)."""
    try:
        from analytics.trends import week_over_week
    except ImportError:
        return None
    return week_over_week(store, until=end + timedelta(microseconds=1), by_action=True)


def alert_tables(
    store: MetricsStore, start: datetime, end: datetime, *, recent: int = 20
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(active alerts, the ``recent`` latest transitions) from the ``alerts`` table.

    Active = the latest transition of the fingerprint (over all history) is ``firing``.
    """
    active = store.query(
        """
        SELECT fingerprint, service, rule, severity, ts AS since, message FROM (
            SELECT *, row_number() OVER (PARTITION BY fingerprint ORDER BY ts DESC) AS rn
            FROM alerts WHERE ts <= ?
        ) WHERE rn = 1 AND state = 'firing' ORDER BY ts DESC
        """,
        [end],
    )
    latest = store.query(
        f"""
        SELECT ts, service, rule, severity, state, message FROM alerts
        WHERE ts >= ? AND ts <= ? ORDER BY ts DESC LIMIT {int(recent)}
        """,
        [start, end],
    )
    return active, latest


def detection_delays(store: MetricsStore, start: datetime, end: datetime) -> pd.DataFrame:
    """Per firing alert in the window: onset of its failure run and the detection delay.

    Onset definition in the module docstring. Alerts with no failure run before them
    (e.g. a latency rule) are left out.
    """
    alerts = store.query(
        "SELECT ts, service FROM alerts WHERE state = 'firing' AND ts >= ? AND ts <= ?",
        [start, end],
    )
    rows = []
    for a in _records(alerts):
        at = pd.Timestamp(a.ts)
        obs = store.query(
            """
            SELECT ts, ok FROM calls WHERE service = ? AND ts > ? - INTERVAL 30 MINUTE
                AND ts <= ?
            UNION ALL
            SELECT ts, ok FROM probes WHERE service = ? AND ts > ? - INTERVAL 30 MINUTE
                AND ts <= ?
            """,
            [a.service, at, at, a.service, at, at],
        )
        if obs.empty or obs["ok"].all():
            continue
        obs["minute"] = pd.to_datetime(obs["ts"], utc=True).dt.floor("min")
        ratio = 1 - obs.groupby("minute")["ok"].mean()
        onset_minute = None
        for minute in sorted(ratio.index, reverse=True):
            if ratio[minute] >= 0.5:
                onset_minute = minute
            else:
                break
        if onset_minute is None:
            continue
        in_minute = obs[(obs["minute"] == onset_minute) & ~obs["ok"]]
        onset = pd.to_datetime(in_minute["ts"], utc=True).min()
        rows.append(
            {
                "service": a.service,
                "alert_at": at,
                "onset": onset,
                "delay_s": (at - onset).total_seconds(),
            }
        )
    return pd.DataFrame(rows, columns=["service", "alert_at", "onset", "delay_s"])


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}%}"


def kpi_scorecard(store: MetricsStore, start: datetime, end: datetime) -> list[Kpi]:
    """The four product KPIs with targets and baselines (definitions in the module doc)."""
    week = end - timedelta(days=7)
    first = store.query(
        "SELECT least((SELECT min(ts) FROM calls), (SELECT min(ts) FROM probes)) AS t"
    )["t"].iloc[0]
    first_ts = None if first is None or pd.isna(first) else pd.Timestamp(first).to_pydatetime()
    has_baseline_week = first_ts is not None and (end - first_ts) > timedelta(days=14)
    kpis: list[Kpi] = []

    runs = store.query(
        "SELECT status FROM workflow_runs WHERE started_at > ? AND started_at <= ?", [week, end]
    )
    if runs.empty:
        kpis.append(
            Kpi(
                "Workflow success rate",
                ">= 92%",
                "n/a",
                "85%",
                "product plan",
                None,
                "not enough data: no workflow runs in the last 7 days",
            )
        )
    else:
        rate = float(runs["status"].str.lower().isin(SUCCESS_STATUSES).mean())
        kpis.append(
            Kpi(
                "Workflow success rate",
                ">= 92%",
                _pct(rate),
                "85%",
                "product plan",
                rate >= 0.92,
                f"{len(runs):,} runs in the last 7 days",
            )
        )

    def mean_latency(lo: datetime, hi: datetime) -> tuple[float | None, int]:
        f = store.query(
            "SELECT avg(latency_ms) AS m, count(*) AS n FROM calls WHERE ok AND ts > ? AND ts <= ?",
            [lo, hi],
        )
        n = int(f["n"].iloc[0])
        return (None if n == 0 else float(f["m"].iloc[0])), n

    def uptime(lo: datetime, hi: datetime) -> tuple[float | None, str]:
        for table in ("probes", "calls"):
            f = store.query(
                f"SELECT avg(up) AS u FROM (SELECT service, avg(ok::INT) AS up FROM {table} "
                "WHERE ts > ? AND ts <= ? GROUP BY service)",
                [lo, hi],
            )
            value = f["u"].iloc[0]
            if value is not None and not pd.isna(value):
                return float(value), table
        return None, ""

    base_lo = first_ts
    base_hi = None if first_ts is None else first_ts + timedelta(days=7)
    lat, n = mean_latency(week, end)
    if has_baseline_week:
        assert base_lo is not None and base_hi is not None
        base_lat, _ = mean_latency(base_lo - timedelta(seconds=1), base_hi)
        base_text = "n/a" if base_lat is None else f"{base_lat:,.0f} ms"
        base_src = f"measured, first week ({base_lo:%Y-%m-%d}..{base_hi:%Y-%m-%d})"
    else:
        base_text, base_src = "n/a", "needs > 14 days of history (first week)"
    kpis.append(
        Kpi(
            "Average response time",
            "<= 800 ms",
            "n/a" if lat is None else f"{lat:,.0f} ms",
            base_text,
            base_src,
            None if lat is None else lat <= 800,
            "not enough data: no successful calls in the last 7 days"
            if lat is None
            else f"mean of {n:,} successful calls, last 7 days",
        )
    )

    up, source = uptime(week, end)
    if has_baseline_week:
        assert base_lo is not None and base_hi is not None
        base_up, _ = uptime(base_lo - timedelta(seconds=1), base_hi)
        up_base, up_src = _pct(base_up, 2), base_src
    else:
        up_base, up_src = "n/a", "needs > 14 days of history (first week)"
    kpis.append(
        Kpi(
            "Uptime",
            ">= 99%",
            _pct(up, 2),
            up_base,
            up_src,
            None if up is None else up >= 0.99,
            "not enough data: no probes or calls in the last 7 days"
            if up is None
            else f"mean over services of successful {source} share, last 7 days",
        )
    )

    delays = detection_delays(store, start, end)
    if delays.empty:
        kpis.append(
            Kpi(
                "Error detection time",
                "< 1 min",
                "n/a",
                BASELINE_DETECTION,
                "product plan",
                None,
                "not enough data: no firing alert preceded by failures in the window",
            )
        )
    else:
        med = float(delays["delay_s"].median())
        p95 = float(delays["delay_s"].quantile(0.95))
        kpis.append(
            Kpi(
                "Error detection time",
                "< 1 min",
                f"{med:.0f} s (p95 {p95:.0f} s)",
                BASELINE_DETECTION,
                "product plan",
                med < 60,
                f"median over {len(delays)} alerts: alert time - onset of the failure run",
            )
        )
    return kpis


def anomaly_table(
    forecasts: Mapping[tuple[str, str], ForecastOutcome],
    stream_scores: Mapping[tuple[str, str], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every history point outside its forecast interval, with the streaming score.

    Returns:
        service, metric, ds, y, yhat, yhat_lower, yhat_upper, severity (distance outside
        the interval in half-widths of the interval), stream_score, confirmed.
    """
    from analytics.forecast import merge_stream_scores

    parts = []
    for key, fc in forecasts.items():
        if not isinstance(fc, Forecast):
            continue
        merged = merge_stream_scores(fc, (stream_scores or {}).get(key))
        hits = merged[merged["anomaly"]].copy()
        if hits.empty:
            continue
        # How far outside the interval, in half-widths of the interval on that side.
        above = hits["y"] > hits["yhat_upper"]
        width = np.where(
            above, hits["yhat_upper"] - hits["yhat"], hits["yhat"] - hits["yhat_lower"]
        )
        excess = np.where(above, hits["y"] - hits["yhat_upper"], hits["yhat_lower"] - hits["y"])
        hits["severity"] = excess / np.maximum(width, 1e-9)
        hits.insert(0, "metric", key[1])
        hits.insert(0, "service", key[0])
        parts.append(hits)
    cols = ["service", "metric", "ds", "y", "yhat", "yhat_lower", "yhat_upper", "severity"]
    cols += ["stream_score", "confirmed"]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def stream_detections(
    scores: Mapping[tuple[str, str], pd.DataFrame] | None,
) -> pd.DataFrame:
    """Every point the streaming detector flagged: service, metric, timestamp, value, score.

    For ``error_rate`` series only rises (above the series' median) are kept.
    """
    parts = []
    for (svc, metric), frame in (scores or {}).items():
        if frame is None or "is_anomaly" not in frame.columns:
            continue
        hits = frame[frame["is_anomaly"].astype(bool)]
        if metric == "error_rate":
            # Errors falling back to normal after a bad hour is not news: only rises.
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
    cols = ["service", "metric", "timestamp", "value", "score"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def _score_tail(frame: pd.DataFrame, last_points: int) -> pd.DataFrame | None:
    """The streaming detector over the last ``last_points`` clean points of a series."""
    from analytics.anomaly import score_series
    from analytics.forecast import clean_series

    clean = clean_series(frame)
    if isinstance(clean, NotEnoughData):
        return None
    tail = clean.tail(last_points) if last_points > 0 else clean
    return score_series(pd.DataFrame({"timestamp": tail["ds"], "value": tail["y"]}))


def start_stream_scores(
    series: Mapping[tuple[str, str], pd.DataFrame],
    *,
    workers: int | None = None,
    last_points: int = 24 * 7,
    pool: Executor | None = None,
) -> Any:
    """Start :func:`stream_scores_for`'s work; ``.result()`` returns its dict."""
    from analytics.forecast import Pending, submit_parallel

    try:
        import analytics.anomaly  # noqa: F401
    except ImportError:
        return Pending(_score_tail, {}, {}, finish=lambda _: {})
    keys = list(series)
    jobs: dict[Any, tuple[Any, ...]] = {k: (f, last_points) for k, f in series.items()}

    def finish(scored: dict[Any, Any]) -> dict[tuple[str, str], pd.DataFrame]:
        return {k: scored[k] for k in keys if scored.get(k) is not None}

    return submit_parallel(_score_tail, jobs, workers=workers, pool=pool, finish=finish)


def stream_scores_for(
    series: Mapping[tuple[str, str], pd.DataFrame],
    *,
    workers: int | None = None,
    last_points: int = 24 * 7,
    pool: Executor | None = None,
) -> dict[tuple[str, str], pd.DataFrame]:
    """Run the streaming detector (``analytics.anomaly.score_series``) over each series.

    Point by point, no look-ahead, over the last ``last_points`` points of each series
    (default a week of hours: the report is about what is happening now), in parallel
    across processes. Returns an empty dict when the detector is not installed.
    """
    result: dict[tuple[str, str], pd.DataFrame] = start_stream_scores(
        series, workers=workers, last_points=last_points, pool=pool
    ).result()
    return result


# ------------------------------------------------------------------ charts

_COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"]


def _svg(fig: Any) -> str:
    """A matplotlib figure as an inline ``<svg>`` element (no XML prolog), then closed."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    start = text.find("<svg")
    svg = text[start:]
    # Scale with the page: drop the fixed pt size, keep the viewBox.
    svg = re.sub(
        r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r'<svg\1 class="chart"', svg, count=1
    )
    return svg


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: smaller files, crisp in any size
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    return plt


def trend_chart(hourly: pd.DataFrame, services: Sequence[str]) -> str | None:
    """Hourly volume and p95 latency of ``services``, two stacked panels (SVG)."""
    rows = hourly[hourly["service"].isin(services)]
    if rows.empty:
        return None
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True)
    for i, svc in enumerate(services):
        r = rows[rows["service"] == svc]
        if r.empty:
            continue
        color = _COLORS[i % len(_COLORS)]
        ax1.plot(r["ds"], r["calls"], lw=0.9, color=color, label=svc)
        ax2.plot(r["ds"], r["p95_latency_ms"], lw=0.9, color=color, label=svc)
    ax1.set_ylabel("calls / hour")
    ax2.set_ylabel("p95 latency (ms)")
    ax1.legend(loc="upper left", fontsize=7, ncol=min(len(services), 6), frameon=False)
    fig.autofmt_xdate()
    return _svg(fig)


def overall_chart(hourly: pd.DataFrame) -> str | None:
    """All services together: calls per hour and the success rate per hour (SVG)."""
    if hourly.empty:
        return None
    total = hourly.groupby("ds")[["calls", "failures"]].sum()
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 3.6), sharex=True)
    ax1.fill_between(total.index, total["calls"], color="#93c5fd", lw=0)
    ax1.plot(total.index, total["calls"], color="#2563eb", lw=0.8)
    ax1.set_ylabel("calls / hour")
    rate = 1 - total["failures"] / total["calls"].replace(0, np.nan)
    ax2.plot(total.index, rate * 100, color="#059669", lw=0.8)
    ax2.set_ylabel("success %")
    fig.autofmt_xdate()
    return _svg(fig)


def forecast_chart(
    volume: ForecastOutcome | None,
    latency: ForecastOutcome | None,
    confirmations: Mapping[str, pd.DataFrame] | None = None,
) -> str | None:
    """Forecast bands of one service: history, yhat, the interval, points outside it
    (orange) and those the streaming detector flagged too (``confirmations`` by metric:
    ds/y rows; red)."""
    panels = [
        (fc, label) for fc, label in ((volume, "calls / hour"), (latency, "p95 latency (ms)"))
    ]
    fitted = [(fc, label) for fc, label in panels if isinstance(fc, Forecast)]
    if not fitted:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(fitted), 1, figsize=(10, 2.3 * len(fitted)), squeeze=False)
    for ax, (fc, label) in zip(axes[:, 0], fitted, strict=True):
        assert isinstance(fc, Forecast)
        f = fc.frame
        ax.fill_between(
            f["ds"],
            f["yhat_lower"],
            f["yhat_upper"],
            color="#bfdbfe",
            lw=0,
            label=f"{fc.interval_width:.0%} interval",
        )
        ax.plot(f["ds"], f["yhat"], color="#1d4ed8", lw=0.9, label="forecast")
        hist = fc.history
        ax.plot(hist["ds"], hist["y"], color="#111827", lw=0.6, alpha=0.8, label="actual")
        an = fc.anomalies
        if len(an):
            ax.scatter(an["ds"], an["y"], color="#f59e0b", s=8, zorder=3, label="outside interval")
        confirmed = (confirmations or {}).get(fc.metric)
        if confirmed is not None and len(confirmed):
            ax.scatter(
                confirmed["ds"],
                confirmed["y"],
                color="#dc2626",
                s=26,
                zorder=4,
                label="confirmed by streaming detector",
            )
        ax.axvline(hist["ds"].iloc[-1], color="#6b7280", lw=0.8, ls="--")
        ax.set_ylabel(label)
        ax.legend(loc="upper left", fontsize=7, ncol=4, frameon=False)
    fig.autofmt_xdate()
    return _svg(fig)


def _layers(nodes: Sequence[Any]) -> dict[str, int]:
    """Column of each step: the longest ``needs`` path from a root (cycles cut)."""
    by_id = {n.step: n for n in nodes}
    layer: dict[str, int] = {}

    def depth(step: str, seen: frozenset[str]) -> int:
        if step not in layer:
            ups = [u for u in by_id[step].needs if u in by_id and u not in seen]
            layer[step] = 0 if not ups else 1 + max(depth(u, seen | {step}) for u in ups)
        return layer[step]

    for n in nodes:
        depth(n.step, frozenset())
    return layer


def dependency_svg(dep: Any, *, max_services: int = 40) -> str | None:
    """The dependency map laid out in columns and written as SVG (no JS, no Graphviz).

    Each workflow is a band; its steps sit in columns by dependency depth (longest path
    from a root), services in a column on the right ordered by the mean height of the
    steps calling them (fewer crossings). Step order: dark arrows; step -> service: grey,
    dashed for fallbacks; co-failures: red dotted arcs between services.
    """
    workflows: dict[str, list[Any]] = getattr(dep, "workflows", {}) if dep is not None else {}
    if not workflows:
        return None
    nw, nh, gapx, gapy, pad, head = 150, 34, 40, 12, 16, 22
    pos: dict[tuple[str, str], tuple[float, float]] = {}
    bands: list[tuple[str, float, float]] = []
    y: float = pad
    max_layer = 0
    for name, nodes in workflows.items():
        layer = _layers(nodes)
        rows: dict[int, int] = {}
        top = y + head
        for n in nodes:
            lyr = layer[n.step]
            row = rows.get(lyr, 0)
            rows[lyr] = row + 1
            pos[(name, n.step)] = (pad + lyr * (nw + gapx), top + row * (nh + gapy))
            max_layer = max(max_layer, lyr)
        band_h = head + max(rows.values()) * (nh + gapy)
        bands.append((name, y, band_h))
        y += band_h + gapy
    total_h = max(y, 100)
    svc_x = pad + (max_layer + 1) * (nw + gapx) + 80
    callers: dict[str, list[float]] = {}
    for name, nodes in workflows.items():
        for n in nodes:
            for s in n.services:
                callers.setdefault(s, []).append(pos[(name, n.step)][1])
    services = sorted(callers, key=lambda s: (sum(callers[s]) / len(callers[s]), s))
    services = services[:max_services]
    sh = 26
    step_y = max(sh + 8, (total_h - 2 * pad) / max(1, len(services)))
    spos = {s: (svc_x, pad + i * step_y) for i, s in enumerate(services)}
    width = svc_x + 130 + pad
    height = max(total_h, pad * 2 + len(services) * step_y)
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart depmap" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="11">',
        '<defs><marker id="dm-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#374151"/></marker></defs>',
    ]
    for name, by, bh in bands:
        parts.append(
            f'<rect x="{pad / 2}" y="{by}" width="{svc_x - 60}" height="{bh}" rx="6" '
            f'fill="#f8fafc" stroke="#cbd5e1"/><text x="{pad}" y="{by + 15}" font-weight="bold" '
            f'fill="#334155">{esc(name)}</text>'
        )
    edges: list[str] = []
    for name, nodes in workflows.items():
        for n in nodes:
            x, yy = pos[(name, n.step)]
            for up in n.needs:
                if (name, up) not in pos:
                    continue
                ux, uy = pos[(name, up)]
                x1, y1, x2, y2 = ux + nw, uy + nh / 2, x, yy + nh / 2
                mx = (x1 + x2) / 2
                edges.append(
                    f'<path d="M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}" fill="none" '
                    f'stroke="#374151" stroke-width="1.2" marker-end="url(#dm-arrow)"/>'
                )
            for s in n.services:
                if s not in spos:
                    continue
                sx, sy = spos[s]
                x1, y1, x2, y2 = x + nw, yy + nh / 2, sx, sy + sh / 2
                mx = (x1 + x2) / 2
                dash = ' stroke-dasharray="4 3"' if s in n.fallbacks else ""
                edges.append(
                    f'<path d="M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}" fill="none" '
                    f'stroke="#94a3b8" stroke-width="0.9"{dash}/>'
                )
    for c in getattr(dep, "cofailures", []) or []:
        if c.a in spos and c.b in spos and c.both and c.jaccard >= 0.3:
            (ax, ay), (bx, by2) = spos[c.a], spos[c.b]
            r = 30 + abs(by2 - ay) / 4
            edges.append(
                f'<path d="M{ax + 120},{ay + sh / 2} C{ax + 120 + r},{ay + sh / 2} '
                f'{bx + 120 + r},{by2 + sh / 2} {bx + 120},{by2 + sh / 2}" fill="none" '
                f'stroke="#dc2626" stroke-dasharray="2 3" stroke-width="1.2">'
                f"<title>co-failure J={c.jaccard:.2f} n={c.both}</title></path>"
            )
    parts.extend(edges)
    for name, nodes in workflows.items():
        for n in nodes:
            x, yy = pos[(name, n.step)]
            parts.append(
                f'<rect x="{x}" y="{yy}" width="{nw}" height="{nh}" rx="4" fill="#dbeafe" '
                f'stroke="#3b82f6"/><text x="{x + 6}" y="{yy + 14}" fill="#1e3a8a" '
                f'font-weight="bold">{esc(n.step[:22])}</text><text x="{x + 6}" y="{yy + 27}" '
                f'fill="#475569" font-size="9">{esc(n.uses[:26])}</text>'
            )
    for s, (sx, sy) in spos.items():
        parts.append(
            f'<rect x="{sx}" y="{sy}" width="120" height="{sh}" rx="12" fill="#ecfdf5" '
            f'stroke="#059669"/><text x="{sx + 60}" y="{sy + 17}" text-anchor="middle" '
            f'fill="#065f46">{esc(s)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------ assembly


def collect(
    store: MetricsStore,
    settings: Any,
    *,
    days: int | None = None,
    spec_dir: Path | None = None,
    workers: int | None = None,
    now: datetime | None = None,
    validate: bool = False,
) -> ReportData:
    """Run every analysis in this process and return the report's data.

    The Prefect flow does the same steps as separate tasks; this is the CLI's path.

    Args:
        store: The metrics store.
        settings: :class:`junction.settings.Settings`.
        days: Window length (default: ``settings.analytics_report_days``).
        spec_dir: Workflow specs for recommendations and the dependency graph (default:
            the built-in ``flows/specs``).
        workers: Forecast worker processes (default: the setting, else CPU count).
        now: ``generated_at`` (default: the wall clock).
        validate: Validate the window's data (``analytics.validation``). It runs while
            the workers fit the forecasts; a critical failure cancels them and raises
            ``DataValidationError`` before anything is returned.
    """
    from analytics.forecast import (
        ForecastConfig,
        error_rate_series,
        hourly_series,
        series_from_hourly,
        shared_pool,
        start_forecasts,
    )
    from analytics.prediction import predict_services

    generated = now or datetime.now(UTC)
    days = days or settings.analytics_report_days
    timings: dict[str, float] = {}
    clock = _Clock(timings)
    end = window_end(store)
    if end is None:
        data = ReportData(generated, generated, generated, timings=timings)
        data.notes.append("the metrics store is empty: nothing to analyse yet")
        data.kpis = kpi_scorecard(store, generated, generated)
        data.dependency = dependency_map(spec_dir)
        return data
    start = end - timedelta(days=days)
    n_workers = workers or settings.analytics_forecast_workers
    pool = shared_pool(n_workers)  # workers start importing Prophet right away
    with clock("hourly"):
        hourly = hourly_series(store, days=days, until=end)
        series = series_from_hourly(hourly)
    config = ForecastConfig(
        horizon=timedelta(days=settings.analytics_forecast_horizon_days),
        uncertainty_samples=settings.analytics_uncertainty_samples,
    )
    # The CPU-heavy part goes to the workers now; validation and the SQL sections run
    # here meanwhile. A critical validation failure cancels it and raises: nothing
    # computed from unvalidated data reaches the report.
    stream_pending = start_stream_scores(
        {**series, **error_rate_series(hourly)}, workers=n_workers, pool=pool
    )
    forecast_pending = start_forecasts(series, config=config, workers=n_workers, pool=pool)
    validation = None
    if validate:
        with clock("validation"):
            try:
                validation = run_validation(store, settings, start, end)
            except BaseException:
                stream_pending.cancel()
                forecast_pending.cancel()
                raise
    data = ReportData(generated, start, end, validation=validation, timings=timings)
    data.hourly = hourly
    with clock("health+performance+alerts"):
        data.health = health_overview(store, settings, end)
        data.performance = performance_table(store, start, end)
        data.alerts_active, data.alerts_recent = alert_tables(store, start, end)
        data.week_over_week = action_week_over_week(store, end)
    with clock("recommendations"):
        data.recommendations = recommendations_for(store, start, end, spec_dir)
    with clock("dependencies"):
        # Co-failures over the last day only: D's per-minute windows over a month of
        # calls cost more than the rest of the report (see bench/README.md).
        data.dependency = dependency_map(
            spec_dir, store=store, since=max(start, end - timedelta(days=1))
        )
    with clock("kpis"):
        data.kpis = kpi_scorecard(store, start, end)
    with clock("anomalies (wait)"):
        data.stream_scores = stream_pending.result()
    with clock("forecasts (wait)"):
        data.forecasts = forecast_pending.result()
    with clock("predictions"):
        data.predictions = predict_services(
            data.hourly,
            data.forecasts,
            latency_critical_ms=settings.response_time_critical_ms,
            success_rate_critical=settings.success_rate_critical,
            slo=settings.analytics_slo_target,
            horizon=config.horizon,
            window_days=days,
        )
    return data


class _Clock:
    """``with clock("stage"):`` adds the block's wall time to ``timings["stage"]``."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started


def run_validation(store: MetricsStore, settings: Any, start: datetime, end: datetime) -> Any:
    """G's data validation over the window (``analytics.validation.validate_store``).

    Raises:
        analytics.validation.DataValidationError: A critical check failed.
    """
    from analytics.validation import validate_store

    interval = settings.analytics_probe_interval_seconds
    return validate_store(
        store,
        since=start,
        until=end + timedelta(microseconds=1),
        probe_interval=None if interval is None else timedelta(seconds=interval),
        max_clock_skew=timedelta(seconds=settings.analytics_max_clock_skew_seconds),
        gap_factor=settings.analytics_gap_factor,
    )


def default_spec_dir() -> Path:
    """The built-in workflow specs (``flows/specs``)."""
    return Path(__file__).resolve().parents[1] / "flows" / "specs"


def recommendations_for(
    store: MetricsStore, start: datetime, end: datetime, spec_dir: Path | None
) -> list[Recommendation]:
    """Recommendations from the window's workflow calls, runs and the specs."""
    from analytics.recommend import load_specs, recommend

    specs = load_specs(spec_dir or default_spec_dir())
    if not specs:
        return []
    runs = store.query(
        "SELECT run_id, workflow, started_at, status, duration_ms FROM workflow_runs "
        "WHERE started_at >= ? AND started_at <= ?",
        [start, end],
    )
    providers = _capability_services()
    calls = store.query(
        "SELECT ts, service, action, method, path, ok, latency_ms, error_class, attempts, "
        "run_id FROM calls WHERE ts >= ? AND ts <= ? AND (run_id IS NOT NULL "
        "OR list_contains(?, service))",
        [start, end, sorted(providers)],
    )
    return recommend(calls, runs, specs)


def _capability_services() -> set[str]:
    try:
        from junction.workflows.capabilities import CAPABILITIES
    except ImportError:
        return set()
    return {b.integration for cap in CAPABILITIES.values() for b in cap.bindings}


def dependency_map(
    spec_dir: Path | None, *, store: MetricsStore | None = None, since: datetime | None = None
) -> Any:
    """D's dependency map of the specs in ``spec_dir`` (``None`` when unavailable)."""
    try:
        from junction.workflows.depmap import build_map
        from junction.workflows.validate import load_workflow
    except ImportError:
        return None
    folder = spec_dir or default_spec_dir()
    specs = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            specs.append(load_workflow(path))
        except Exception:  # an invalid spec is validate's business, not the report's
            continue
    if not specs:
        return None
    try:
        return build_map(specs, store=store, since=since)
    except Exception:  # co-failures need history; the static map is still worth showing
        return build_map(specs)


# ------------------------------------------------------------------ rendering


def _fmt(value: Any, kind: str = "") -> str:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "chg":
        return f"{value:+.0%}"
    if kind == "ms":
        return f"{value:,.0f}"
    if kind == "num":
        return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
    if isinstance(value, pd.Timestamp | datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)


def chart_services(data: ReportData, count: int = 6) -> list[str]:
    """Services for per-service charts: worst health first, then highest risk."""
    ranked: list[tuple[float, str]] = []
    for svc in sorted(set(data.hourly["service"]) if len(data.hourly) else set()):
        score = 100.0
        if len(data.health):
            row = data.health[data.health["service"] == svc]
            if len(row) and not pd.isna(row["score"].iloc[0]):
                score = float(row["score"].iloc[0])
        risk = worst(data.predictions.get(svc, []))
        ranked.append((score - 100 * (risk.probability if risk else 0.0), svc))
    return [svc for _, svc in sorted(ranked)[:count]]


def sections(data: ReportData, *, chart_count: int = 6) -> list[dict[str, Any]]:
    """The report as a list of sections (title, html body, markdown body)."""
    out: list[dict[str, Any]] = []
    esc = html.escape

    def table(frame: pd.DataFrame, cols: list[tuple[str, str, str]], *, status: str = "") -> str:
        head = "".join(f"<th>{esc(t)}</th>" for _, t, _ in cols)
        body = []
        for _, r in frame.iterrows():
            cls = f' class="st-{esc(str(r[status]))}"' if status else ""
            cells = "".join(f"<td>{esc(_fmt(r[c], k))}</td>" for c, _, k in cols)
            body.append(f"<tr{cls}>{cells}</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    def md_table(frame: pd.DataFrame, cols: list[tuple[str, str, str]]) -> str:
        lines = ["| " + " | ".join(t for _, t, _ in cols) + " |", "|" + "---|" * len(cols)]
        for _, r in frame.iterrows():
            cells = [_fmt(r[c], k).replace("|", "\\|") for c, _, k in cols]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def add(key: str, title: str, body: str, md: str, charts: int = 0) -> None:
        out.append({"key": key, "title": title, "html": body, "md": md, "charts": charts})

    def empty(key: str, title: str, why: str) -> None:
        add(
            key,
            title,
            f'<p class="nodata">Not enough data: {esc(why)}</p>',
            f"_Not enough data: {why}_",
        )

    # KPI scorecard first: it is what people look for.
    if data.kpis:
        rows = pd.DataFrame(
            [
                {
                    "name": k.name,
                    "target": k.target,
                    "value": k.value,
                    "baseline": k.baseline,
                    "source": k.baseline_source,
                    "met": "n/a" if k.met is None else ("met" if k.met else "missed"),
                    "note": k.note,
                }
                for k in data.kpis
            ]
        )
        cols = [
            ("name", "KPI", ""),
            ("target", "Target", ""),
            ("value", "Measured", ""),
            ("baseline", "Baseline", ""),
            ("source", "Baseline source", ""),
            ("met", "Status", ""),
            ("note", "How measured", ""),
        ]
        add("kpis", "KPI scorecard", table(rows, cols, status="met"), md_table(rows, cols))

    if len(data.health):
        cols = [
            ("service", "Service", ""),
            ("status", "Status", ""),
            ("score", "Score", "num"),
            ("calls", "Obs. 24 h", "num"),
            ("success_rate", "Success", "pct"),
            ("p50_ms", "p50 ms", "ms"),
            ("p95_ms", "p95 ms", "ms"),
            ("uptime", "Uptime", "pct"),
            ("reasons", "Why", ""),
        ]
        counts = data.health["status"].value_counts().to_dict()
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        add(
            "health",
            "Service health (last 24 h)",
            f"<p>{esc(summary)}</p>" + table(data.health, cols, status="status"),
            f"{summary}\n\n" + md_table(data.health, cols),
        )
    else:
        empty("health", "Service health (last 24 h)", "no calls or probes in the last 24 hours")

    if len(data.performance):
        cols = [
            ("service", "Service", ""),
            ("calls_per_day", "Calls/day", "num"),
            ("success_rate", "Success", "pct"),
            ("mean_ms", "Mean ms", "ms"),
            ("p50_ms", "p50 ms", "ms"),
            ("p95_ms", "p95 ms", "ms"),
            ("p99_ms", "p99 ms", "ms"),
            ("wow_volume", "Volume WoW", "chg"),
            ("wow_p95", "p95 WoW", "chg"),
        ]
        body, md = table(data.performance, cols), md_table(data.performance, cols)
        wow = data.week_over_week
        if wow is not None and len(wow) and "p95_change" in wow.columns:
            moved = wow.assign(_abs=wow["p95_change"].abs()).dropna(subset=["_abs"])
            moved = moved.sort_values("_abs", ascending=False).head(10)
            wcols = [
                ("service", "Service", ""),
                ("action", "Action", ""),
                ("calls", "Calls (7 d)", "num"),
                ("calls_change", "Volume WoW", "chg"),
                ("p95_ms", "p95 ms", "ms"),
                ("prev_p95_ms", "p95 ms, week before", "ms"),
                ("p95_change", "p95 WoW", "chg"),
                ("success_rate_change", "Success change", "chg"),
            ]
            body += "<h3>Biggest week-over-week latency moves, by action</h3>"
            body += table(moved, wcols)
            md += "\n\n" + md_table(moved, wcols)
        add("performance", "Performance metrics", body, md)
    else:
        empty("performance", "Performance metrics", "no calls in the window")

    alert_parts, alert_md = [], []
    if len(data.alerts_active):
        cols = [
            ("service", "Service", ""),
            ("rule", "Rule", ""),
            ("severity", "Severity", ""),
            ("since", "Firing since", ""),
            ("message", "Message", ""),
        ]
        alert_parts.append("<h3>Active</h3>" + table(data.alerts_active, cols))
        alert_md.append("**Active**\n\n" + md_table(data.alerts_active, cols))
    else:
        alert_parts.append("<h3>Active</h3><p>No active alerts.</p>")
        alert_md.append("**Active**: none")
    if len(data.alerts_recent):
        cols = [
            ("ts", "Time", ""),
            ("service", "Service", ""),
            ("rule", "Rule", ""),
            ("state", "State", ""),
            ("severity", "Severity", ""),
            ("message", "Message", ""),
        ]
        alert_parts.append("<h3>Recent transitions</h3>" + table(data.alerts_recent, cols))
        alert_md.append("**Recent**\n\n" + md_table(data.alerts_recent, cols))
    else:
        alert_parts.append(
            '<h3>Recent transitions</h3><p class="nodata">No alert transitions in the window.</p>'
        )
    add("alerts", "Alerts", "".join(alert_parts), "\n\n".join(alert_md))

    picked = chart_services(data, chart_count)
    charts = []
    overall = overall_chart(data.hourly) if len(data.hourly) else None
    if overall:
        charts.append(f"<figure><figcaption>All services</figcaption>{overall}</figure>")
    per = trend_chart(data.hourly, picked) if picked else None
    if per:
        charts.append(
            f"<figure><figcaption>Services to watch: {esc(', '.join(picked))}</figcaption>"
            f"{per}</figure>"
        )
    if charts:
        add(
            "trends",
            "Trends",
            "".join(charts),
            f"Hourly volume and p95 latency; services to watch: {', '.join(picked)}",
            charts=len(charts),
        )
    else:
        empty("trends", "Trends", "no hourly data")

    fc_parts, fc_md, n_fc = [], [], 0
    anomalies = anomaly_table(data.forecasts, data.stream_scores)
    for svc in picked:
        hits = anomalies[(anomalies["service"] == svc) & anomalies["confirmed"].astype(bool)]
        svg = forecast_chart(
            data.forecasts.get((svc, "volume")),
            data.forecasts.get((svc, "latency")),
            {m: hits[hits["metric"] == m] for m in ("volume", "latency")},
        )
        if svg is None:
            reasons = [
                f"{m}: {fo.reason}"
                for m in ("volume", "latency")
                if isinstance(fo := data.forecasts.get((svc, m)), NotEnoughData)
            ]
            fc_parts.append(
                f'<h3>{esc(svc)}</h3><p class="nodata">Not enough data: '
                f"{esc('; '.join(reasons) or 'no forecast')}</p>"
            )
            continue
        n_fc += 1
        fc_parts.append(f"<figure><figcaption>{esc(svc)}</figcaption>{svg}</figure>")
    fitted = sum(isinstance(v, Forecast) for v in data.forecasts.values())
    skipped = [v for v in data.forecasts.values() if isinstance(v, NotEnoughData)]
    summary = (
        f"{fitted} series forecast {_horizon_text(data)} ahead, {len(skipped)} without enough "
        f"data; {len(anomalies)} points outside the interval"
        + (
            f", {int(anomalies['confirmed'].sum())} confirmed by the streaming detector"
            if data.stream_scores and len(anomalies)
            else ""
        )
    )
    if skipped:
        skipped_text = "; ".join(f"{s.service}/{s.metric}: {s.reason}" for s in skipped[:10])
        fc_parts.append(f'<p class="nodata">Not fitted: {esc(skipped_text)}</p>')
    if len(anomalies):
        # Confirmed by both detectors first, then the biggest departures.
        top = anomalies.sort_values(["confirmed", "severity"], ascending=False).head(15)
        cols = [
            ("service", "Service", ""),
            ("metric", "Metric", ""),
            ("ds", "Hour", ""),
            ("y", "Actual", "num"),
            ("yhat_lower", "Low", "num"),
            ("yhat_upper", "High", "num"),
            ("severity", "Severity", "num"),
            ("stream_score", "Stream score", "num"),
            ("confirmed", "Confirmed", ""),
        ]
        fc_parts.append("<h3>Latest anomalies</h3>" + table(top, cols))
        fc_md.append(md_table(top, cols))
    detections = stream_detections(data.stream_scores)
    if len(detections):
        per_metric = detections["metric"].value_counts().to_dict()
        by_metric = ", ".join(
            f"{n} {m}" for m, n in sorted(per_metric.items(), key=lambda kv: str(kv[0]))
        )
        summary += f"; streaming detector: {len(detections)} detections ({by_metric})"
        dcols = [
            ("service", "Service", ""),
            ("metric", "Series", ""),
            ("timestamp", "Hour", ""),
            ("value", "Value", "num"),
            ("score", "Score", "num"),
        ]
        top_d = detections.sort_values(["timestamp", "score"], ascending=False).head(15)
        fc_parts.append("<h3>Streaming detector: latest detections</h3>" + table(top_d, dcols))
        fc_md.append(md_table(top_d, dcols))
    if data.forecasts:
        add(
            "forecasts",
            "Forecasts and anomalies",
            f"<p>{esc(summary)}</p>" + "".join(fc_parts),
            summary + "\n\n" + "\n".join(fc_md),
            charts=n_fc,
        )
    else:
        empty("forecasts", "Forecasts and anomalies", "no series to forecast")

    pred_rows = []
    for svc, outcomes in sorted(data.predictions.items()):
        for o in outcomes:
            if isinstance(o, Prediction):
                pred_rows.append(
                    {
                        "service": svc,
                        "risk": o.kind,
                        "probability": o.probability,
                        "eta": o.expected_at,
                        "explanation": o.explanation,
                    }
                )
            else:
                pred_rows.append(
                    {
                        "service": svc,
                        "risk": o.metric,
                        "probability": None,
                        "eta": None,
                        "explanation": f"not enough data: {o.reason}",
                    }
                )
    if pred_rows:
        frame = pd.DataFrame(pred_rows).sort_values(
            ["probability", "service"], ascending=[False, True], na_position="last"
        )
        at_risk = frame[frame["probability"].fillna(0) >= 0.5]
        shown = pd.concat([at_risk, frame[frame["probability"].fillna(0) < 0.5].head(10)])
        cols = [
            ("service", "Service", ""),
            ("risk", "Risk", ""),
            ("probability", "Probability", "pct"),
            ("eta", "Expected (UTC)", ""),
            ("explanation", "Why", ""),
        ]
        text = f"{len(at_risk)} risks at >= 50% within {_horizon_text(data)}"
        add(
            "predictions",
            "Failure prediction",
            f"<p>{esc(text)}</p>" + table(shown, cols),
            text + "\n\n" + md_table(shown, cols),
        )
    else:
        empty("predictions", "Failure prediction", "no services with data")

    svg = dependency_svg(data.dependency)
    if svg:
        add(
            "dependencies",
            "Dependency graph",
            f"<p>Workflows (bands) and their steps, the services they call (right; dashed: "
            f"fallback), co-failures (red dotted).</p><figure>{svg}</figure>",
            "Workflows -> steps -> services (see the HTML report for the drawing)",
            charts=1,
        )
    else:
        empty("dependencies", "Dependency graph", "no workflow specs found")

    if data.recommendations:
        frame = pd.DataFrame([r.as_row() for r in data.recommendations])
        cols = [
            ("id", "Id", ""),
            ("kind", "Kind", ""),
            ("title", "Recommendation", ""),
            ("saving_ms_per_day", "Saves ms/day", "ms"),
            ("saving_calls_per_day", "Saves calls/day", "num"),
            ("confidence", "Confidence", "pct"),
            ("rationale", "Evidence", ""),
        ]
        add("recommendations", "Recommendations", table(frame, cols), md_table(frame, cols))
    else:
        empty(
            "recommendations",
            "Recommendations",
            "no workflow runs with calls in the window, or nothing to improve",
        )

    v = data.validation
    if v is not None:
        warn = getattr(v, "warnings", [])
        text = f"{len(getattr(v, 'checks', []))} checks, {len(warn)} warnings"
        md = v.to_markdown() if hasattr(v, "to_markdown") else text
        frame = v.to_frame() if hasattr(v, "to_frame") else pd.DataFrame()
        cols = [
            ("table", "Table", ""),
            ("name", "Check", ""),
            ("severity", "Severity", ""),
            ("passed", "Passed", ""),
            ("observed", "Observed", ""),
        ]
        body = f"<p>{esc(text)}</p>" + (table(frame, cols) if len(frame) else "")
        add("validation", "Data validation", body, md)
    if data.notes:
        add(
            "notes",
            "Notes",
            "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in data.notes) + "</ul>",
            "\n".join(f"- {n}" for n in data.notes),
        )
    return out


def _horizon_text(data: ReportData) -> str:
    for v in data.forecasts.values():
        if isinstance(v, Forecast) and len(v.horizon):
            hours = (v.horizon["ds"].iloc[-1] - v.history["ds"].iloc[-1]).total_seconds() / 3600
            return f"{hours / 24:.0f} days"
    return "the horizon"


def render_html(data: ReportData, *, chart_count: int = 6) -> str:
    """The self-contained HTML report."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    template = env.get_template("report.html.j2")
    return template.render(
        data=data,
        sections=sections(data, chart_count=chart_count),
        window=f"{data.start:%Y-%m-%d %H:%M} – {data.end:%Y-%m-%d %H:%M} UTC",
        generated=f"{data.generated_at:%Y-%m-%d %H:%M:%S} UTC",
    )


def render_markdown(data: ReportData) -> str:
    """The report as Markdown (Prefect's markdown artifact); charts are left out."""
    parts = [
        "# Junction analytics report",
        f"Window {data.start:%Y-%m-%d %H:%M} – {data.end:%Y-%m-%d %H:%M} UTC, generated "
        f"{data.generated_at:%Y-%m-%d %H:%M} UTC.",
    ]
    for s in sections(data, chart_count=0):
        parts.append(f"## {s['title']}\n\n{s['md']}")
    return "\n\n".join(parts) + "\n"


def write_report(data: ReportData, out_dir: Path) -> Path:
    """Write ``report.html`` (and ``report.json`` with the KPIs and recommendations).

    Returns:
        The HTML file's path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "report.html"
    tmp = out_dir / ".report.html.tmp"
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(target)
    summary = {
        "generated_at": data.generated_at.isoformat(),
        "window": [data.start.isoformat(), data.end.isoformat()],
        "kpis": [k.__dict__ for k in data.kpis],
        "recommendations": [r.as_row() for r in data.recommendations],
    }
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    return target
