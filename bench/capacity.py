"""Capacity on a real Prefect server on PostgreSQL: probes/s and workflow runs/s, 1 vs 2 workers.

Everything real and on this machine: a throw-away PostgreSQL cluster (``tests/pg.py``), a
``prefect server`` on it (``deployments.local.PrefectServer``, scheduler off: runs are
submitted here), the sandbox, a process work pool and ``prefect worker`` processes
(``deployments.local.Worker``; each flow run is a new Python process). Arms, in one run:

* **probes/s**: the monitor-continuous flow sweeping the sandbox's integrations as fast as
  it can (``every_seconds`` 0.05: a sweep starts every tick; a service whose probe is in
  flight is skipped), with the full monitor path (windows, alert evaluation in the alert
  database, probes recorded). ``1 shard``: deployment ``monitor-continuous-shard-0-of-1``,
  one worker; ``2 shards``: ``...-shard-0-of-2`` and ``...-shard-1-of-2`` at once, two
  workers. Probes are counted in the metrics store over the window all runs overlap.
* **workflow runs/s**: ``--runs`` runs of the built-in ``incident_response`` spec
  deployment (PagerDuty incident, Webex room, status post) submitted at once, from first
  submission to the last run's terminal state; one worker, then two.
* **run CPU**: user + system CPU of the arm's flow-run processes (children of the
  workers, process start included) per probe, or per workflow run.
* **PostgreSQL's load** during each arm, sampled every second: backends of the Prefect
  database (``pg_stat_activity``), commits/s (``pg_stat_database.xact_commit``), CPU of
  the PostgreSQL processes and of the Prefect server (psutil), as cores used.

Run: ``.venv/bin/python -m bench.capacity [--quick] [--seconds 30] [--runs 8] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg

from deployments.local import PrefectServer, Worker, ensure_work_pool, free_port
from integrations.sandbox.process import start_sandbox_process
from tests.pg import SUPERUSER, PostgresCluster

POOL = "capacity"
SPEC = "incident_response"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
LEAD_SECONDS = 60


@dataclass
class Load:
    """PostgreSQL's (and the Prefect server's) load over one arm."""

    backends: list[int] = field(default_factory=list)
    commits_per_s: float = 0.0
    pg_cores: float = 0.0
    server_cores: float = 0.0


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process tree, ended children included.

    A PostgreSQL backend lives as long as its connection: its CPU must not vanish from the
    sum when it exits, so each live process adds the time of the children it has reaped.
    """
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def runs_cpu(workers: list[Worker], timeout: float = 60.0) -> float:
    """CPU seconds of the flow-run processes the workers started (and reaped): each run
    is a child of its worker, so its time is in the worker's ``children_*`` once it ended.
    """
    pids = [w._proc.pid for w in workers if w._proc is not None]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # a run's state is final a moment before it exits
        try:
            if not any(psutil.Process(pid).children() for pid in pids):
                break
        except psutil.Error:
            break
        time.sleep(0.5)
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.children_user + t.children_system
    return total


@contextmanager
def sample_load(pg: PostgresCluster, pg_pid: int, server_pid: int) -> Iterator[Load]:
    """Sample PostgreSQL every second while the block runs; fill the :class:`Load`."""
    load = Load()
    stop = threading.Event()
    dsn = f"host={pg.host} port={pg.port} user={SUPERUSER} dbname={pg.database}"

    def commits(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (pg.database,)
        ).fetchone()
        return int(row[0]) if row else 0

    def run() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.wait(1.0):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()",
                    (pg.database,),
                ).fetchone()
                load.backends.append(int(row[0]) if row else 0)

    with psycopg.connect(dsn, autocommit=True) as conn:
        c0, pg0, sv0, t0 = commits(conn), _tree_cpu(pg_pid), _tree_cpu(server_pid), time.time()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield load
        finally:
            stop.set()
            thread.join(10)
            wall = max(time.time() - t0, 1e-9)
            load.commits_per_s = (commits(conn) - c0) / wall
            load.pg_cores = (_tree_cpu(pg_pid) - pg0) / wall
            load.server_cores = (_tree_cpu(server_pid) - sv0) / wall


async def _submit(name: str, parameters: dict[str, Any], at: datetime | None = None) -> uuid.UUID:
    from prefect.deployments import run_deployment

    run = run_deployment(name, parameters=parameters, timeout=0, scheduled_time=at)
    if inspect.isawaitable(run):  # Prefect's sync/async dispatch: a coroutine here
        run = await run
    return run.id


async def _wait(ids: list[uuid.UUID], timeout: float) -> dict[uuid.UUID, tuple[str, float]]:
    """Poll until every run is terminal: ``{id: (state, end time as epoch seconds)}``."""
    from prefect import get_client

    done: dict[uuid.UUID, tuple[str, float]] = {}
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while len(done) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids) - len(done)} of {len(ids)} runs not finished")
            for run_id in ids:
                if run_id in done:
                    continue
                run = await client.read_flow_run(run_id)
                if run.state is not None and run.state.type.value in TERMINAL:
                    end = run.end_time.timestamp() if run.end_time else time.time()
                    done[run_id] = (run.state.type.value, end)
            await asyncio.sleep(0.5)
    return done


