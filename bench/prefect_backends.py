"""Prefect's database backends under concurrent flow runs: SQLite against PostgreSQL.

Each arm starts a real ``prefect server start`` (SQLite in its home, or a throw-away
PostgreSQL cluster from ``tests/pg.py``), then N flow runs at once, each in its own Python
process (as a process worker runs them), each submitting T tasks concurrently that log a
line each: the state and log writes that made SQLite answer 503 ("database is locked").
Prefect's client retries a 503 with a back-off, so a 503 costs seconds rather than failing
the run; the bench counts the 503s each run's client received and the wall time of the N
runs.

    .venv/bin/python -m bench.prefect_backends [--runs 12] [--tasks 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from deployments.local import ROOT, PrefectServer
from tests.pg import PostgresCluster

ARMS = ("sqlite", "postgresql")


def _count_503s() -> list[int]:
    """Count every 503 the Prefect clients receive in this process (they retry them).

    Wraps ``httpx.Client.send`` and ``httpx.AsyncClient.send``, which Prefect's sync (the
    flow engine's) and async clients call once per attempt. Returns a one-element list
    holding the running count.
    """
    count = [0]
    sync_send = httpx.Client.send
    async_send = httpx.AsyncClient.send

    def counting_sync_send(self: httpx.Client, *args: Any, **kwargs: Any) -> httpx.Response:
        response = sync_send(self, *args, **kwargs)
        count[0] += response.status_code == 503
        return response

    async def counting_async_send(
        self: httpx.AsyncClient, *args: Any, **kwargs: Any
    ) -> httpx.Response:
        response = await async_send(self, *args, **kwargs)
        count[0] += response.status_code == 503
        return response

    httpx.Client.send = counting_sync_send  # type: ignore[method-assign]
    httpx.AsyncClient.send = counting_async_send  # type: ignore[method-assign]
    return count


def _child(tasks: int) -> int:
    """One flow run with ``tasks`` concurrent tasks; prints its result as JSON."""
    from prefect import flow, get_run_logger, task

    counter = _count_503s()

    @task
    def square(x: int) -> int:
        get_run_logger().info("square %d", x)  # a log row per task, as the real flows write
        return x * x

    @flow(name="bench-backends")
    def bench(n: int) -> int:
        return sum(f.result() for f in [square.submit(i) for i in range(n)])

    start = time.monotonic()
    ok = True
    try:
        bench(tasks)
    except Exception as exc:  # a failed run is a measured outcome, not a crash
        print(f"run failed: {exc}", file=sys.stderr)
        ok = False
    result = {"ok": ok, "seconds": time.monotonic() - start, "retries_503": counter[0]}
    print(json.dumps(result))
    return 0


def concurrent_flow_runs(
    env: dict[str, str], runs: int, tasks: int, timeout: float = 900.0
) -> list[dict[str, Any]]:
    """Start ``runs`` flow runs at once, each in its own process, against ``env``'s server.

    Args:
        env: Environment of the server's clients (``PrefectServer.env``).
        runs: Flow runs (processes) started together.
        tasks: Concurrent tasks per flow run, each logging a line.
        timeout: Seconds to wait for each process.

    Returns:
        One ``{"ok", "seconds", "retries_503"}`` per run (``ok`` False when it failed).
    """
    env = {**env, "PREFECT_LOGGING_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "bench.prefect_backends", "--child", "--tasks", str(tasks)]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(runs)
    ]
    results: list[dict[str, Any]] = []
    for proc in procs:
        out = proc.communicate(timeout=timeout)[0]
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        results.append(json.loads(lines[-1]) if lines else {"ok": False, "seconds": 0.0})
    return results


@dataclass
class ArmResult:
    """One backend's numbers."""

    arm: str
    startup_s: float
    wall_s: float
    completed: int
    failed: int
    retries_503: int
    slowest_run_s: float


def _run_arm(arm: str, runs: int, tasks: int) -> ArmResult:
    pg = PostgresCluster() if arm == "postgresql" else None
    if pg is not None:
        pg.__enter__()
    try:
        t0 = time.monotonic()
        with PrefectServer(
            scheduler=False, ui=False, startup_timeout=300, database_url=pg.url if pg else None
        ) as server:
            startup = time.monotonic() - t0
            t1 = time.monotonic()
            results = concurrent_flow_runs(server.env, runs, tasks)
            wall = time.monotonic() - t1
            with httpx.Client(base_url=server.api_url, timeout=60) as api:
                states = [
                    (r.get("state") or {}).get("type")
                    for r in api.post("/flow_runs/filter", json={"limit": 200}).json()
                ]
    finally:
        if pg is not None:
            pg.__exit__(None, None, None)
    return ArmResult(
        arm=arm,
        startup_s=startup,
        wall_s=wall,
        completed=states.count("COMPLETED"),
        failed=sum(1 for r in results if not r["ok"]),
        retries_503=sum(int(r.get("retries_503", 0)) for r in results),
        slowest_run_s=max(float(r["seconds"]) for r in results),
    )


def main(argv: list[str] | None = None) -> int:
    """Run both arms and print the table (ratios are PostgreSQL / SQLite)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="concurrent flow runs per arm")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per flow run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.tasks)

    rows = [_run_arm(arm, args.runs, args.tasks) for arm in ARMS]
    print(f"{args.runs} concurrent flow runs x {args.tasks} tasks each, one process per run")
    header = (
        f"{'backend':<11} {'startup s':>9} {'wall s':>7} {'slowest run s':>13} "
        f"{'completed':>9} {'failed':>6} {'503 retries':>11}"
    )
    print(header)
    for r in rows:
        print(
            f"{r.arm:<11} {r.startup_s:>9.1f} {r.wall_s:>7.1f} {r.slowest_run_s:>13.1f} "
            f"{r.completed:>9} {r.failed:>6} {r.retries_503:>11}"
        )
    sqlite, pg = rows
    print(
        f"postgresql/sqlite: wall {pg.wall_s / sqlite.wall_s:.2f}x, "
        f"slowest run {pg.slowest_run_s / sqlite.slowest_run_s:.2f}x, "
        f"503 retries {pg.retries_503} vs {sqlite.retries_503}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
