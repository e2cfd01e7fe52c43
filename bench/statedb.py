"""The alert engine's state on SQLite against PostgreSQL (``JUNCTION_STATE_URL``).

``.venv/bin/python -m bench.statedb [--services 20] [--rounds 200]``. Both arms run the same
work on one fresh database each (SQLite: a WAL file in a temporary folder; PostgreSQL: a
throw-away cluster from ``tests/pg.py``, on loopback, fsync off):

* ``steady``: one evaluation of ``--services`` healthy services (nothing changes: the
  monitor's common case, one transaction with the writer lock);
* ``flip``: one evaluation where one service fails or recovers (alerts, groups, history
  and outbox rows written);
* ``outbox``: one delivery round with nothing due (claim transaction only);
* ``open``: opening a connection (``state.connect``, tables already there).

Prints the median and p95 milliseconds per operation and the PostgreSQL / SQLite ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from junction.alerting import state
from junction.alerting.config import parse_config
from junction.alerting.engine import AlertEngine, ServiceSnapshot
from junction.scoring import WindowStats, health_score
from junction.settings import Settings
from junction.statedb import StateUrl
from tests.pg import SUPERUSER, PostgresCluster

SETTINGS = Settings()
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _snapshot(service: str, now: datetime, ok: bool) -> ServiceSnapshot:
    stats = WindowStats(
        as_of=now,
        count=100,
        successes=100 if ok else 0,
        success_rate=1.0 if ok else 0.0,
        p50_latency_ms=100.0 if ok else None,
        p95_latency_ms=100.0 if ok else None,
        uptime=1.0 if ok else 0.0,
        seconds_since_last_error=None if ok else 1.0,
        last_error_at=None if ok else now,
        last_error_class=None if ok else "APIConnectionError",
        last_breaker_state="closed",
    )
    return ServiceSnapshot(service, stats, health_score(stats, SETTINGS, now=now))


def _timed(rounds: int, step: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(rounds):
        began = time.perf_counter()
        step(i)
        out.append((time.perf_counter() - began) * 1000)
    return out


def run_arm(target: Path | StateUrl, services: int, rounds: int) -> dict[str, list[float]]:
    """Time each operation ``rounds`` times on one database."""
    names = [f"svc{i}" for i in range(services)]
    config = parse_config("", settings=SETTINGS, known_services=set(names))
    eng = AlertEngine(target, config)
    clock = iter(T0 + timedelta(seconds=i) for i in range(10 * rounds + 10))
    try:

        def steady(_: int) -> None:
            now = next(clock)
            eng.evaluate([_snapshot(n, now, True) for n in names], now=now)

        def flip(i: int) -> None:
            now = next(clock)
            eng.evaluate([_snapshot(n, now, n != "svc0" or i % 2 == 1) for n in names], now=now)

        def outbox(_: int) -> None:
            asyncio.run(eng.deliver({}, now=next(clock)))

        def opened(_: int) -> None:
            state.connect(target).close()

        steady(0)  # tables created, first evaluation out of the way
        return {
            "steady": _timed(rounds, steady),
            "flip": _timed(rounds, flip),
            "outbox": _timed(rounds, outbox),
            "open": _timed(rounds, opened),
        }
    finally:
        eng.close()


def main() -> None:
    """Run both arms and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, PostgresCluster("state") as pg:
        url = StateUrl(f"postgresql://{SUPERUSER}@{pg.host}:{pg.port}/state")
        arms = {
            "sqlite": run_arm(Path(tmp) / "alerts.db", args.services, args.rounds),
            "postgresql": run_arm(url, args.services, args.rounds),
        }
    print(f"{args.services} services, {args.rounds} rounds per operation (ms)")
    print(
        "| operation | sqlite p50 | sqlite p95 | postgresql p50 | postgresql p95 | pg/sqlite p50 |"
    )
    print("|---|---|---|---|---|---|")
    for op in arms["sqlite"]:
        row = []
        for arm in ("sqlite", "postgresql"):
            times = sorted(arms[arm][op])
            row += [statistics.median(times), times[int(0.95 * (len(times) - 1))]]
        print(
            f"| {op} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} | {row[3]:.2f} "
            f"| {row[2] / row[0]:.2f}x |"
        )


if __name__ == "__main__":
    main()