def probe_rate(home: Path, shards: int) -> tuple[float, int, float, int]:
    """Probes per second over the window every shard's run covers.

    Returns:
        ``(probes/s, probes in the window, window seconds, probes in all)``.
    """
    from integrations.sweep import owner_of
    from junction.store import MetricsStore

    rows = MetricsStore(home / "metrics").query("SELECT service, epoch(ts) AS t FROM probes")
    spans = []
    for shard in range(shards):
        mine = rows[[owner_of(s, shards) == shard for s in rows["service"]]]["t"]
        if len(mine) == 0:
            raise RuntimeError(f"shard {shard} recorded no probes")
        spans.append((float(mine.min()), float(mine.max())))
    lo, hi = max(s for s, _ in spans), min(e for _, e in spans)
    if hi <= lo:
        raise RuntimeError("the shards' runs did not overlap")
    n = int(((rows["t"] >= lo) & (rows["t"] <= hi)).sum())
    return n / (hi - lo), n, hi - lo, len(rows)


@dataclass
class Stack:
    """What every arm shares."""

    pg: PostgresCluster
    pg_pid: int
    server: PrefectServer
    server_pid: int
    sandbox_env: dict[str, str]
    tmp: Path


def arm_env(stack: Stack, home: Path) -> dict[str, str]:
    """Environment of an arm's workers (and so of its flow runs)."""
    env = {**stack.server.env, **stack.sandbox_env}
    env.update(
        JUNCTION_HOME=str(home),
        JUNCTION_MONITOR_MIN_INTERVAL_SECONDS="0.01",
    )
    return env


def monitor_arm(stack: Stack, shards: int, seconds: float) -> dict[str, Any]:
    """``shards`` monitor runs on ``shards`` workers; probes/s and PostgreSQL's load."""
    from deployments.shards import shard_name

    home = stack.tmp / f"monitor-{shards}"
    # The runs are scheduled LEAD_SECONDS ahead and the workers start their processes that
    # early (prefetch): a run measures its length from its scheduled start, so a process
    # that took 20 s to start on a loaded machine would otherwise sweep 20 s less.
    env = {**arm_env(stack, home), "PREFECT_WORKER_PREFETCH_SECONDS": str(LEAD_SECONDS)}
    params = {"every_seconds": 0.05, "run_seconds": seconds}
    at = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
    with ExitStack() as stop, sample_load(stack.pg, stack.pg_pid, stack.server_pid) as load:
        workers = [
            stop.enter_context(
                Worker(POOL, env=env, log_path=stack.tmp / f"worker-m{shards}-{i}.log")
            )
            for i in range(shards)
        ]
        t0 = time.time()
        ids = [
            asyncio.run(_submit(f"monitor-continuous/{shard_name(i, shards)}", params, at))
            for i in range(shards)
        ]
        states = asyncio.run(_wait(ids, timeout=LEAD_SECONDS + seconds + 600))
        wall = time.time() - t0
        cpu = runs_cpu(workers)
    bad = [s for s, _ in states.values() if s != "COMPLETED"]
    if bad:
        raise RuntimeError(f"monitor runs ended {bad}; see {stack.tmp}/worker-m*.log")
    rate, n, window, total = probe_rate(home, shards)
    return {
        "arm": f"probes: {shards} shard{'s' if shards > 1 else ''}, {shards} worker"
        + ("s" if shards > 1 else ""),
        "rate": rate,
        "unit": "probes/s",
        "count": n,
        "window_s": window,
        "wall_s": wall,
        "cpu_per": cpu / total * 1000,
        "cpu_unit": "ms/probe",
        "load": load,
    }


def workflow_arm(stack: Stack, workers_n: int, runs: int) -> dict[str, Any]:
    """``runs`` incident_response runs submitted at once, ``workers_n`` workers."""
    home = stack.tmp / f"workflows-{workers_n}"
    env = arm_env(stack, home)
    with ExitStack() as stop, sample_load(stack.pg, stack.pg_pid, stack.server_pid) as load:
        workers = [
            stop.enter_context(
                Worker(POOL, env=env, log_path=stack.tmp / f"worker-w{workers_n}-{i}.log")
            )
            for i in range(workers_n)
        ]
        t0 = time.time()

        async def submit_all() -> list[uuid.UUID]:
            return [
                await _submit(
                    f"{SPEC}/{SPEC}",
                    {
                        "alert_name": f"capacity {k}",
                        "fingerprint": f"cap-{workers_n}-{k}-{uuid.uuid4().hex[:8]}",
                        "requester_email": "sandbox-user@example.com",
                    },
                )
                for k in range(runs)
            ]

        ids = asyncio.run(submit_all())
        states = asyncio.run(_wait(ids, timeout=900))
        cpu = runs_cpu(workers)
    wall = max(end for _, end in states.values()) - t0
    failed = sum(s != "COMPLETED" for s, _ in states.values())
    return {
        "arm": f"workflow runs: {workers_n} worker{'s' if workers_n > 1 else ''}",
        "rate": runs / wall,
        "unit": "runs/s",
        "count": runs,
        "failed": failed,
        "wall_s": wall,
        "cpu_per": cpu / runs,
        "cpu_unit": "CPU s/run",
        "load": load,
    }


