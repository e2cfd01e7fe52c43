"""Service benchmark (issue 11): ``junction serve`` over 1,000 integrations and 10 M calls.

1. Builds a store (``bench/service_data.py``: Parquet written in the store's own layout,
   10 M calls over 10 days, 2 h of probes every 30 s per service) and times it.
2. Starts ``python -m junction serve`` on it (a real uvicorn process, a token set), then:

   - API reads, sequential, p50/p95 over ``--requests`` each after a warm-up: status,
     the health table (every service, one service), windowed metrics (15 min, 1 day),
     one service's detail, a log search through the API;
   - the health grid page ``/`` (logged in), the server's answer time seen from loopback;
   - probe-to-visible: another process appends a failing probe and flushes (what the
     monitor does after a sweep); the time until ``monitoring/health`` shows it, and
     until an open ``/events/health`` stream carries the service's row;
   - 100 SSE clients: the server process's CPU (psutil) over ``--sse-seconds`` while a
     probe is written every 0.2 s, against the same with no client;
   - log search over the 10 M rows (``junction.logsearch.search``, in this process).

3. The same questions answered naively, in the same run, on the same store: the health
   table by replaying the window's rows through the monitor's state (the service's first
   read path: ``read_since`` + ``ServiceState.add`` per row), the windowed metrics by one
   DuckDB scan of every file (no ``date`` partition pruning), log search with
   ``prune=False`` (every day at once instead of newest days first). Ratios naive / served.

Run: ``.venv/bin/python -m bench.service [--quick] [--json]`` (``--quick``: 200 k rows,
50 services, fewer requests: a smoke run of the whole path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.service_arms import log_search, metrics_query, replay_health  # noqa: E402
from bench.service_data import build_store, service_names  # noqa: E402
from bench.service_timing import pct, timed  # noqa: E402

PY = sys.executable
MONITORING = "/api/v2/workflows/enhanced/monitoring"
WRITER = """
import sys, time
from datetime import UTC, datetime
from junction.store import MetricsStore
store = MetricsStore(sys.argv[1])
# Warm up: a process's first append and flush load Parquet writing (~1 s), once.
store.append("probes", [{"sweep_id": "warm-up", "service": sys.argv[2], "ok": True,
    "status": 200, "latency_ms": 10.0, "breaker_state": "closed"}])
store.flush()
print("ready", flush=True)
for line in sys.stdin:
    service = line.strip()
    t0 = time.time()
    ts = datetime.now(UTC)
    store.append("probes", [{"ts": ts, "sweep_id": "bench", "service": service, "ok": False,
        "status": 503, "latency_ms": 4321.0, "error_class": "ServerError",
        "error": "HTTP 503 Service Unavailable", "breaker_state": "closed"}])
    store.flush()
    print(t0, ts.isoformat(), flush=True)
"""
"""A process writing one failing probe per service name read (append + flush, as the
monitor publishes a sweep), printing when it started and the row's timestamp. It first
writes one healthy probe of the service named on its command line (a long-running
monitor has paid its first flush long before)."""


# --------------------------------------------------------------------------- the server


class Server:
    """``python -m junction serve`` on a free port, on the benchmark's home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.token = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Server:
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUNCTION_")}
        env.update(
            JUNCTION_HOME=str(self.home),
            JUNCTION_API_TOKEN=self.token,
            PREFECT_HOME=str(self.home / "prefect"),
            COLUMNS="200",
        )
        self.proc = subprocess.Popen(
            [PY, "-m", "junction", "serve", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in self.proc.stdout:
            found = re.search(r"serving Junction on (http://\S+?):?(\d+) ", line)
            if found:
                self.url = f"http://127.0.0.1:{found.group(2)}"
                break
            if time.monotonic() > deadline:
                break
        if not self.url:
            raise RuntimeError("junction serve did not start")
        # Keep draining its output (a full pipe would block the server).
        out = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
        with self.client() as c:
            while True:
                try:
                    if c.get("/api/v2/status").status_code == 200:
                        break
                except httpx.ConnectError:  # bound, not accepting yet
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("junction serve does not answer")
                time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self) -> httpx.Client:
        """An API client with the token."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120
        )

    def browser(self) -> httpx.Client:
        """A logged-in browser session (cookies), as the dashboard's user has."""
        client = httpx.Client(base_url=self.url, timeout=120)
        page = client.get("/login").text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)
        if csrf is None:
            raise RuntimeError("no CSRF token on /login")
        resp = client.post(
            "/login", data={"token": self.token, "next": "/", "csrf_token": csrf.group(1)}
        )
        if resp.status_code != 303:
            raise RuntimeError(f"login failed: {resp.status_code}")
        return client


