"""Sweep benchmark: health-check 1,000 sandbox endpoints with latencies of 20-200 ms.

Arms, in the same run, against the same sandbox process:
- ``junction``: the production path (``integrations.sweep.check_all``: one shared
  connection pool, a semaphore, every check through ``IntegrationClient`` with its
  breaker, retry policy and metric hook), in a fresh process so peak RSS is its own;
- ``sequential``: the same clients checked one after another (what a loop does).
Reported: wall time of each, the slowest endpoint's own latency (measured alone), the
ratios wall/slowest (the floor is 1.0; goal <= 1.2) and sequential/junction, and the
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
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sandbox(port: int) -> subprocess.Popen[bytes]:
    """Run the sandbox in its own process (as a user would) and wait until it answers."""
    proc = subprocess.Popen(
        [PY, "-m", "junction", "sandbox", "serve", "--port", str(port), "--smtp-port", "0"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_admin/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("sandbox did not start within 60 s")


def make_clients(url: str, count: int, http: httpx.AsyncClient) -> list[object]:
    """One generic client per synthetic endpoint, built like catalog clients are."""
    from integrations.base import IntegrationClient, RetryPolicy
    from integrations.catalog import AuthSpec, HealthCheck, IntegrationSpec
    from junction.settings import Settings

    settings = Settings(sandbox_url=url)
    clients = []
    for i in range(count):
        spec = IntegrationSpec(
            name=f"synthetic_{i:04d}",
            title=f"Synthetic {i}",
            capabilities=("bench",),
            base_url=f"{url}/_synthetic/{i}",
            auth=AuthSpec(scheme="none"),
            health=HealthCheck(path="/health"),
        )
        clients.append(
            IntegrationClient(
                spec,
                settings=settings,
                base_url=spec.base_url,
                http=http,
                source="bench",
                retry=RetryPolicy(max_attempts=1),
            )
        )
    return clients


async def run_arm(arm: str, url: str, count: int) -> dict[str, float]:
    """Run one arm in this process and return its measurements."""
    from integrations.sweep import check_all

    started = time.perf_counter()
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=count, max_keepalive_connections=count),
        timeout=httpx.Timeout(30.0, connect=10.0),
    ) as http:
        clients = make_clients(url, count, http)
        built = time.perf_counter()
        if arm == "junction":
            results = await check_all(clients, concurrency=count)  # type: ignore[arg-type]
        else:
            results = [await c.health_check() for c in clients]  # type: ignore[attr-defined]
        done = time.perf_counter()
    failed = sum(not r.ok for r in results)
    return {
        "wall_s": done - started,
        "build_s": built - started,
        "checks_s": done - built,
        "failed": failed,
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


def slowest_endpoint(url: str, latencies: dict[str, float]) -> tuple[int, float]:
    """The endpoint with the largest configured latency, and its latency measured alone."""
    i = int(max(latencies, key=lambda k: latencies[k]))
    with httpx.Client() as client:
        client.get(f"{url}/_synthetic/{i}/health")  # connect once
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            client.get(f"{url}/_synthetic/{i}/health").raise_for_status()
            times.append(time.perf_counter() - t0)
    return i, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arm", choices=["junction", "sequential"])
    parser.add_argument("--url")
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    if args.arm:  # child mode
        print(json.dumps(asyncio.run(run_arm(args.arm, args.url, args.endpoints))))
        return

    port = free_port()
    sandbox = start_sandbox(port)
    url = f"http://127.0.0.1:{port}"
    try:
        resp = httpx.post(
            f"{url}/_admin/synthetic",
            json={"count": args.endpoints, "latency_ms": {"min": 20, "max": 200}, "seed": 1},
        )
        resp.raise_for_status()
        latencies = {str(k): float(v) for k, v in resp.json()["latencies_ms"].items()}
        idx, slowest = slowest_endpoint(url, latencies)
        runs = [arm_in_subprocess("junction", url, args.endpoints) for _ in range(args.repeats)]
        seq = None if args.skip_sequential else arm_in_subprocess("sequential", url, args.endpoints)
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        sandbox.wait(10)

    wall = statistics.median(r["wall_s"] for r in runs)
    checks = statistics.median(r["checks_s"] for r in runs)
    rss = max(r["peak_rss_mb"] for r in runs)
    rows = [
        ("endpoints", f"{args.endpoints}"),
        ("configured latency", f"20-200 ms (slowest #{idx}: {latencies[str(idx)]:.0f} ms)"),
        ("slowest endpoint alone (measured)", f"{slowest * 1000:.0f} ms"),
        ("junction sweep wall (median of runs)", f"{wall * 1000:.0f} ms  (runs: "
         + ", ".join(f"{r['wall_s'] * 1000:.0f}" for r in runs) + ")"),
        ("  of which building clients", f"{statistics.median(r['build_s'] for r in runs) * 1000:.0f} ms"),
        ("  of which checks", f"{checks * 1000:.0f} ms"),
        ("failed checks", f"{sum(r['failed'] for r in runs):.0f}"),
        ("ratio wall / slowest endpoint (goal <= 1.2)", f"{wall / slowest:.2f}"),
        ("ratio checks-only / slowest endpoint", f"{checks / slowest:.2f}"),
        ("peak RSS of the sweeping process (goal <= 500 MB)", f"{rss:.0f} MB"),
    ]
    if seq is not None:
        rows += [
            ("sequential loop wall", f"{seq['wall_s']:.1f} s"),
            ("ratio sequential / junction sweep", f"{seq['wall_s'] / wall:.0f}x"),
        ]
    width = max(len(k) for k, _ in rows)
    print(f"\n{'measure'.ljust(width)} | value\n{'-' * width}-|------")
    for key, value in rows:
        print(f"{key.ljust(width)} | {value}")


if __name__ == "__main__":
    main()
