"""Sweep benchmark: health-check 1,000 sandbox endpoints with latencies of 20-200 ms.

Arms, in the same run, against the same sandbox process, each in a fresh process so its
peak RSS is its own. Every concurrent arm runs ``integrations.sweep.check_all`` (a
semaphore, every check through ``IntegrationClient`` with its breaker, retry policy and
metric hook); they differ in the ``httpx.AsyncClient`` underneath:
- ``aiohttp``: one shared client over ``AiohttpTransport`` (``JUNCTION_HTTP_BACKEND=aiohttp``);
- ``sharded-pool``: one shared client over several small httpcore pools
  (``JUNCTION_HTTP_BACKEND=httpcore``);
- ``per-client-pools``: every client its own httpcore pool;
- ``shared-pool``: one shared client over one big httpcore pool;
- ``sequential``: the production client, checks one after another (what a loop does).
The production arm is the one ``Settings.http_backend`` defaults to. Steady-state arms
(``--arms``; clients and connections kept, one warm-up sweep, then the median of 5):
``persistent`` (one process, ``quiet_gc``, as ``junction monitor`` runs),
``persistent-2proc`` (``ProcessSweeper``, 2 workers), ``persistent-default-gc`` (the
interpreter's collector) and ``persistent-cookies`` (a cookie jar and the default collector:
the steady state before both).
Reported: wall time of each, the slowest endpoint's own latency (measured alone), the
ratios wall/slowest (the floor is 1.0; goal <= 1.2) and sequential/production, and the
peak RSS of the sweeping process (goal <= 500 MB).

Run: ``make bench`` or ``.venv/bin/python bench/sweep.py [--endpoints 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from deployments.local import free_port
from integrations.base import IntegrationClient, RetryPolicy
from integrations.catalog import AuthSpec, HealthCheck, IntegrationSpec
from integrations.sandbox.process import start_sandbox_process
from integrations.sweep import ProcessSweeper, Sweeper, check_all, quiet_gc, shard_of
from integrations.transport import sweep_client
from junction.settings import Settings

if TYPE_CHECKING:
    from integrations.transport import HttpBackend

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def make_clients(
    url: str,
    count: int,
    http: httpx.AsyncClient | None,
    ssl_context: ssl.SSLContext,
    indices: Sequence[int] | None = None,
) -> list[IntegrationClient]:
    """One generic client per synthetic endpoint, built the way catalog clients are.

    With ``http=None`` every client gets its own small pool (sharing one TLS context);
    otherwise all share ``http``. ``indices``: only these endpoints (default all).
    """
    settings = Settings(sandbox_url=url)
    clients = []
    for i in range(count) if indices is None else indices:
        spec = IntegrationSpec(
            name=f"synthetic_{i:04d}",
            title=f"Synthetic {i}",
            capabilities=("bench",),
            base_url=f"{url}/_synthetic/{i}",
            auth=AuthSpec(scheme="none"),
            health=HealthCheck(path="/health"),
        )
        own = None if http is not None else httpx.AsyncClient(verify=ssl_context, timeout=30.0)
        clients.append(
            IntegrationClient(
                spec,
                engine=settings.engine_config(),
                base_url=spec.base_url,
                http=http or own,
                source="bench",
                retry=RetryPolicy(max_attempts=1),
            )
        )
    return clients


def make_sweeper(
    url: str, count: int, shard: int = 0, shards: int = 1, *, cookies: bool = False
) -> Sweeper:
    """The persistent sweeper of one shard of the endpoints (production backend).

    ``cookies``: a plain ``httpx.AsyncClient`` (a cookie jar fed by every response) over
    the same transport instead of ``sweep_client``'s cookieless one (the arm before).
    """
    part = shard_of(range(count), shard, shards)
    backend = Settings.model_fields["http_backend"].default
    http = sweep_client(len(part), httpx.Timeout(30.0, connect=10.0), backend=backend)
    if cookies:
        http = httpx.AsyncClient(
            transport=http._transport, timeout=http.timeout, follow_redirects=False
        )
    clients = make_clients(url, count, http, httpx.create_ssl_context(), indices=part)
    return Sweeper(clients, http, concurrency=len(part))


async def run_persistent(
    url: str, count: int, shards: int, sweeps: int, *, cookies: bool = False, tune_gc: bool = True
) -> dict[str, float]:
    """Build once, sweep once to warm up (connections), then time ``sweeps`` sweeps.

    ``tune_gc``: one process calls ``quiet_gc`` after building, as ``junction monitor``
    does (worker processes always do).
    """
    started = time.perf_counter()
    pool: ProcessSweeper | None = None
    sweeper: Sweeper | None = None
    if shards > 1:
        pool = ProcessSweeper(partial(make_sweeper, url, count, cookies=cookies), shards)
        pool.start()
        run = pool.run
    else:
        sweeper = make_sweeper(url, count, cookies=cookies)
        if tune_gc:
            quiet_gc()
        run = sweeper.run
    built = time.perf_counter()
    first = await run()
    first_s = time.perf_counter() - built
    walls, cpus, failed = [], [], sum(not r.ok for r in first)
    try:
        for _ in range(sweeps):
            cpu = time.process_time()
            t0 = time.perf_counter()
            results = await run()
            walls.append(time.perf_counter() - t0)
            own = time.process_time() - cpu
            cpus.append(own + (sum(pool.last_cpu_s) if pool is not None else 0.0))
            failed += sum(not r.ok for r in results)
    finally:
        if pool is not None:
            pool.close()
        if sweeper is not None:
            await sweeper.aclose()
    wall = statistics.median(walls)
    return {
        "wall_s": wall,
        "build_s": built - started,
        "first_s": first_s,
        "checks_s": wall,
        "checks_cpu_s": statistics.median(cpus),
        "failed": float(failed),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def run_arm(arm: str, url: str, count: int) -> dict[str, float]:
    """Run one arm in this process and return its measurements."""
    if arm in PERSISTENT_ARMS:
        shards, cookies, tune_gc = PERSISTENT_ARMS[arm]
        return await run_persistent(url, count, shards, sweeps=5, cookies=cookies, tune_gc=tune_gc)
    sequential = arm == "sequential"
    started = time.perf_counter()
    ctx = httpx.create_ssl_context()
    shared = None
    if sequential:
        arm = production_arm()
    backend = next((b for b, a in BACKEND_ARMS.items() if a == arm), None)
    if backend is not None:
        shared = sweep_client(count, httpx.Timeout(30.0, connect=10.0), backend=backend)
    elif arm == "shared-pool":
        shared = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=count, max_keepalive_connections=count),
            timeout=httpx.Timeout(30.0, connect=10.0),
            verify=ctx,
        )
    clients = make_clients(url, count, shared, ctx)
    built = time.perf_counter()
    cpu_built = time.process_time()
    if sequential:
        results = [await c.health_check() for c in clients]
    else:
        results = await check_all(clients, concurrency=count)
    done = time.perf_counter()
    cpu_done = time.process_time()
    for c in clients:
        if c._http is not shared and c._http is not None:
            await c._http.aclose()
    if shared is not None:
        await shared.aclose()
    return {
        "wall_s": done - started,
        "build_s": built - started,
        "checks_s": done - built,
        "checks_cpu_s": cpu_done - cpu_built,
        "failed": float(sum(not r.ok for r in results)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def arm_in_subprocess(arm: str, url: str, count: int) -> dict[str, float]:
    """Run an arm in a fresh interpreter so its peak RSS is its own."""
    out = subprocess.run(
        [PY, __file__, "--arm", arm, "--url", url, "--endpoints", str(count)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def slowest_endpoint(url: str, delays: list[float]) -> tuple[int, float]:
    """The endpoint with the largest configured latency, and its latency measured alone."""
    i = max(range(len(delays)), key=delays.__getitem__)
    with httpx.Client() as client:
        client.get(f"{url}/_synthetic/{i}/health")  # connect once
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            client.get(f"{url}/_synthetic/{i}/health").raise_for_status()
            times.append(time.perf_counter() - t0)
    return i, min(times)


#: The arm of each ``Settings.http_backend`` (``sweep_client(..., backend=...)``).
BACKEND_ARMS: dict[HttpBackend, str] = {"aiohttp": "aiohttp", "httpcore": "sharded-pool"}
#: Steady-state arms: clients and connections kept across sweeps, in 1 or 2 processes;
#: ``(processes, cookies, tune_gc)``: ``cookies`` is the client before ``sweep_client``
#: dropped them, ``tune_gc`` calls ``quiet_gc`` (the 2-process workers always do).
PERSISTENT_ARMS = {
    "persistent": (1, False, True),
    "persistent-2proc": (2, False, True),
    "persistent-default-gc": (1, False, False),
    "persistent-cookies": (1, True, False),
}
ARMS = (
    "persistent-2proc",
    "persistent",
    "persistent-default-gc",
    "persistent-cookies",
    "aiohttp",
    "sharded-pool",
    "per-client-pools",
    "shared-pool",
    "sequential",
)


def production_arm() -> str:
    """The arm of the backend production sweeps use (``Settings.http_backend``'s default)."""
    return BACKEND_ARMS[Settings.model_fields["http_backend"].default]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arm", choices=ARMS)
    parser.add_argument("--url")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--arms", help=f"comma-separated subset of {','.join(ARMS)} (default: all)")
    args = parser.parse_args()
    if args.arm:  # child mode: one arm, JSON on stdout
        print(json.dumps(asyncio.run(run_arm(args.arm, args.url, args.endpoints))))
        return

    # Function-level: only the parent needs the sandbox's fault tables; the arms' child
    # processes would otherwise carry them in the peak RSS they report.
    from integrations.sandbox.faults import SyntheticConfig, SyntheticTable

    chosen = ARMS if not args.arms else tuple(a.strip() for a in args.arms.split(","))
    unknown = sorted(set(chosen) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    config = {"count": args.endpoints, "latency_ms": {"min": 20, "max": 200}, "seed": 1}
    delays = SyntheticTable(SyntheticConfig.model_validate(config)).delays  # same draw as server
    port = free_port()
    sandbox = start_sandbox_process(port)
    url = f"http://127.0.0.1:{port}"
    results: dict[str, list[dict[str, float]]] = {}
    try:
        httpx.post(f"{url}/_admin/synthetic", json=config).raise_for_status()
        idx, slowest = slowest_endpoint(url, delays)
        for _ in range(args.repeats):  # interleave arms so drift hits all alike
            for arm in chosen:
                if arm != "sequential":
                    results.setdefault(arm, []).append(arm_in_subprocess(arm, url, args.endpoints))
        if "sequential" in chosen and not args.skip_sequential:
            results["sequential"] = [arm_in_subprocess("sequential", url, args.endpoints)]
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        sandbox.wait(10)

    def med(arm: str, key: str) -> float:
        return statistics.median(r[key] for r in results[arm])

    production = production_arm()
    print(
        f"\n{args.endpoints} endpoints, configured latency 20-200 ms; slowest #{idx} "
        f"({delays[idx] * 1000:.0f} ms configured, {slowest * 1000:.0f} ms measured alone)."
    )
    print(f"Median of {args.repeats} runs per arm, each in a fresh process.\n")
    header = (
        "arm",
        "wall ms",
        "build ms",
        "checks ms",
        "checks CPU ms",
        "wall/slowest",
        "failed",
        "peak RSS MB",
    )
    rows = []
    for arm in results:
        rows.append(
            (
                arm + (" (production)" if arm == production else ""),
                f"{med(arm, 'wall_s') * 1000:.0f}",
                f"{med(arm, 'build_s') * 1000:.0f}",
                f"{med(arm, 'checks_s') * 1000:.0f}",
                f"{med(arm, 'checks_cpu_s') * 1000:.0f}",
                f"{med(arm, 'wall_s') / slowest:.2f}",
                f"{sum(r['failed'] for r in results[arm]):.0f}",
                f"{max(r['peak_rss_mb'] for r in results[arm]):.0f}",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    if "sequential" in results and production in results:
        ratio = med("sequential", "wall_s") / med(production, "wall_s")
        print(f"\nsequential / production sweep: {ratio:.0f}x")
    for arm in (production, *PERSISTENT_ARMS):
        if arm in results:
            print(
                f"{arm}: wall / slowest endpoint {med(arm, 'wall_s') / slowest:.2f} "
                f"(floor 1.0, goal <= 3), CPU per check "
                f"{med(arm, 'checks_cpu_s') / args.endpoints * 1000:.3f} ms"
            )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end: {load}")


if __name__ == "__main__":
    main()
