"""The service benchmark's in-process arms: the naive health replay, ``monitoring/metrics``'s
own query with and without partition pruning, and log search over the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.service_timing import timed


def replay_health(root: Path, names: list[str], seconds: float) -> int:
    """The naive health table: every row of the window replayed through the monitor's
    own per-service state (the first read path of the service, before the live view)."""
    # Function-level: only the naive arm needs the monitor's state classes.
    from junction.monitor import ServiceState as MonitoredService
    from junction.monitor.passive import LiveCall
    from junction.monitor.probing import probe_observation
    from junction.scoring import ServiceWindow
    from junction.settings import Settings
    from junction.tail import read_since

    settings = Settings()
    now = datetime.now(UTC)
    since = now - timedelta(seconds=seconds)
    states = {n: MonitoredService(n, ServiceWindow(timedelta(seconds=seconds))) for n in names}
    events: list[tuple[datetime, int, dict[str, Any]]] = []
    for row in read_since(root, "probes", since):
        if row["service"] in states:
            events.append((row["ts"], 0, row))
    for row in read_since(root, "calls", since):
        if row["service"] in states:
            events.append((row["ts"], 1, row))
    events.sort(key=lambda e: (e[0], e[1]))
    for _, kind, row in events:
        state = states[row["service"]]
        if kind == 0:
            state.add(probe_observation(row, now), now)
        elif (obs := LiveCall.from_row(row).observation(now)) is not None:
            state.add(obs, now)
    rows = [st.health(now, settings, settings.monitor_down_after) for st in states.values()]
    return len(rows)


def metrics_query(reader: Any, names: list[str], seconds: float, *, prune: bool) -> int:
    """``monitoring/metrics``'s own query, in this process; ``prune=False`` drops its
    ``date`` predicate, so every file of both tables is opened (a full scan)."""
    # Function-level: only these arms need the route's query.
    from junction.service.routes.monitoring import _METRICS_SQL

    template = _METRICS_SQL if prune else _METRICS_SQL.replace("AND date >= $day ", "")
    assert prune or template != _METRICS_SQL, "the metrics query changed: update the bench"
    sql = "WITH wanted AS (SELECT unnest($names::VARCHAR[]) AS service) " + " UNION ALL ".join(
        template.format(table=t) for t in ("probes", "calls")
    )
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    params: dict[str, Any] = {"since": since, "names": names}
    if prune:
        params["day"] = since.date()
    with reader.cursor() as cur:
        return len(cur.execute(sql, params).fetchall())


def log_search(root: Path, n: int, service: str, days: int) -> dict[str, dict[str, float]]:
    """``junction.logsearch.search`` over the store: pruned (served) and ``prune=False``."""
    # Function-level: the log search modules only for this arm.
    from junction.logquery import parse_query
    from junction.logsearch import search
    from junction.store import MetricsStore

    store = MetricsStore(root)
    queries: dict[str, dict[str, Any]] = {
        "'timeout', last 1 h": {"text": "timeout", "since": "1h"},
        "'timeout', last 24 h": {"text": "timeout", "since": "24h"},
        f"'timeout', all {days} days": {"text": "timeout"},
        "one service's errors, all days": {"text": "", "services": [service], "status": "error"},
        "rare text (no match), all days": {"text": "no-such-needle"},
    }
    out: dict[str, dict[str, float]] = {}
    try:
        for name, args in queries.items():
            query = parse_query(**args)
            out[name] = timed(partial(search, store, query), n, warmup=1)
            out[name + " [naive]"] = timed(partial(search, store, query, prune=False), n, 1)
    finally:
        store.close()
    return out
