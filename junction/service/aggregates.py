"""Health of many services from the metrics store by DuckDB aggregates, judged as the monitor.

The monitor judges a service from its window of observations (probes, and live calls that
say something about the service: :func:`junction.monitor.passive.classify_call`). This
module computes the same :class:`~junction.scoring.WindowStats` in one DuckDB statement
per request instead of replaying rows in Python:

* counts and the nearest-rank p50/p95 of successes (``quantile_disc`` is nearest-rank:
  the value at rank ``ceil(p * n)``, as :func:`junction.scoring.percentile`);
* the time-weighted uptime (each observation holds until the next one: ``lead``);
* the newest failure and breaker state, and the failure streak (observations after the
  last success) from the window's order, by ``row_number``;
* the latest probe (what the health table shows as ``ok``/``latency_ms``/``error``).

Rows still in writers' spools (not yet a Parquet segment) are read too and counted once,
as the monitor's own restore does. The verdict is then taken by the monitor's own code
(:meth:`junction.monitor.ServiceState.health` over a window that reports these stats), so
score, status, "down" and reasons cannot drift from the monitor's.

Reads hold the store's shared read lock: a compaction cannot swap files under a query.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from integrations.base import HealthResult
from integrations.errors import unsent_error_classes
from junction.monitor import ServiceHealth
from junction.monitor import ServiceState as MonitoredService
from junction.scoring import ServiceWindow, WindowStats
from junction.settings import Settings
from junction.store import MetricsStore
from junction.tail import StoreTailer

if TYPE_CHECKING:
    import duckdb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER_SENT = sorted(unsent_error_classes())

_PROBE_COLUMNS = ("id", "ts", "service", "ok", "status", "latency_ms", "error_class", "error",
                  "breaker_state")  # fmt: skip
_CALL_COLUMNS = ("id", "ts", "service", "ok", "status", "latency_ms", "error_class",
                 "breaker_state", "source")  # fmt: skip
_SPOOL_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "ts": pa.timestamp("us", tz="UTC"),
    "service": pa.string(),
    "ok": pa.bool_(),
    "status": pa.int32(),
    "latency_ms": pa.float64(),
    "error_class": pa.string(),
    "error": pa.string(),
    "breaker_state": pa.string(),
    "source": pa.string(),
}


def epoch_us(ts: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float rounding)."""
    delta = ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    """The aware UTC datetime of :func:`epoch_us`."""
    return _EPOCH + timedelta(microseconds=int(us))


class _SpoolTailer(StoreTailer):
    """A tailer of the writers' spools only (segments are read by DuckDB)."""

    def _poll_files(self) -> list[dict[str, Any]]:
        return []


def spooled_rows(root: str | Any, table: str, since: datetime) -> pa.Table:
    """Rows of ``table`` with ``ts >= since`` still in writers' spools (this process's too)."""
    rows = _SpoolTailer(root, table, since=since, skip_own_spools=False).poll()
    columns = _PROBE_COLUMNS if table == "probes" else _CALL_COLUMNS
    schema = pa.schema([(c, _SPOOL_TYPES[c]) for c in columns])
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)


class StoreUnreadable(RuntimeError):
    """The metrics store cannot be read (its directory is missing, not a directory...)."""

    def __init__(self, root: Any, exc: OSError) -> None:
        super().__init__(f"the metrics store {root} cannot be read: {exc.strerror or exc}")


