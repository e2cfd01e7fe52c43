"""Capacity watch: Junction's own resources, their trend, and the scale-out signal.

Samples are rows ``ts`` (UTC), ``metric``, ``scope`` (a work pool, a host, the store),
``value``; the ``capacity-watch`` flow (``flows/capacity.py``) takes them every 5 minutes
from the Prefect API (work-queue depth = scheduled runs past due per pool, runs in the
Late state, the newest worker heartbeat), this host (:func:`host_samples`: CPU and memory
percent) and the metrics store (:func:`store_samples`: bytes on disk), and keeps them in
a small SQLite table (:class:`SampleLog`, ``<home>/capacity.db``).

:func:`assess` judges each measure that has a limit (:func:`limits_from_settings`)
against it: the level now is the median of the last three samples (one CPU spike is not
a trend), the trend a least-squares line over the last ``window`` of samples. A measure

* at or above its limit now is ``breached`` (crossing time: now);
* below it, rising, and projected (level now + slope x time) to reach it within
  ``horizon`` is ``forecast``, with the projected crossing time;
* with fewer than ``min_samples`` samples in the window is ``not enough data`` and never
  signals (two samples make any line);
* else ``ok`` (with the crossing time when it is further out than the horizon).

The signal (:attr:`Assessment.signal`) is raised when any measure is breached or
forecast; :attr:`Assessment.forecast_at` is the earliest crossing: for the work-queue
depth, when the current workers stop keeping up.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from junction.alerting.engine import AlertEngine, ServiceSnapshot
from junction.alerting.judge import Condition
from junction.alerting.model import Severity
from junction.health import open_store
from junction.scoring import WindowStats, health_score
from junction.settings import Settings

QUEUE_DEPTH = "queue_depth"
LATE_RUNS = "late_runs"
CPU = "cpu_percent"
MEMORY = "memory_percent"
STORE_BYTES = "store_bytes"
WORKERS_ONLINE = "workers_online"
HEARTBEAT_AGE = "heartbeat_age_seconds"
_FAR_HOURS = 10 * 365 * 24.0

COLUMNS = ["ts", "metric", "scope", "value"]
KEEP = timedelta(days=30)
"""Samples older than this are pruned from the log."""

Status = Literal["ok", "breached", "forecast", "not enough data"]

UNITS = {CPU: "%", MEMORY: "%", STORE_BYTES: " B"}
ALERT_SERVICE = "junction"
"""The service the capacity alert is raised for."""
ALERT_RULE = "capacity"
"""Its rule (fingerprint ``junction:capacity``; one of ``COMPONENT_RULES``)."""


def limits_from_settings(settings: Settings) -> dict[str, float]:
    """Metric -> the value at which to scale out (the ``capacity_*`` settings)."""
    return {
        QUEUE_DEPTH: settings.capacity_queue_threshold,
        LATE_RUNS: settings.capacity_late_threshold,
        CPU: settings.capacity_cpu_percent,
        MEMORY: settings.capacity_memory_percent,
        STORE_BYTES: settings.capacity_store_gb * 1e9,
    }


@dataclass(frozen=True)
class Finding:
    """One measure judged against its limit.

    Attributes:
        metric: The measure (:data:`QUEUE_DEPTH`, :data:`CPU`, ...).
        scope: Whose (a work pool, a host, ``metrics-store``).
        status: ``ok``, ``breached``, ``forecast`` or ``not enough data``.
        current: Level now (median of the last three samples); None without samples.
        limit: The threshold.
        slope_per_day: Trend (units per day; for the store: its growth per day).
        crossing_at: When the trend reaches the limit (now when breached; None when it
            never does: flat or falling).
        samples: Samples in the window.
        message: One line saying it.
    """

    metric: str
    scope: str
    status: Status
    current: float | None
    limit: float
    slope_per_day: float | None
    crossing_at: datetime | None
    samples: int
    message: str

    @property
    def signals(self) -> bool:
        """Breached now or forecast to be within the horizon."""
        return self.status in ("breached", "forecast")


@dataclass(frozen=True)
class Assessment:
    """Every finding of one :func:`assess` call."""

    now: datetime
    horizon: timedelta
    findings: list[Finding]

    @property
    def signal(self) -> bool:
        """Scale out: some measure is breached or forecast to be within the horizon."""
        return any(f.signals for f in self.findings)

    @property
    def forecast_at(self) -> datetime | None:
        """The earliest crossing among the signalling findings (None without a signal)."""
        times = [f.crossing_at for f in self.findings if f.signals and f.crossing_at]
        return min(times) if times else None

    @property
    def reasons(self) -> list[str]:
        """The signalling findings' messages, earliest crossing first."""
        hits = sorted((f for f in self.findings if f.signals), key=lambda f: f.crossing_at or 0)
        return [f.message for f in hits]

    def frame(self) -> pd.DataFrame:
        """One row per finding (for a table artifact or a test)."""
        rows = [
            {
                "metric": f.metric,
                "scope": f.scope,
                "status": f.status,
                "current": f.current,
                "limit": f.limit,
                "slope_per_day": f.slope_per_day,
                "crossing_at": f.crossing_at,
                "samples": f.samples,
            }
            for f in self.findings
        ]
        return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


