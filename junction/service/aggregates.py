"""Health of many services from the metrics store by DuckDB, judged by the monitor's code.

The monitor judges a service from its window of observations (probes, and live calls that
say something about the service: :func:`junction.monitor.passive.classify_call`), in
order: :mod:`junction.recovery` reads the sequence (outages, recovery, flapping, the
failures an ended outage leaves out of what status and alerts judge), so no aggregate can
stand in for it. DuckDB selects the window's observations of the wanted services (calls
that say nothing about their service and the monitor's own probe calls left out, times
capped at ``now`` as the monitor stamps late rows, a probe before a call at the same
instant) and each service's latest probe (what the health table shows as
``ok``/``latency_ms``/``error``), in one snapshot; each service's rows then go through the
monitor's own :class:`junction.monitor.ServiceState`, so score, status, "down" and reasons
cannot drift from the monitor's.

Rows still in writers' spools (not yet a Parquet segment) are read too and counted once,
as the monitor's own restore does.

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
from junction.scoring import Observation, ServiceWindow
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


_ITEMS_SQL = """
WITH {observations}
SELECT service, epoch_us(t), ok, latency_ms, error_class, breaker_state
FROM o ORDER BY service, ts, kind
"""
"""The window's observations, in the order the monitor adds them."""

_PROBE_SQL = """
WITH {observations}
SELECT service, arg_max(struct_pack(ok, status, latency_ms, error_class, error, breaker_state,
                                    us := epoch_us(ts)), ts) AS probe
FROM p GROUP BY service
"""
"""The latest probe of each service (what the health table shows as ``ok``/``error``)."""

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
    return _run_many(reader, [sql_of], params, since, names)[0]


def _run_many(
    reader: StoreReader,
    sql_ofs: Sequence[Any],
    params: dict[str, Any],
    since: datetime,
    names: Sequence[str] | None,
) -> list[list[tuple[Any, ...]]]:
    """:func:`_run` for several statements over one read of the spools and one snapshot."""
    root = reader.store.root
    try:
        spools = {t: spooled_rows(root, t, since) for t in ("probes", "calls")}
    except OSError as exc:
        raise StoreUnreadable(root, exc) from None
    spooled = any(t.num_rows for t in spools.values())
    observations = _observations_sql(spooled, names is None, "until" in params)
    with reader.cursor() as cur:
        # A registered Arrow table: binding a list of a thousand names as a parameter
        # costs DuckDB's planner about 100 ms, this about nothing.
        cur.register("wanted_services", pa.table({"service": pa.array(names or (), pa.string())}))
        if spooled:
            cur.register("sp_probes", spools["probes"])
            cur.register("sp_calls", spools["calls"])
        return [cur.execute(sql_of(observations), params).fetchall() for sql_of in sql_ofs]


def _last_probe(name: str, probe: Mapping[str, Any] | None) -> HealthResult | None:
    if probe is None:
        return None
    return HealthResult(
        service=name,
        ok=bool(probe["ok"]),
        status=probe["status"],
        latency_ms=float(probe["latency_ms"]),
        error_class=probe["error_class"],
        error=probe["error"],
        breaker_state=probe["breaker_state"] or "closed",
        checked_at=from_epoch_us(probe["us"]),
    )


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
    window = timedelta(seconds=window_seconds)
    items, probes = _run_many(
        reader,
        [lambda obs: _ITEMS_SQL.format(observations=obs),
         lambda obs: _PROBE_SQL.format(observations=obs)],
        _params(since, at), since, names,
    )  # fmt: skip
    states = {name: MonitoredService(name, ServiceWindow(window)) for name in names}
    observed: dict[str, list[Observation]] = {}
    for service, us, ok, latency_ms, error_class, breaker_state in items:
        # Epoch microseconds: DuckDB's conversion of aware timestamps costs more.
        obs = Observation(from_epoch_us(us), bool(ok), latency_ms, error_class, breaker_state)
        observed.setdefault(service, []).append(obs)
    for service, seq in observed.items():
        # The monitor's own state: its window, failure streak and noise memory are what
        # junction.recovery judges (outages, recovery, flapping, forgiven failures).
        # All in the window already: one eviction, not one per observation.
        state = states[service]
        state.window.extend(seq, now=at)
        for obs in seq:
            state.noise.add(obs.ok, state.streak)
            state.streak = 0 if obs.ok else state.streak + 1
    for service, probe in probes:
        last = _last_probe(service, probe)
        if last is not None:
            states[service].probed(last, last.checked_at)
    active = alerts or {}
    verdicts = {
        name: state.health(at, settings, settings.monitor_down_after, active.get(name, ()))
        for name, state in states.items()
    }
    return [verdicts[name] for name in names]


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
    "epoch_us",
    "from_epoch_us",
    "known_services",
    "minute_rollups",
    "spooled_rows",
    "store_health",
]