class StoreReader:
    """DuckDB reads of one :class:`MetricsStore`, each under its shared read lock.

    One connection with the store's views; each read gets its own cursor, so threads
    read concurrently. Thread-safe.
    """

    def __init__(self, store: MetricsStore) -> None:
        self.store = store
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the views, inside the store's read lock (a consistent snapshot).

        Runs the store's recovery first, as :meth:`MetricsStore.query` does: a dead
        writer's rows are published and an unreadable new segment is moved aside (with a
        warning) instead of failing every read.
        """
        try:
            self.store.recover()
            with self._lock:
                if self._con is None:
                    self._con = self.store.connect()
                cur = self._con.cursor()
        except OSError as exc:
            raise StoreUnreadable(self.store.root, exc) from None
        try:
            with self.store.read_lock():
                yield cur
        finally:
            cur.close()

    def close(self) -> None:
        """Close the connection (the store stays open)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def _observations_sql(spooled: bool, all_names: bool, until: bool = False) -> str:
    """The observations of the window, one row each: ``service, t, kind, ok, ...``.

    ``t`` is the row's time capped at ``$now`` (as the monitor stamps late rows); the
    order is the rows' own time, a probe before a call at the same instant (the order
    the monitor's restore adds them in); calls that say nothing
    about their service (never sent) are left out, as are the monitor's own probe calls.
    """
    names = "" if all_names else " AND service IN (SELECT service FROM wanted)"
    upper = " AND ts < $until" if until else ""
    where = f"ts >= $since{upper}{names}"

    def source(table: str, columns: Sequence[str], spool: str) -> str:
        cols = ", ".join(columns)
        sql = f'SELECT {cols} FROM {table} WHERE "date" >= $day AND {where}'
        if spooled:
            # A spooled row may have become a segment meanwhile: count it once.
            sql += (
                f" UNION ALL SELECT {cols} FROM {spool} WHERE {where} AND id NOT IN "
                f'(SELECT id FROM {table} WHERE "date" >= $day AND {where})'
            )
        return sql

    return f"""
    wanted AS (SELECT service FROM wanted_services),
    p AS ({source("probes", _PROBE_COLUMNS, "sp_probes")}),
    c AS ({source("calls", _CALL_COLUMNS, "sp_calls")}),
    cv AS (
        SELECT *, CASE WHEN ok THEN true
                       WHEN list_contains($never::VARCHAR[], error_class) THEN NULL
                       ELSE NOT (status IS NULL OR status >= 500 OR status IN (401, 403))
                  END AS verdict
        FROM c WHERE source IS DISTINCT FROM 'probe'
    ),
    o AS (
        SELECT service, ts, least(ts, $now) AS t, 0 AS kind, ok, latency_ms, error_class,
               coalesce(breaker_state, 'closed') AS breaker_state
        FROM p
        UNION ALL
        SELECT service, ts, least(ts, $now), 1, verdict, latency_ms,
               CASE WHEN verdict THEN NULL ELSE error_class END,
               coalesce(breaker_state, 'closed')
        FROM cv WHERE verdict IS NOT NULL
    )"""


_HEALTH_SQL = """
WITH {observations},
w AS (
    SELECT *, row_number() OVER (PARTITION BY service ORDER BY ts, kind) AS rn,
           lead(t) OVER (PARTITION BY service ORDER BY ts, kind) AS nt
    FROM o
),
agg AS (
    SELECT service, count(*) AS n, count(*) FILTER (WHERE ok) AS successes,
           quantile_disc(latency_ms, 0.5) FILTER (WHERE ok) AS p50,
           quantile_disc(latency_ms, 0.95) FILTER (WHERE ok) AS p95,
           epoch_us(min(t)) AS first_us,
           sum(CASE WHEN ok THEN date_diff('microsecond', t, coalesce(nt, $now)) ELSE 0 END)
               AS up_us,
           arg_max(ok, rn) AS last_ok,
           arg_max(breaker_state, rn) AS last_breaker,
           coalesce(max(rn) FILTER (WHERE ok), 0) AS last_ok_rn,
           max(rn) AS last_rn,
           epoch_us(arg_max(t, rn) FILTER (WHERE NOT ok)) AS last_err_us,
           arg_max(error_class, rn) FILTER (WHERE NOT ok) AS last_err_class
    FROM w GROUP BY service
),
lp AS (
    SELECT service,
           arg_max(struct_pack(ok, status, latency_ms, error_class, error, breaker_state,
                               us := epoch_us(ts)), ts) AS probe
    FROM p GROUP BY service
)
SELECT coalesce(agg.service, lp.service) AS service, agg.* EXCLUDE (service), lp.probe
FROM agg FULL OUTER JOIN lp ON agg.service = lp.service
"""