def deploy(stack: Stack) -> None:
    """The pool, the shard deployments (1 and 2 shards) and the spec's deployment."""
    from deployments.shards import runner_deployment
    from deployments.specs import planned
    from deployments.specs import runner_deployment as spec_deployment

    ensure_work_pool(POOL, env=stack.server.env)
    for shards in (1, 2):
        for shard in range(shards):
            runner_deployment(shard, shards, POOL).apply(work_pool_name=POOL)
    plan = next(p for p in planned() if p.name == SPEC)
    spec_deployment(plan, POOL).apply(work_pool_name=POOL)


def main(argv: list[str] | None = None) -> int:
    """Run the arms and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke: 8 s monitors, 2 runs")
    parser.add_argument("--seconds", type=float, default=30.0, help="each monitor run's length")
    parser.add_argument("--runs", type=int, default=8, help="workflow runs per arm")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    seconds, runs = (8.0, 2) if args.quick else (args.seconds, args.runs)

    with ExitStack() as stack_cm:
        tmp = Path(stack_cm.enter_context(tempfile.TemporaryDirectory(prefix="capacity-")))
        pg = stack_cm.enter_context(PostgresCluster())
        assert pg._proc is not None
        t0 = time.monotonic()
        server = stack_cm.enter_context(
            PrefectServer(home=tmp / "prefect", scheduler=False, ui=False, database_url=pg.url)
        )
        assert server._proc is not None
        server_start = time.monotonic() - t0
        # This process's Prefect client (deploy, submit, poll) talks to that server.
        os.environ.update({k: v for k, v in server.env.items() if k.startswith("PREFECT_")})
        port, smtp = free_port(), free_port()
        sandbox = start_sandbox_process(port, smtp_port=smtp)
        stack_cm.callback(sandbox.wait, 10)
        stack_cm.callback(os.killpg, sandbox.pid, signal.SIGTERM)
        stack = Stack(
            pg=pg,
            pg_pid=pg._proc.pid,
            server=server,
            server_pid=server._proc.pid,
            sandbox_env={
                "JUNCTION_SANDBOX_URL": f"http://127.0.0.1:{port}",
                "JUNCTION_SANDBOX_SMTP_PORT": str(smtp),
            },
            tmp=tmp,
        )
        deploy(stack)
        rows = [
            monitor_arm(stack, 1, seconds),
            monitor_arm(stack, 2, seconds),
            workflow_arm(stack, 1, runs),
            workflow_arm(stack, 2, runs),
        ]
    print_table(rows, server_start, seconds, runs)
    if args.json:
        out = []
        for r in rows:
            load = r["load"]
            backends = load.backends or [0]
            summary = {**vars(load), "backends": [statistics.median(backends), max(backends)]}
            out.append({**r, "load": summary})
        print(json.dumps(out, default=float))
    return 0


def print_table(rows: list[dict[str, Any]], server_start: float, seconds: float, runs: int) -> None:
    """The arms side by side, with the 2-vs-1 ratios."""
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nPrefect server on PostgreSQL (healthy after {server_start:.1f} s), "
        f"{os.cpu_count()} cores, load average at the end {load_avg}; monitor runs of "
        f"{seconds:g} s sweeping every 0.05 s, {runs} workflow runs per arm.\n"
    )
    header = (
        "arm", "rate", "count", "wall s", "run CPU", "PG backends p50/max",
        "PG commits/s", "PG cores", "server cores",
    )  # fmt: skip
    table = [header]
    for r in rows:
        load: Load = r["load"]
        backends = load.backends or [0]
        table.append(
            (
                r["arm"],
                f"{r['rate']:.2f} {r['unit']}",
                str(r["count"]) + (f" ({r['failed']} failed)" if r.get("failed") else ""),
                f"{r['wall_s']:.1f}",
                f"{r['cpu_per']:.2f} {r['cpu_unit']}",
                f"{statistics.median(backends):.0f} / {max(backends)}",
                f"{load.commits_per_s:.0f}",
                f"{load.pg_cores:.2f}",
                f"{load.server_cores:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print(" | ".join("-" * w for w in widths))
    probes = [r for r in rows if r["unit"] == "probes/s"]
    flows = [r for r in rows if r["unit"] == "runs/s"]
    print(f"\nprobes/s, 2 shards / 1 shard: {probes[1]['rate'] / probes[0]['rate']:.2f}x")
    print(f"workflow runs/s, 2 workers / 1 worker: {flows[1]['rate'] / flows[0]['rate']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