@contextmanager
def probe_writer(store_root: Path, warm_up: str) -> Iterator[Callable[[str], tuple[float, str]]]:
    """A writer process; the callable makes it write one failing probe of a service."""
    proc = subprocess.Popen(
        [PY, "-c", WRITER, str(store_root), warm_up],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"

    def write(service: str) -> tuple[float, str]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(service + "\n")
        proc.stdin.flush()
        started, ts = proc.stdout.readline().split()
        return float(started), ts

    try:
        yield write
    finally:
        proc.stdin.close()
        proc.wait(30)


# --------------------------------------------------------------------------- measures


def api_reads(server: Server, n: int, routes: set[str]) -> dict[str, dict[str, float]]:
    """p50/p95 of the API's reads (sequential, one client)."""
    reads: dict[str, tuple[str, dict[str, Any]]] = {
        "GET /api/v2/status": ("/api/v2/status", {}),
        "GET monitoring/health (all)": (f"{MONITORING}/health", {}),
        "GET monitoring/health?service=1": (f"{MONITORING}/health", {"service": "okta"}),
        "GET monitoring/metrics (all, 15 min)": (f"{MONITORING}/metrics", {}),
        "GET monitoring/metrics (all, 1 day)": (f"{MONITORING}/metrics", {"window": 86400}),
        "GET /metrics (Prometheus)": ("/metrics", {}),
    }
    if "/api/v2/services/{name}" in routes:
        reads["GET services/{name} (1 h)"] = ("/api/v2/services/okta", {})
    if "/api/v2/logs/search" in routes:
        reads["GET logs/search?q=timeout&since=1h"] = (
            "/api/v2/logs/search",
            {"q": "timeout", "since": "1h"},
        )
    out = {}
    with server.client() as c:
        for name, (path, params) in reads.items():

            def call(path: str = path, params: dict[str, Any] = params) -> None:
                resp = c.get(path, params=params)
                if resp.status_code != 200:
                    raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:200]}")

            out[name] = timed(call, n)
    return out


def fresh_reads(
    server: Server, store_root: Path, n: int, names: list[str]
) -> dict[str, dict[str, float]]:
    """Reads right after a new row: another process writes a healthy probe, then one read
    is timed (a read may not reuse an answer computed before the store changed)."""
    reads = {
        "GET monitoring/health (all) after a new row": (f"{MONITORING}/health", {}),
        "GET monitoring/metrics (all, 15 min) after a new row": (f"{MONITORING}/metrics", {}),
        "GET monitoring/metrics (all, 1 day) after a new row": (
            f"{MONITORING}/metrics",
            {"window": 86400},
        ),
    }
    out = {}
    with probe_writer(store_root, names[0]) as write, server.client() as c:
        for name, (path, params) in reads.items():
            ms = []
            for i in range(n):
                write(names[(17 * i + 1) % len(names)])
                time.sleep(0.5)  # the live view's next poll (0.3 s) has the row
                t0 = time.perf_counter()
                resp = c.get(path, params=params)
                ms.append((time.perf_counter() - t0) * 1000)
                if resp.status_code != 200:
                    raise RuntimeError(f"{path}: {resp.status_code}")
            out[name] = {"p50": pct(ms, 0.5), "p95": pct(ms, 0.95), "max": max(ms), "n": n}
    return out


