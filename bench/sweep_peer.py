"""CPU per probe: Junction's persistent sweep vs Prometheus + blackbox_exporter, side by side.

Both probe the same 1,000 sandbox endpoints (``/_synthetic/{i}/health``, 20-200 ms,
seed 1) every ``--interval`` seconds for ``--duration`` seconds, at the same time, on the
same machine:

* ``junction``: ``integrations.sweep.ProcessSweeper`` (``--shards`` worker processes,
  clients and connections kept across sweeps, every check through ``IntegrationClient``),
  one sweep per interval, drift-free;
* ``prometheus``: Prometheus 2.42 scraping blackbox_exporter's ``/probe`` for every target
  (``scrape_interval`` = the interval, module ``http_2xx``), as blackbox_exporter's
  documentation configures it.

CPU = user + system time of every process of the arm (``/proc/<pid>/stat``) over the
measured window, after a warm-up; probes = sweeps x endpoints for Junction, the samples of
``probe_success`` Prometheus stored in the window for the peer. Also reported: Junction's
sweep wall time against the slowest endpoint (goal <= 3x) and the load average.

Run: ``.venv/bin/python bench/sweep_peer.py [--endpoints 1000] [--interval 5]
[--duration 60] [--shards 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

from bench.detection import (  # noqa: E402
    PROMETHEUS_BIN,
    Proc,
    start_blackbox,
    start_sandbox,
    wait_http,
)
from bench.sweep import make_sweeper  # noqa: E402
from deployments.local import free_port  # noqa: E402
from integrations.sweep import ProcessSweeper  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def peer_configs(work: Path, url: str, count: int, interval: float, bb_port: int) -> Path:
    """blackbox.yml and prometheus.yml for ``count`` targets; the Prometheus config path."""
    (work / "blackbox.yml").write_text(
        yaml.safe_dump(
            {
                "modules": {
                    "http_2xx": {
                        "prober": "http",
                        "timeout": f"{max(1.0, interval - 1):g}s",
                        "http": {"preferred_ip_protocol": "ip4"},
                    }
                }
            }
        )
    )
    step = f"{interval:g}s"
    prom = {
        "global": {
            "scrape_interval": step,
            "evaluation_interval": step,
            "scrape_timeout": f"{max(1.0, interval - 1):g}s",
        },
        "scrape_configs": [
            {
                "job_name": "blackbox",
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [
                    {"targets": [f"{url}/_synthetic/{i}/health" for i in range(count)]}
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": f"127.0.0.1:{bb_port}"},
                ],
            }
        ],
    }
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(prom, sort_keys=False))
    return path


async def prom_query(port: int, query: str) -> float:
    """A scalar from Prometheus (0 when empty)."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        r = await http.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query})
        result = r.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0


