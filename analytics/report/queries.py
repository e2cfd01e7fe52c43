"""The report's SQL sections: window, service health, performance, alerts.

Every function reads the metrics store through DuckDB and returns a small DataFrame.
A service whose every call failed has no latency percentiles (``quantile_cont ...
FILTER (WHERE ok)`` is ``NULL``): those come back as NaN, never as ``pd.NA`` in an
object column, so the renderer and the charts see one kind of "no value".
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from analytics.report.model import opt_float, records, utc
from analytics.trends import week_over_week
from junction.scoring import Thresholds, WindowStats, health_score
from junction.store import MetricsStore

HEALTH_COLUMNS = [
    "service",
    "calls",
    "success_rate",
    "p50_ms",
    "p95_ms",
    "uptime",
    "score",
    "status",
    "reasons",
]
PERFORMANCE_COLUMNS = [
    "service",
    "calls_per_day",
    "success_rate",
    "mean_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "wow_volume",
    "wow_p95",
]


def window_end(store: MetricsStore, until: datetime | None = None) -> datetime | None:
    """The newest timestamp in calls/probes (UTC) at or before ``until`` (default: any),
    ``None`` when there is none."""
    if until is None:
        frame = store.query(
            "SELECT greatest((SELECT max(ts) FROM calls), (SELECT max(ts) FROM probes)) AS t"
        )
    else:
        frame = store.query(
            "SELECT greatest((SELECT max(ts) FROM calls WHERE ts <= ?), "
            "(SELECT max(ts) FROM probes WHERE ts <= ?)) AS t",
            [until, until],
        )
    return utc(frame["t"].iloc[0]) if len(frame) else None


def first_timestamp(store: MetricsStore) -> datetime | None:
    """The oldest timestamp in calls/probes (UTC), ``None`` for an empty store."""
    frame = store.query(
        "SELECT least((SELECT min(ts) FROM calls), (SELECT min(ts) FROM probes)) AS t"
    )
    return utc(frame["t"].iloc[0]) if len(frame) else None


def health_overview(store: MetricsStore, settings: Thresholds, end: datetime) -> pd.DataFrame:
    """Per-service health over the 24 h before ``end`` (calls and probes together).

    Uses :func:`junction.scoring.health_score` on stats computed in DuckDB (p50/p95 are
    nearest-rank, ``quantile_disc``, like the scoring module's). A service with no
    successful observation has no latency (NaN) and scores on its success rate alone.

    Returns:
        Columns :data:`HEALTH_COLUMNS`, worst score first.
    """
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
    for r in records(frame):
        last_error = utc(r.last_error_at)
        n, successes = int(r.n), int(r.successes or 0)
        stats = WindowStats(
            as_of=end,
            count=n,
            successes=successes,
            success_rate=successes / n if n else None,
            p50_latency_ms=opt_float(r.p50_ms),
            p95_latency_ms=opt_float(r.p95_ms),
            uptime=opt_float(r.uptime),
            seconds_since_last_error=(
                None if last_error is None else (end - last_error).total_seconds()
            ),
            last_error_at=last_error,
            last_error_class=None if last_error is None else r.last_error_class,
            last_breaker_state=r.breaker,
        )
        score = health_score(stats, settings)
        rows.append(
            {
                "service": r.service,
                "calls": n,
                "success_rate": stats.success_rate,
                "p50_ms": stats.p50_latency_ms,
                "p95_ms": stats.p95_latency_ms,
                "uptime": stats.uptime,
                "score": score.score,
                "status": score.status,
                "reasons": "; ".join(score.reasons),
            }
        )
    out = pd.DataFrame(rows, columns=HEALTH_COLUMNS)
    for col in ("success_rate", "p50_ms", "p95_ms", "uptime", "score"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    # Worst first: what needs attention is at the top of a 30-row table.
    return out.sort_values(["score", "service"], na_position="first").reset_index(drop=True)


def performance_table(store: MetricsStore, start: datetime, end: datetime) -> pd.DataFrame:
    """Per-service performance over ``[start, end]`` and week-over-week change.

    Latency columns are over successful calls only: NaN for a service that never
    succeeded. Week-over-week changes are NaN when either week has no data.

    Returns:
        Columns :data:`PERFORMANCE_COLUMNS` (and ``mean_ms``), all numbers float64.
    """
    sql = """
        WITH s AS (
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
            GROUP BY service
        )
        SELECT service,
               calls_per_day::DOUBLE AS calls_per_day,
               success_rate::DOUBLE AS success_rate,
               mean_ms::DOUBLE AS mean_ms,
               q[1]::DOUBLE AS p50_ms, q[2]::DOUBLE AS p95_ms, q[3]::DOUBLE AS p99_ms,
               (vol_this / nullif(vol_prev, 0) - 1)::DOUBLE AS wow_volume,
               (p95_this / nullif(p95_prev, 0) - 1)::DOUBLE AS wow_p95
        FROM s ORDER BY service
    """
    frame = store.query(sql, [end, end, end, end, end, end, start, end])
    out = pd.DataFrame({"service": frame["service"].astype(str)})
    for col in PERFORMANCE_COLUMNS[1:]:
        # NULL -> NaN whatever dtype DuckDB picked (a nullable one turns NULL into pd.NA).
        values = pd.to_numeric(frame[col], errors="coerce")
        out[col] = np.asarray(values.astype("float64"), dtype="float64")
    return out


def action_week_over_week(store: MetricsStore, end: datetime) -> pd.DataFrame:
    """This week against the last, per service and action, ending at ``end``."""
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


__all__ = [
    "HEALTH_COLUMNS",
    "PERFORMANCE_COLUMNS",
    "action_week_over_week",
    "alert_tables",
    "first_timestamp",
    "health_overview",
    "performance_table",
    "window_end",
]