def grid_page(server: Server, n: int) -> dict[str, float]:
    """p50/p95 of ``GET /`` (the health grid) for a logged-in browser."""
    browser = server.browser()

    size: list[int] = []

    def call() -> None:
        resp = browser.get("/")
        if resp.status_code != 200:
            raise RuntimeError(f"/: {resp.status_code}")
        size[:] = [len(resp.content), resp.text.count("<tr")]

    try:
        return {**timed(call, n), "bytes": size[0], "rows": size[1]}
    finally:
        browser.close()


def probe_to_visible(server: Server, store_root: Path, n: int, names: list[str]) -> dict[str, Any]:
    """Seconds from a probe's write in another process until the API and the SSE show it."""
    api_s: list[float] = []
    sse_s: list[float] = []
    with probe_writer(store_root, names[0]) as write, server.client() as c:
        for i in range(n):
            service = names[(7 * i + 3) % len(names)]
            started, ts = write(service)
            while True:
                row = c.get(f"{MONITORING}/health", params={"service": service}).json()
                got = row["services"][0]
                if got["ok"] is False and got["checked_at"] and got["checked_at"] >= ts[:19]:
                    api_s.append(time.time() - started)
                    break
                if time.time() - started > 30:
                    api_s.append(float("inf"))
                    break
                time.sleep(0.01)
        sse_s = asyncio.run(_sse_visible(server, write, n, names))
    return {
        "api_samples_s": [round(x, 3) for x in api_s],
        "sse_samples_s": [round(x, 3) for x in sse_s],
        "api_p50_s": pct(api_s, 0.5),
        "api_max_s": max(api_s),
        "sse_p50_s": pct(sse_s, 0.5) if sse_s else None,
        "sse_max_s": max(sse_s) if sse_s else None,
        "n": n,
    }


async def _sse_visible(
    server: Server, write: Callable[[str], tuple[float, str]], n: int, names: list[str]
) -> list[float]:
    cookies = server.browser().cookies
    out: list[float] = []
    lines: asyncio.Queue[str] = asyncio.Queue()
    async with (
        httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=60) as client,
        client.stream("GET", "/events/health") as stream,
    ):

        async def pump() -> None:  # one reader of the stream; waits time out on the queue
            async for line in stream.aiter_lines():
                await lines.put(line)

        reader = asyncio.create_task(pump())
        try:
            await _until(lines, "", 30)  # the first rows
            for i in range(n):
                # From the end of the list: none of the services the API part failed (a
                # third failure in a row changes no status: only numbers, sent in 10 s).
                service = names[-1 - (11 * i) % len(names)]
                # Two failed probes in a row: the service is down (JUNCTION_MONITOR_DOWN_AFTER),
                # a change the grid sends at once; numbers alone may wait DRIFT_SECONDS.
                await asyncio.to_thread(write, service)
                await _until(lines, service, 1.5)  # the first one's event, if it sent one
                started, _ = await asyncio.to_thread(write, service)
                seen = await _until(lines, service, 30)
                out.append(time.time() - started if seen else float("inf"))
        finally:
            reader.cancel()
    return out