def _fmt(metric: str, value: float) -> str:
    if metric == STORE_BYTES:
        return f"{value / 1e9:.2f} GB"
    return f"{value:.4g}{UNITS.get(metric, '')}"


def _judge(
    metric: str,
    scope: str,
    rows: pd.DataFrame,
    limit: float,
    now: datetime,
    horizon: timedelta,
    min_samples: int,
) -> Finding:
    n = len(rows)
    what = f"{metric} of {scope}"
    if n < min_samples:
        return Finding(
            metric, scope, "not enough data", None if n == 0 else float(rows["value"].iloc[-1]),
            limit, None, None, n, f"{what}: not enough data ({n} samples; {min_samples} needed)",
        )  # fmt: skip
    values = rows["value"].to_numpy(dtype="float64")
    hours = (rows["ts"] - rows["ts"].iloc[0]).dt.total_seconds().to_numpy() / 3600.0
    current = float(np.median(values[-3:]))
    slope_h = float(np.polyfit(hours, values, 1)[0]) if np.ptp(hours) > 0 else 0.0
    per_day = slope_h * 24
    if current >= limit:
        return Finding(
            metric, scope, "breached", current, limit, per_day, now, n,
            f"{what} is {_fmt(metric, current)}, at or above {_fmt(metric, limit)}",
        )  # fmt: skip
    crossing = None
    hours_left = (limit - current) / slope_h if slope_h > 0 else math.inf
    # A near-flat trend puts the crossing centuries away (past datetime's range):
    # beyond ten years it is reported as no crossing at all.
    if hours_left <= _FAR_HOURS:
        crossing = now + timedelta(hours=hours_left)
    trend = f"{'+' if per_day >= 0 else ''}{_fmt(metric, per_day)}/day"
    if crossing is not None and crossing <= now + horizon:
        return Finding(
            metric, scope, "forecast", current, limit, per_day, crossing, n,
            f"{what} is {_fmt(metric, current)} and rising {trend}: forecast to reach "
            f"{_fmt(metric, limit)} at {crossing:%Y-%m-%d %H:%M} UTC",
        )  # fmt: skip
    return Finding(
        metric, scope, "ok", current, limit, per_day, crossing, n,
        f"{what} is {_fmt(metric, current)} ({trend}; limit {_fmt(metric, limit)})",
    )  # fmt: skip


def normalise(samples: pd.DataFrame) -> pd.DataFrame:
    """``samples`` with ``ts`` as UTC timestamps and float values, sorted by time.

    Raises:
        ValueError: A column of :data:`COLUMNS` is missing (named).
    """
    missing = [c for c in COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"capacity samples: missing column(s) {', '.join(missing)}")
    out = samples[COLUMNS].copy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    out = out[np.isfinite(out["value"])]
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def assess(
    samples: pd.DataFrame,
    limits: Mapping[str, float],
    *,
    now: datetime | None = None,
    horizon: timedelta = timedelta(hours=24),
    window: timedelta = timedelta(hours=24),
    min_samples: int = 6,
) -> Assessment:
    """Judge every (metric, scope) with a limit (see the module docstring).

    Args:
        samples: Rows ``ts``, ``metric``, ``scope``, ``value``.
        limits: Metric -> threshold (metrics without one are not judged).
        now: The time judged (default: the newest sample, else the wall clock).
        horizon: How far ahead a forecast crossing raises the signal.
        window: Samples this far back fit the trend.
        min_samples: Fewest samples in the window to judge a measure.

    Returns:
        The findings, sorted by metric and scope.
    """
    frame = normalise(samples)
    if now is None:
        now = frame["ts"].max().to_pydatetime() if len(frame) else datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    recent = frame[(frame["ts"] > now - window) & (frame["ts"] <= now)]
    findings = []
    for metric, limit in sorted(limits.items()):
        rows = recent[recent["metric"] == metric]
        scopes = sorted(set(frame.loc[frame["metric"] == metric, "scope"]))
        for scope in scopes:
            mine = rows[rows["scope"] == scope]
            findings.append(_judge(metric, scope, mine, limit, now, horizon, min_samples))
    return Assessment(now, horizon, findings)