async def run(count: int, interval: float, duration: float, shards: int) -> dict[str, Any]:
    """Both arms side by side; the measurements."""
    from integrations.sandbox.faults import SyntheticConfig, SyntheticTable

    config = {"count": count, "latency_ms": {"min": 20, "max": 200}, "seed": 1}
    slowest = max(SyntheticTable(SyntheticConfig.model_validate(config)).delays)
    procs: list[Proc] = []
    pool: ProcessSweeper | None = None
    with tempfile.TemporaryDirectory(prefix="junction-sweep-peer-") as tmp:
        work = Path(tmp)
        try:
            sandbox, url = await start_sandbox(work)
            procs.append(sandbox)
            httpx.post(f"{url}/_admin/synthetic", json=config).raise_for_status()
            bb_port, prom_port = free_port(), free_port()
            prom_cfg = peer_configs(work, url, count, interval, bb_port)
            blackbox = await start_blackbox(work / "blackbox.yml", bb_port)
            procs.append(blackbox)
            prom = Proc(
                "prometheus",
                [
                    PROMETHEUS_BIN,
                    f"--config.file={prom_cfg}",
                    f"--storage.tsdb.path={work / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                work / "prometheus.log",
            )
            procs.append(prom)
            prom.start()
            await wait_http(f"http://127.0.0.1:{prom_port}/-/ready", prom)

            pool = ProcessSweeper(partial(make_sweeper, url, count), shards)
            await asyncio.to_thread(pool.start)
            await pool.run()  # connections open
            await asyncio.sleep(2 * interval)  # Prometheus warms up too

            peer_pids = [p.popen.pid for p in (prom, blackbox) if p.popen is not None]
            ours = [os.getpid(), *pool.pids]
            t0 = time.time()
            cpu0_peer, cpu0_ours = cpu_seconds(peer_pids), cpu_seconds(ours)
            walls: list[float] = []
            failed = 0
            start = time.monotonic()
            while (tick := start + len(walls) * interval) < start + duration:
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
                s0 = time.perf_counter()
                results = await pool.run()
                walls.append(time.perf_counter() - s0)
                failed += sum(not r.ok for r in results)
            await asyncio.sleep(max(0.0, start + duration - time.monotonic()))
            cpu_peer, cpu_ours = cpu_seconds(peer_pids) - cpu0_peer, cpu_seconds(ours) - cpu0_ours
            window = int(time.time() - t0)
            await asyncio.sleep(interval)  # the last scrapes land
            peer_probes = await prom_query(
                prom_port, f"sum(count_over_time(probe_success[{window}s] @ {t0 + window:.3f}))"
            )
            at = f"[{window}s] @ {t0 + window:.3f}"
            peer_failed = await prom_query(
                prom_port,
                f"sum(count_over_time(probe_success{at}) - sum_over_time(probe_success{at}))",
            )
            peer_duration = await prom_query(
                prom_port, f"avg(avg_over_time(probe_duration_seconds[{window}s]))"
            )
        finally:
            if pool is not None:
                pool.close()
            for proc in reversed(procs):
                proc.stop()
    ours_probes = len(walls) * count
    return {
        "endpoints": count,
        "interval_s": interval,
        "window_s": window,
        "shards": shards,
        "slowest_endpoint_s": slowest,
        "junction": {
            "sweeps": len(walls),
            "probes": ours_probes,
            "failed": failed,
            "cpu_s": cpu_ours,
            "cpu_ms_per_probe": 1000 * cpu_ours / max(1, ours_probes),
            "sweep_wall_p50_s": statistics.median(walls),
            "sweep_wall_max_s": max(walls),
        },
        "prometheus": {
            "probes": int(peer_probes),
            "failed": int(peer_failed),
            "cpu_s": cpu_peer,
            "cpu_ms_per_probe": 1000 * cpu_peer / max(1.0, peer_probes),
            "probe_duration_mean_s": peer_duration,
        },
        "load_avg": list(os.getloadavg()),
    }


def report(doc: dict[str, Any]) -> str:
    """The table and the ratios."""
    j, p = doc["junction"], doc["prometheus"]
    ratio = j["cpu_ms_per_probe"] / p["cpu_ms_per_probe"] if p["cpu_ms_per_probe"] else None
    wall = j["sweep_wall_p50_s"] / doc["slowest_endpoint_s"]
    load = ", ".join(f"{x:.1f}" for x in doc["load_avg"])
    lines = [
        f"{doc['endpoints']} endpoints every {doc['interval_s']:g} s, "
        f"{doc['window_s']} s measured side by side; slowest endpoint "
        f"{doc['slowest_endpoint_s'] * 1000:.0f} ms.",
        "",
        "| arm | probes | failed | CPU s | CPU ms / probe |",
        "|---|---|---|---|---|",
        f"| junction ({doc['shards']} processes, persistent) | {j['probes']} | {j['failed']} "
        f"| {j['cpu_s']:.1f} | {j['cpu_ms_per_probe']:.3f} |",
        f"| prometheus + blackbox_exporter | {p['probes']} | {p['failed']} "
        f"| {p['cpu_s']:.1f} | {p['cpu_ms_per_probe']:.3f} |",
        "",
        f"CPU per probe, junction / peer: {ratio:.2f}x (goal <= 2)"
        if ratio is not None
        else "peer stored no probes",
        f"junction sweep wall p50 {j['sweep_wall_p50_s'] * 1000:.0f} ms "
        f"(max {j['sweep_wall_max_s'] * 1000:.0f}) = {wall:.2f}x the slowest endpoint "
        "(goal <= 3)",
        f"mean probe duration seen by blackbox_exporter: "
        f"{p['probe_duration_mean_s'] * 1000:.0f} ms (configured mean 110 ms: the rest is the "
        "loaded host and sandbox)",
        f"load average at the end: {load}",
    ]
    return "\n".join(lines)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    if args.endpoints < 1 or args.interval <= 0 or args.duration < args.interval:
        parser.error("need endpoints >= 1, interval > 0 and duration >= interval")
    doc = asyncio.run(run(args.endpoints, args.interval, args.duration, args.shards))
    print(report(doc))


if __name__ == "__main__":
    main()