async def _until(lines: asyncio.Queue[str], needle: str, timeout: float) -> bool:
    """Take the stream's lines until a ``data:`` line holding ``needle`` (or time out)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(lines.get(), left)
        except TimeoutError:
            return False
        if line.startswith("data:") and needle in line:
            return True
    return False


def sse_cpu(
    server: Server, store_root: Path, clients: int, seconds: float, names: list[str]
) -> dict[str, Any]:
    """Server CPU (cores) with ``clients`` SSE streams open while probes change the grid."""
    proc = psutil.Process(server.pid)
    cookies = server.browser().cookies if clients else None
    events = [0] * clients

    async def client_task(client: httpx.AsyncClient, i: int, stop: asyncio.Event) -> None:
        async with client.stream("GET", "/events/health") as stream:
            if stream.status_code != 200:
                raise RuntimeError(f"/events/health: {stream.status_code}")
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    events[i] += 1
                if stop.is_set():
                    return

    async def run() -> tuple[float, float]:
        limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=server.url, cookies=cookies, timeout=None, limits=limits
        ) as client:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(client_task(client, i, stop)) for i in range(clients)]
            await asyncio.sleep(3)  # every stream open and past its first rows
            with probe_writer(store_root, names[0]) as write:
                cpu0 = sum(proc.cpu_times()[:2])
                t0 = time.monotonic()
                i = 0
                while time.monotonic() - t0 < seconds:
                    await asyncio.to_thread(write, names[(13 * i) % len(names)])
                    i += 1
                    await asyncio.sleep(0.2)
                cpu = sum(proc.cpu_times()[:2]) - cpu0
                wall = time.monotonic() - t0
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return cpu, wall

    cpu, wall = asyncio.run(run())
    return {
        "clients": clients,
        "cores": cpu / wall,
        "seconds": wall,
        "events_per_client": statistics.mean(events) if events else 0,
    }


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the store, serve it, measure; everything the report shows."""
    work = Path(args.dir or tempfile.mkdtemp(prefix="junction-bench-service-"))
    try:
        return _measure(args, work)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def _measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    store_root = home / "metrics"
    built = build_store(store_root, rows=args.rows, services=args.services, days=args.days)
    print(
        f"store: {built.calls:,} calls + {built.probes:,} probes, {built.services} services, "
        f"{built.files} files, {built.bytes / 1e6:.0f} MB, written in {built.seconds:.1f} s",
        file=sys.stderr,
    )
    result: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}",
        "store": built.__dict__,
    }
    names = service_names(args.services)
    with Server(home) as server:
        started = time.monotonic()
        with server.client() as c:
            paths = set(c.get("/openapi.json").json()["paths"])
            # The first read waits for the live view's bootstrap: its time is reported.
            t0 = time.perf_counter()
            c.get(f"{MONITORING}/health")
            result["first_health_read_s"] = time.perf_counter() - t0
        result["startup_s"] = time.monotonic() - started
        result["api"] = api_reads(server, args.requests, paths)
        result["api"] |= fresh_reads(server, store_root, max(5, args.requests // 3), names)
        try:
            result["grid"] = grid_page(server, max(5, args.requests // 3))
        except RuntimeError as exc:
            result["grid"] = {"error": str(exc)}
        result["probe_to_visible"] = probe_to_visible(server, store_root, args.probes, names)
        result["sse_idle"] = sse_cpu(server, store_root, 0, args.sse_seconds, names)
        result["sse"] = sse_cpu(server, store_root, args.sse_clients, args.sse_seconds, names)
    window = 900.0
    repeats = max(3, args.requests // 10)
    result["naive"] = {
        "health replay (all, 15 min)": timed(
            partial(replay_health, store_root, names, window), repeats, 1
        ),
    }
    # Function-level: the service's reader only for this arm (a StoreReader, as the route).
    from junction.service.aggregates import StoreReader
    from junction.store import MetricsStore

    with MetricsStore(store_root) as store:
        reader = StoreReader(store)
        for label, seconds in (("15 min", window), ("1 day", 86400.0)):
            for prune in (True, False):
                name = f"metrics query (all, {label}){'' if prune else ' no pruning'}"
                result["naive"][name] = timed(
                    partial(metrics_query, reader, names, seconds, prune=prune), repeats, 1
                )
    result["logs"] = log_search(store_root, max(3, args.requests // 10), names[-1], args.days)
    result["load_end"] = os.getloadavg()[0]
    return result


def report(r: dict[str, Any]) -> str:
    """The result as the table bench/README.md shows."""
    s = r["store"]
    lines = [
        f"machine: {r['machine']} (at the end: {r['load_end']:.1f})",
        f"store: {s['calls']:,} calls over {s['days']} days + {s['probes']:,} probes, "
        f"{s['services']} services; {s['files']} Parquet files, {s['bytes'] / 1e6:.0f} MB, "
        f"written in {s['seconds']:.1f} s",
        f"serve start to first answer: {r['startup_s']:.1f} s "
        f"(first health read {r['first_health_read_s'] * 1000:.0f} ms)",
        "",
        "| measure | p50 ms | p95 ms | naive p50 ms | naive / served | goal |",
        "|---|---|---|---|---|---|",
    ]
    naive = r["naive"]
    pairs = {
        "GET monitoring/health (all)": "health replay (all, 15 min)",
        "GET monitoring/metrics (all, 15 min)": "metrics query (all, 15 min) no pruning",
        "GET monitoring/metrics (all, 1 day)": "metrics query (all, 1 day) no pruning",
        "GET monitoring/health (all) after a new row": "health replay (all, 15 min)",
        "GET monitoring/metrics (all, 15 min) after a new row": (
            "metrics query (all, 15 min) no pruning"
        ),
        "GET monitoring/metrics (all, 1 day) after a new row": (
            "metrics query (all, 1 day) no pruning"
        ),
    }
    for name, t in r["api"].items():
        base = naive.get(pairs.get(name, ""))
        ratio = f"{base['p50'] / t['p50']:.0f}x" if base else "-"
        naive_ms = f"{base['p50']:.0f}" if base else "-"
        lines.append(
            f"| {name} | {t['p50']:.1f} | {t['p95']:.1f} | {naive_ms} | {ratio} | p95 <= 50 |"
        )
    grid = r["grid"]
    if "error" in grid:
        lines.append(f"| GET / (grid page) | not measured: {grid['error']} | | | | <= 300 |")
    else:
        lines.append(
            f"| GET / (grid page: {grid['rows']} rows, {grid['bytes'] / 1e3:.0f} kB) | "
            f"{grid['p50']:.0f} | "
            f"{grid['p95']:.0f} | - | - | <= 300 |"
        )
    p = r["probe_to_visible"]
    sse = f"{p['sse_p50_s']:.2f} s p50, {p['sse_max_s']:.2f} s max" if p["sse_p50_s"] else "-"
    lines.append(
        f"| probe-to-visible, API ({p['n']} probes) | {p['api_p50_s'] * 1000:.0f} | "
        f"max {p['api_max_s'] * 1000:.0f} | - | - | <= 2000 |"
    )
    lines.append(f"| probe-to-visible, SSE stream | {sse} | | | | <= 2 s |")
    lines.append(
        f"| {r['sse']['clients']} SSE clients: server CPU | {r['sse']['cores']:.2f} cores "
        f"({r['sse_idle']['cores']:.2f} with none) | | | "
        f"{r['sse']['events_per_client']:.0f} events each in {r['sse']['seconds']:.0f} s | "
        "<= 0.5 core |"
    )
    for label in ("15 min", "1 day"):
        pruned = naive[f"metrics query (all, {label})"]
        full = naive[f"metrics query (all, {label}) no pruning"]
        lines.append(
            f"| metrics query in-process (all, {label}) | {pruned['p50']:.0f} | "
            f"{pruned['p95']:.0f} | {full['p50']:.0f} | {full['p50'] / pruned['p50']:.1f}x | - |"
        )
    for name, t in r["logs"].items():
        if name.endswith("[naive]"):
            continue
        base = r["logs"][name + " [naive]"]
        lines.append(
            f"| log search {name} | {t['p50']:.0f} | {t['p95']:.0f} | {base['p50']:.0f} | "
            f"{base['p50'] / t['p50']:.1f}x | <= 1000 |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 k rows, 50 services.")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--requests", type=int, default=50, help="Requests per API read.")
    parser.add_argument("--probes", type=int, default=10, help="Probe-to-visible samples.")
    parser.add_argument("--sse-clients", type=int, default=100)
    parser.add_argument("--sse-seconds", type=float, default=10.0)
    parser.add_argument("--dir", help="Work directory (kept); default a temporary one.")
    parser.add_argument("--json", action="store_true", help="Print the numbers as JSON too.")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.services, args.days = 200_000, 50, 2
        args.requests, args.probes, args.sse_clients, args.sse_seconds = 5, 2, 10, 2.0
    result = run(args)
    print(report(result))
    if args.json:
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
