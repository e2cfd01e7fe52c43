"""What the monitor's anomaly alerts cost: the start-up warm-up and each minute after.

A metrics store with ``--days`` days of one probe a minute per service (a daily rhythm
with noise), then :class:`analytics.anomaly_monitor.AnomalyJudge` as the monitor runs it:

* **query**: the warm-up's DuckDB read of per-minute p95 and error rate (bounded rows);
* **feed**: those rows through the detectors (two series per service), all of them, and
  the share one evaluation feeds (``WARM_ROWS_PER_EVALUATION`` rows);
* **minute**: one steady-state minute: an observation per service, then the judge's
  evaluation that closes the minute and judges every service.

Arms: services 1, 10, 43 (the catalog's size), and warm days 1 against 2, in one run.

Run: ``.venv/bin/python -m bench.anomaly_alerts [--days 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from analytics.anomaly_monitor import MAX_WARM_ROWS, WARM_ROWS_PER_EVALUATION, AnomalyJudge
from junction.monitor.state import ServiceState
from junction.scoring import Observation, ServiceWindow
from junction.settings import Settings
from junction.store import MetricsStore

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def fill(root: Path, services: int, days: float) -> None:
    """One probe a minute per service for ``days`` before ``NOW``."""
    minutes = int(days * 1440)
    start = NOW - timedelta(minutes=minutes)
    rng = np.random.default_rng(1)
    with MetricsStore(root, flush_rows=100_000) as store:
        for s in range(services):
            values = 100 + 20 * np.sin(np.arange(minutes) * 2 * np.pi / 1440)
            values += rng.normal(0, 4, minutes)
            store.append(
                "probes",
                (
                    {
                        "id": f"{s}-{i}",
                        "ts": start + timedelta(minutes=i, seconds=5),
                        "sweep_id": str(i),
                        "service": f"svc{s}",
                        "ok": True,
                        "status": 200,
                        "latency_ms": float(v),
                        "breaker_state": "closed",
                    }
                    for i, v in enumerate(values)
                ),
            )
        store.flush()


def arm(root: Path, services: int, warm_days: float) -> dict[str, float]:
    """Time the warm-up's read and feed, and one steady-state minute."""
    judge = AnomalyJudge(warm_days=warm_days)
    names = [f"svc{s}" for s in range(services)]
    with MetricsStore(root) as store:
        t0 = time.perf_counter()
        rows = judge.history(store, NOW)
        query = time.perf_counter() - t0
    judge.restore_rows(rows)
    t0 = time.perf_counter()
    judge.warm(names)  # what one evaluation feeds
    evaluation = time.perf_counter() - t0
    judge.warm(names, rows=len(rows))
    feed = time.perf_counter() - t0
    settings = Settings()
    healths = []
    for name in names:
        state = ServiceState(name, ServiceWindow(timedelta(minutes=5)))
        obs = Observation(NOW + timedelta(seconds=5), True, 100.0)
        state.add(obs, obs.ts)
        judge.observe(name, obs)
        healths.append(state.health(NOW + timedelta(seconds=30), settings, 3))
    t0 = time.perf_counter()
    judge(healths, NOW + timedelta(minutes=1, seconds=1))
    minute = time.perf_counter() - t0
    return {
        "services": services,
        "warm_days": warm_days,
        "rows": len(rows),
        "query_s": query,
        "feed_s": feed,
        "feed_ms_per_row": 1000 * feed / max(1, len(rows)),
        "evaluation_warm_ms": 1000 * evaluation,
        "minute_ms": 1000 * minute,
    }


def main() -> None:
    """Run the arms and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for services in (1, 10, 43):
            root = Path(tmp) / f"s{services}"
            fill(root, services, args.days)
            for warm_days in (1.0, args.days):
                results.append(arm(root, services, warm_days))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"row bound {MAX_WARM_ROWS}, {WARM_ROWS_PER_EVALUATION} rows per evaluation")
    print(
        "| services | warm days | rows | query s | feed s | ms/row "
        "| one evaluation's warm-up ms | one minute ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['services']} | {r['warm_days']:g} | {r['rows']} | {r['query_s']:.2f} | "
            f"{r['feed_s']:.2f} | {r['feed_ms_per_row']:.3f} | "
            f"{r['evaluation_warm_ms']:.0f} | {r['minute_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
