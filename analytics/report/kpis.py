"""The KPI scorecard: four product KPIs with their targets and baselines.

Window = the report's last 7 days; "first week" = the first 7 days of recorded history,
used only when the history spans more than 14 days so the two do not overlap.

* **Workflow success rate** = completed / finished ``workflow_runs``; target >= 92 %;
  baseline 85 % (the product plan's).
* **Average response time** = mean ``latency_ms`` of successful calls; target <= 800 ms;
  baseline = the first week's mean (the plan gives no number: "measured first week").
* **Uptime** = mean over services of the share of successful probes (probes run at a
  fixed interval, so the share is time-weighted); calls' success when no probes exist;
  target >= 99 %; baseline = first week.
* **Error detection time** = median over firing alerts of (alert time - onset), onset =
  the first failure of the run of one-minute windows with >= 50 % failed observations
  (probes and calls) that leads up to the alert (looked for 30 min back); target < 60 s;
  baseline 5-10 min (the plan's).

Each KPI without data says "not enough data" and why, with ``met = None``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from analytics.report.model import (
    BASELINE_DETECTION,
    SUCCESS_STATUSES,
    Kpi,
    missing,
    opt_float,
    records,
)
from analytics.report.queries import first_timestamp
from junction.store import MetricsStore

_NO_BASELINE = "needs > 14 days of history (first week)"


def pct(x: float | None, digits: int = 1) -> str:
    """``x`` as a percentage, ``n/a`` when missing."""
    return "n/a" if missing(x) else f"{x:.{digits}%}"


def detection_delays(store: MetricsStore, start: datetime, end: datetime) -> pd.DataFrame:
    """Per firing alert in the window: onset of its failure run and the detection delay.

    Onset definition in the module docstring. Alerts with no failure run before them
    (e.g. a latency rule) are left out.

    Returns:
        Columns ``service``, ``alert_at``, ``onset``, ``delay_s``.
    """
    alerts = store.query(
        "SELECT ts, service FROM alerts WHERE state = 'firing' AND ts >= ? AND ts <= ?",
        [start, end],
    )
    rows = []
    for a in records(alerts):
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
        if obs.empty or obs["ok"].astype(bool).all():
            continue
        obs["ok"] = obs["ok"].astype(bool)
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


def _workflow_success(store: MetricsStore, week: datetime, end: datetime) -> Kpi:
    runs = store.query(
        "SELECT status FROM workflow_runs WHERE started_at > ? AND started_at <= ?", [week, end]
    )
    if runs.empty:
        return Kpi(
            "Workflow success rate",
            ">= 92%",
            "n/a",
            "85%",
            "product plan",
            None,
            "not enough data: no workflow runs in the last 7 days",
        )
    rate = float(runs["status"].astype(str).str.lower().isin(SUCCESS_STATUSES).mean())
    return Kpi(
        "Workflow success rate",
        ">= 92%",
        pct(rate),
        "85%",
        "product plan",
        rate >= 0.92,
        f"{len(runs):,} runs in the last 7 days",
    )


def _mean_latency(store: MetricsStore, lo: datetime, hi: datetime) -> tuple[float | None, int]:
    f = store.query(
        "SELECT avg(latency_ms) AS m, count(*) AS n FROM calls WHERE ok AND ts > ? AND ts <= ?",
        [lo, hi],
    )
    n = int(f["n"].iloc[0])
    return (None if n == 0 else opt_float(f["m"].iloc[0])), n


def _uptime(store: MetricsStore, lo: datetime, hi: datetime) -> tuple[float | None, str]:
    for table in ("probes", "calls"):
        f = store.query(
            f"SELECT avg(up) AS u FROM (SELECT service, avg(ok::INT) AS up FROM {table} "
            "WHERE ts > ? AND ts <= ? GROUP BY service)",
            [lo, hi],
        )
        value = opt_float(f["u"].iloc[0])
        if value is not None:
            return value, table
    return None, ""


def _detection_time(store: MetricsStore, start: datetime, end: datetime) -> Kpi:
    delays = detection_delays(store, start, end)
    if delays.empty:
        fired = store.query(
            "SELECT count(*) AS n FROM alerts WHERE state = 'firing' AND ts >= ? AND ts <= ?",
            [start, end],
        )
        n = int(fired["n"].iloc[0]) if not fired.empty else 0
        why = (
            "no alert in the alert history of the report window (the monitor records them)"
            if n == 0
            else f"none of the {n} alerts of the report window followed failed probes or calls"
        )
        return Kpi(
            "Error detection time",
            "< 1 min",
            "n/a",
            BASELINE_DETECTION,
            "product plan",
            None,
            f"not enough data: {why}",
        )
    med = float(delays["delay_s"].median())
    p95 = float(delays["delay_s"].quantile(0.95))
    return Kpi(
        "Error detection time",
        "< 1 min",
        f"{med:.0f} s (p95 {p95:.0f} s)",
        BASELINE_DETECTION,
        "product plan",
        med < 60,
        f"from the alert history: median over {len(delays)} alerts of the report window, "
        "alert time - onset (first failed probe or call of the failure run)",
    )


def kpi_scorecard(store: MetricsStore, start: datetime, end: datetime) -> list[Kpi]:
    """The four product KPIs with targets and baselines (definitions in the module doc)."""
    week = end - timedelta(days=7)
    first = first_timestamp(store)
    baseline_week = (
        (first - timedelta(seconds=1), first + timedelta(days=7))
        if first is not None and (end - first) > timedelta(days=14)
        else None
    )
    base_src = (
        _NO_BASELINE
        if baseline_week is None
        else f"measured, first week ({first:%Y-%m-%d}..{baseline_week[1]:%Y-%m-%d})"
    )

    lat, n = _mean_latency(store, week, end)
    base_text = "n/a"
    if baseline_week is not None:
        base_lat, _ = _mean_latency(store, *baseline_week)
        base_text = "n/a" if base_lat is None else f"{base_lat:,.0f} ms"
    latency = Kpi(
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

    up, source = _uptime(store, week, end)
    up_base = "n/a"
    if baseline_week is not None:
        up_base = pct(_uptime(store, *baseline_week)[0], 2)
    uptime = Kpi(
        "Uptime",
        ">= 99%",
        pct(up, 2),
        up_base,
        base_src,
        None if up is None else up >= 0.99,
        "not enough data: no probes or calls in the last 7 days"
        if up is None
        else f"mean over services of successful {source} share, last 7 days",
    )
    return [
        _workflow_success(store, week, end),
        latency,
        uptime,
        _detection_time(store, start, end),
    ]


__all__ = ["detection_delays", "kpi_scorecard", "pct"]