_HEALTH_KEYS = (
    "service", "n", "successes", "p50", "p95", "first_us", "up_us", "last_ok", "last_breaker",
    "last_ok_rn", "last_rn", "last_err_us", "last_err_class", "probe",
)  # fmt: skip
"""The columns of :data:`_HEALTH_SQL`'s rows."""

_MINUTES_SQL = """
WITH {observations}
SELECT service, epoch_us(t) // 60000000 * 60 AS minute, count(*) AS n,
       count(*) FILTER (WHERE NOT ok) AS errors,
       quantile_disc(latency_ms, 0.95) FILTER (WHERE ok) AS p95
FROM o GROUP BY service, minute
"""


def _params(since: datetime, now: datetime, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "since": since,
        # `date` prunes day partitions before a file is opened; `ts` is the exact bound.
        "day": since.date(),
        "now": now,
        "never": _NEVER_SENT,
    }
    params.update(extra)
    return params


def _run(
    reader: StoreReader,
    sql_of: Any,
    params: dict[str, Any],
    since: datetime,
    names: Sequence[str] | None,
) -> list[tuple[Any, ...]]:
    """Run a statement over the window's observations of ``names`` (``None``: all),
    spooled rows included."""
    root = reader.store.root
    try:
        spools = {t: spooled_rows(root, t, since) for t in ("probes", "calls")}
    except OSError as exc:
        raise StoreUnreadable(root, exc) from None
    spooled = any(t.num_rows for t in spools.values())
    sql = sql_of(_observations_sql(spooled, names is None, "until" in params))
    with reader.cursor() as cur:
        # A registered Arrow table: binding a list of a thousand names as a parameter
        # costs DuckDB's planner about 100 ms, this about nothing.
        cur.register("wanted_services", pa.table({"service": pa.array(names or (), pa.string())}))
        if spooled:
            cur.register("sp_probes", spools["probes"])
            cur.register("sp_calls", spools["calls"])
        return cur.execute(sql, params).fetchall()


@dataclass
class SummaryWindow(ServiceWindow):
    """A window that reports stats computed elsewhere (the monitor judges them as its own).

    Attributes:
        summary: The stats to report; ``None``: an empty window.
    """

    summary: WindowStats | None = None

    def stats(self, now: datetime | None = None) -> WindowStats:
        """The stats given, or an empty window's at ``now``."""
        if self.summary is not None:
            return self.summary
        return WindowStats(as_of=now or datetime.now(UTC))


def _stats(row: Mapping[str, Any], now: datetime) -> WindowStats | None:
    n = row["n"]
    if not n:
        return None
    first = from_epoch_us(row["first_us"])
    span = (now - first).total_seconds()
    # As the monitor: a zero span (all at `now`) is the latest observation's state.
    uptime = (1.0 if row["last_ok"] else 0.0) if span <= 0 else (row["up_us"] / 1e6) / span
    last_err = None if row["last_err_us"] is None else from_epoch_us(row["last_err_us"])
    successes = row["successes"]
    return WindowStats(
        as_of=now,
        count=n,
        successes=successes,
        success_rate=successes / n,
        p50_latency_ms=row["p50"],
        p95_latency_ms=row["p95"],
        uptime=uptime,
        seconds_since_last_error=None if last_err is None else (now - last_err).total_seconds(),
        last_error_at=last_err,
        last_error_class=row["last_err_class"],
        last_breaker_state=row["last_breaker"],
    )


def judge(
    name: str,
    *,
    stats: WindowStats | None,
    streak: int,
    last_probe: HealthResult | None,
    window_seconds: float,
    now: datetime,
    settings: Settings,
    alerts: tuple[str, ...] = (),
) -> ServiceHealth:
    """The monitor's verdict on a service from its window's stats, streak and last probe."""
    state = MonitoredService(
        name,
        SummaryWindow(timedelta(seconds=window_seconds), summary=stats),
        streak=streak,
        last_probe=last_probe,
        last_probe_at=None if last_probe is None else last_probe.checked_at,
    )
    return state.health(now, settings, settings.monitor_down_after, alerts)