def capacity_alert(settings: Settings, assessment: Assessment) -> list[str]:
    """Raise (or resolve) the ``junction:capacity`` alert through the alert engine.

    The rule is judged here and handed to the engine as a condition of service
    ``junction`` (critical when a measure is breached now, warning when one is only
    forecast to cross, fine otherwise, which resolves the alert); the message holds the
    signal's reasons, so the alert says what crosses when.

    Returns:
        The engine's transitions as one-liners (empty when nothing changed).
    """
    breached = any(f.status == "breached" for f in assessment.findings)
    if not assessment.signal:
        severity, message = None, "capacity within its thresholds"
    else:
        severity = Severity.CRITICAL if breached else Severity.WARNING
        message = "scale out: " + "; ".join(assessment.reasons)
    now = assessment.now
    stats = WindowStats(as_of=now)  # no observations: the engine's own rules stay unjudged
    snapshot = ServiceSnapshot(
        service=ALERT_SERVICE,
        stats=stats,
        score=health_score(stats, settings, now=now),
        source="capacity",
        labels={"signal": "capacity"},
        conditions={ALERT_RULE: Condition(ALERT_RULE, severity, None, message)},
    )
    with AlertEngine.from_settings(settings, store=open_store(settings)) as engine:
        result = engine.evaluate([snapshot], now=now)
    lines = [f"alert {a.fingerprint} firing: {a.message}" for a in result.fired]
    lines += [f"alert {a.fingerprint} now {a.severity.value}" for a in result.changed]
    lines += [f"alert {a.fingerprint} resolved" for a in result.resolved]
    return lines


# ---------------------------------------------------------------------------- sources


def host_samples(now: datetime, *, host: str | None = None) -> pd.DataFrame:
    """This host's CPU and memory use (percent), from psutil."""
    # Function-level: psutil is only needed by the watch's sampling, not by assess().
    import psutil

    name = host or socket.gethostname()
    cpu = psutil.cpu_percent(interval=0.5)
    memory = psutil.virtual_memory().percent
    return pd.DataFrame([(now, CPU, name, cpu), (now, MEMORY, name, memory)], columns=COLUMNS)


def directory_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (0 when it does not exist)."""
    total = 0
    for base, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):  # a segment compacted away meanwhile
                total += (Path(base) / name).stat().st_size
    return total


def store_samples(root: Path, now: datetime) -> pd.DataFrame:
    """The metrics store's size on disk."""
    return pd.DataFrame(
        [(now, STORE_BYTES, "metrics-store", float(directory_bytes(root)))], columns=COLUMNS
    )


# ---------------------------------------------------------------------------- the log


class SampleLog:
    """The samples and the signal's state in a small SQLite file (``<home>/capacity.db``).

    Args:
        path: The database file (created with its table).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS samples "
                "(ts TEXT NOT NULL, metric TEXT NOT NULL, scope TEXT NOT NULL, value REAL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts)")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            with conn:  # one transaction, committed on success
                yield conn
        finally:
            conn.close()

    def append(self, samples: pd.DataFrame, *, keep: timedelta = KEEP) -> int:
        """Add ``samples`` and prune those older than ``keep`` before the newest one."""
        frame = normalise(samples)
        if frame.empty:
            return 0
        rows = [
            (ts.isoformat(), str(m), str(s), float(v))
            for ts, m, s, v in frame.itertuples(index=False)
        ]
        cutoff = (frame["ts"].max() - keep).isoformat()
        with self._connect() as conn:
            conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)", rows)
            conn.execute("DELETE FROM samples WHERE ts < ?", (cutoff,))
        return len(rows)

    def read(self, since: datetime | None = None) -> pd.DataFrame:
        """Samples at or after ``since`` (all without it), oldest first."""
        sql = "SELECT ts, metric, scope, value FROM samples"
        params: tuple[str, ...] = ()
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            sql, params = sql + " WHERE ts >= ?", (since.astimezone(UTC).isoformat(),)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY ts", params).fetchall()
        return normalise(pd.DataFrame(rows, columns=COLUMNS))

    def get(self, key: str) -> str | None:
        """A stored value of the watch's state (``signal``)."""
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        """Store a value of the watch's state."""
        with self._connect() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def sample_log(settings: Settings) -> SampleLog:
    """The watch's log under the home (``<home>/capacity.db``)."""
    return SampleLog(Path(settings.home) / "capacity.db")


__all__ = [
    "ALERT_SERVICE",
    "CPU",
    "HEARTBEAT_AGE",
    "LATE_RUNS",
    "MEMORY",
    "QUEUE_DEPTH",
    "STORE_BYTES",
    "WORKERS_ONLINE",
    "Assessment",
    "Finding",
    "SampleLog",
    "assess",
    "capacity_alert",
    "directory_bytes",
    "host_samples",
    "limits_from_settings",
    "normalise",
    "sample_log",
    "store_samples",
]