def store_health(
    reader: StoreReader,
    names: Sequence[str],
    window_seconds: float,
    settings: Settings,
    *,
    now: datetime | None = None,
    alerts: Mapping[str, tuple[str, ...]] | None = None,
) -> list[ServiceHealth]:
    """The health table of ``names`` over the last ``window_seconds``, from the store.

    Args:
        reader: The store's reader.
        names: Services, in the order wanted (names without rows are ``unknown``).
        window_seconds: The window.
        settings: Thresholds and ``JUNCTION_MONITOR_DOWN_AFTER``.
        now: The instant judged (default: now).
        alerts: Active alerts per service (``rule/severity/state``).

    Returns:
        One row per name, in order.
    """
    at = datetime.now(UTC) if now is None else now
    since = at - timedelta(seconds=window_seconds)
    rows = _run(
        reader, lambda obs: _HEALTH_SQL.format(observations=obs),
        _params(since, at), since, names,
    )  # fmt: skip
    found = {r[0]: dict(zip(_HEALTH_KEYS, r, strict=True)) for r in rows}
    out = []
    for name in names:
        rec = found.get(name)
        stats = None if rec is None or rec["n"] is None else _stats(rec, at)
        streak = 0 if stats is None or rec is None else rec["last_rn"] - rec["last_ok_rn"]
        probe = None if rec is None else rec["probe"]
        last_probe = None
        if probe is not None:
            last_probe = HealthResult(
                service=name,
                ok=bool(probe["ok"]),
                status=probe["status"],
                latency_ms=float(probe["latency_ms"]),
                error_class=probe["error_class"],
                error=probe["error"],
                breaker_state=probe["breaker_state"] or "closed",
                checked_at=from_epoch_us(probe["us"]),
            )
        out.append(
            judge(
                name,
                stats=stats,
                streak=streak,
                last_probe=last_probe,
                window_seconds=window_seconds,
                now=at,
                settings=settings,
                alerts=(alerts or {}).get(name, ()),
            )
        )
    return out


@dataclass(frozen=True)
class MinuteRollup:
    """One service's observations in one minute.

    Attributes:
        count: Observations.
        errors: Failed ones.
        p95_latency_ms: Nearest-rank p95 of the successes (``None``: none).
    """

    count: int
    errors: int
    p95_latency_ms: float | None


def minute_rollups(
    reader: StoreReader, since: datetime, until: datetime
) -> dict[str, dict[int, MinuteRollup]]:
    """Per service and minute (epoch seconds of its start), observations in ``[since, until)``.

    One aggregate over every service; the live view starts from it.
    """
    rows = _run(
        reader, lambda obs: _MINUTES_SQL.format(observations=obs),
        _params(since, until, until=until), since, None,
    )  # fmt: skip
    out: dict[str, dict[int, MinuteRollup]] = {}
    for service, minute, n, errors, p95 in rows:
        out.setdefault(service, {})[int(minute)] = MinuteRollup(n, errors, p95)
    return out


def known_services(reader: StoreReader) -> set[str]:
    """Every service the store has a call or probe of (one scan of the name columns)."""
    with reader.cursor() as cur:
        rows = cur.execute(
            "SELECT DISTINCT service FROM calls UNION SELECT DISTINCT service FROM probes"
        ).fetchall()
    found = {r[0] for r in rows}
    root = reader.store.root
    for table in ("probes", "calls"):
        found.update(spooled_rows(root, table, _EPOCH).column("service").to_pylist())
    return found


__all__ = [
    "MinuteRollup",
    "StoreReader",
    "StoreUnreadable",
    "SummaryWindow",
    "epoch_us",
    "from_epoch_us",
    "judge",
    "known_services",
    "minute_rollups",
    "spooled_rows",
    "store_health",
]
