"""Monitoring as a Prefect deployment: a 30 s schedule against one long run a 5 s tick.

Issue 13 asks to measure the choice behind ``monitor-continuous``. Both arms run on one
real ``prefect server`` (SQLite, scheduler on, UI off) with a process worker and the
sandbox, one after the other, each for the same span:

* ``schedule-30s``: ``monitor-integrations`` (one sweep per run) on its 30 s interval
  schedule, as the project shipped it before: every run is a new Python process.
* ``continuous-5s``: one ``monitor-continuous`` run sweeping every 5 s (what its hourly
  schedule starts; the next hourly run would take over).

Per arm: flow runs started (each a process start), CPU seconds of the worker's process
tree (flow-run processes included) and of the Prefect server's, both per minute of the
span, runs left late or scheduled, and detection: ``okta`` is taken down (503s) N times;
the time from the outage's start to the *firing* notification at a webhook receiver in
this process, and from recovery to *resolved*. Every service of the catalog is
monitored, as a default install does.

    .venv/bin/python -m bench.monitor_schedule [--span 300] [--outages 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.detection import Receiver, down_only_alerting  # noqa: E402
from deployments.local import (  # noqa: E402
    PrefectServer,
    RetryOn503,
    Worker,
    deploy_all,
    ensure_work_pool,
)
from integrations.sandbox.app import SandboxServer  # noqa: E402

ARMS = ("schedule-30s", "continuous-5s")
SERVICE = "okta"


@dataclass
class ArmResult:
    """What one arm cost and how fast it saw the outages."""

    arm: str
    span_s: float
    runs_started: int
    runs_late: int
    worker_cpu_s: float
    server_cpu_s: float
    load_avg: float
    detect_s: list[float] = field(default_factory=list)
    recover_s: list[float] = field(default_factory=list)
    missed: int = 0

    def row(self) -> dict[str, Any]:
        """The table's row."""
        minutes = self.span_s / 60.0
        return {
            "arm": self.arm,
            "runs started in span": self.runs_started,
            # One run an hour by design (run_seconds=3600; the next hourly run takes over).
            "process starts / h": (
                1 if self.arm == "continuous-5s" else round(self.runs_started / self.span_s * 3600)
            ),
            "worker CPU s / min": round(self.worker_cpu_s / minutes, 2),
            "server CPU s / min": round(self.server_cpu_s / minutes, 2),
            "late runs": self.runs_late,
            "detect p50 s": _fmt(_median(self.detect_s)),
            "detect max s": _fmt(max(self.detect_s) if self.detect_s else None),
            "recovered p50 s": _fmt(_median(self.recover_s)),
            "missed": self.missed,
            "load": round(self.load_avg, 1),
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


class TreeCpu:
    """CPU seconds of process trees, sampled every ``every`` seconds on a thread.

    A process's CPU time is read while it lives; the last reading of a process that exits
    between samples is kept, so at most ``every`` seconds of each short process are lost.
    """

    def __init__(self, roots: dict[str, int], every: float = 0.5) -> None:
        self.roots = roots
        self.every = every
        self.seen: dict[str, dict[int, float]] = {name: {} for name in roots}
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for name, pid in self.roots.items():
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in procs:
                try:
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                self.seen[name][proc.pid] = times.user + times.system
        self.loads.append(os.getloadavg()[0])

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def total(self, name: str) -> float:
        """CPU seconds of every process seen in ``name``'s tree so far."""
        return sum(self.seen[name].values())

    def __enter__(self) -> TreeCpu:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _deployment(api: httpx.Client, name: str) -> dict[str, Any]:
    response = api.get(f"/deployments/name/{name}/{name}")
    response.raise_for_status()
    return dict(response.json())


def _set_schedules(api: httpx.Client, deployment: dict[str, Any], active: bool) -> None:
    for schedule in deployment["schedules"]:
        api.patch(
            f"/deployments/{deployment['id']}/schedules/{schedule['id']}",
            json={"active": active},
        ).raise_for_status()


def _runs(api: httpx.Client, deployment_id: str) -> list[dict[str, Any]]:
    response = api.post(
        "/flow_runs/filter",
        json={"deployments": {"id": {"any_": [deployment_id]}}, "limit": 200},
    )
    response.raise_for_status()
    return list(response.json())


def _cancel_all(api: httpx.Client, deployment_id: str) -> None:
    for run in _runs(api, deployment_id):
        if (run.get("state") or {}).get("type") in ("SCHEDULED", "PENDING", "RUNNING", "LATE"):
            api.post(
                f"/flow_runs/{run['id']}/set_state",
                json={"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True},
            )


async def run_arm(
    arm: str,
    server: PrefectServer,
    api: httpx.Client,
    sandbox: SandboxServer,
    receiver: Receiver,
    work: Path,
    opts: argparse.Namespace,
) -> ArmResult:
    """Run one arm for ``opts.span`` seconds and measure it."""
    home = work / arm
    home.mkdir(parents=True)
    cfg = home / "alerting.yaml"
    cfg.write_text(yaml.safe_dump(down_only_alerting(f"{receiver.url}/{arm}"), sort_keys=False))
    env = {
        **server.env,
        "JUNCTION_HOME": str(home / "home"),
        "JUNCTION_SANDBOX_URL": sandbox.url,
        "JUNCTION_SANDBOX_SMTP_PORT": str(sandbox.smtp_port),
        "JUNCTION_ALERTING_FILE": str(cfg),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    name = "monitor-integrations" if arm == "schedule-30s" else "monitor-continuous"
    deployment = _deployment(api, name)
    with Worker(env=env, log_path=home / "worker.log") as worker:
        assert worker._proc is not None
        roots = {"worker": worker._proc.pid, "server": server._proc.pid}  # type: ignore[union-attr]
        if arm == "schedule-30s":
            _set_schedules(api, deployment, True)
            # Runs now, not at the scheduler service's next loop (every 60 s).
            api.post(f"/deployments/{deployment['id']}/schedule", json={}).raise_for_status()
        else:
            run_seconds = opts.warmup + opts.span + 120
            api.post(
                f"/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": {"run_seconds": run_seconds}},
            ).raise_for_status()
        await asyncio.sleep(opts.warmup)  # first process start and first sweeps
        receiver.arrivals.clear()
        before = {r["id"] for r in _runs(api, deployment["id"]) if r.get("start_time")}
        with TreeCpu(roots) as cpu:
            started = time.monotonic()
            base = {k: cpu.total(k) for k in roots}
            windows: list[tuple[float, float]] = []
            gap = (opts.span - opts.outages * opts.down) / opts.outages
            for _ in range(opts.outages):
                await asyncio.sleep(gap / 2)
                down_at = time.time()
                sandbox_post(sandbox, {"seconds": opts.down, "mode": "503"})
                await asyncio.sleep(opts.down)
                windows.append((down_at, down_at + opts.down))
                await asyncio.sleep(gap / 2)
            span = time.monotonic() - started
            worker_cpu = cpu.total("worker") - base["worker"]
            server_cpu = cpu.total("server") - base["server"]
        runs = _runs(api, deployment["id"])
        started_runs = {r["id"] for r in runs if r.get("start_time")} - before
        late = sum(1 for r in runs if (r.get("state") or {}).get("name") == "Late")
        _set_schedules(api, deployment, False)
        _cancel_all(api, deployment["id"])
    result = ArmResult(
        arm=arm,
        span_s=span,
        runs_started=len(started_runs),
        runs_late=late,
        worker_cpu_s=worker_cpu,
        server_cpu_s=server_cpu,
        load_avg=statistics.fmean(cpu.loads) if cpu.loads else 0.0,
    )
    mine = [a for a in receiver.arrivals if a.arm == arm]
    for down_at, up_at in windows:
        fired = [a.at for a in mine if a.kind == "firing" and down_at <= a.at]
        if not fired:
            result.missed += 1
            continue
        result.detect_s.append(min(fired) - down_at)
        resolved = [a.at for a in mine if a.kind == "resolved" and a.at >= up_at]
        if resolved:
            result.recover_s.append(min(resolved) - up_at)
    return result


def sandbox_post(sandbox: SandboxServer, body: dict[str, Any]) -> None:
    """Take ``SERVICE`` down at the sandbox for ``body['seconds']``."""
    httpx.post(f"{sandbox.url}/_admin/outage/{SERVICE}", json=body, timeout=10).raise_for_status()


async def bench(opts: argparse.Namespace) -> list[ArmResult]:
    """Start the server, the sandbox and the receiver; run both arms; return the results."""
    receiver = Receiver()
    await receiver.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="junction-monsched-") as tmp,
            SandboxServer(port=0, smtp_port=0) as sandbox,
            PrefectServer(ui=False) as server,
        ):
            ensure_work_pool(env=server.env)
            deploy_all(env=server.env)
            with httpx.Client(base_url=server.api_url, timeout=30, transport=RetryOn503()) as api:
                for name in ("monitor-integrations", "monitor-continuous"):
                    _set_schedules(api, _deployment(api, name), False)
                results = []
                for arm in opts.arms:
                    print(f"arm {arm}: {opts.warmup:.0f} s warm-up, {opts.span:.0f} s", flush=True)
                    results.append(
                        await run_arm(arm, server, api, sandbox, receiver, Path(tmp), opts)
                    )
                return results
    finally:
        await receiver.stop()


def table(results: list[ArmResult]) -> str:
    """A markdown table, with the ratios against the continuous arm."""
    rows = [r.row() for r in results]
    by = {r.arm: r for r in results}
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows]
    a, b = by.get("schedule-30s"), by.get("continuous-5s")
    if a and b and b.worker_cpu_s > 0:
        lines.append("")
        lines.append(
            f"schedule-30s / continuous-5s: worker CPU {a.worker_cpu_s / b.worker_cpu_s:.1f}x, "
            f"server CPU {a.server_cpu_s / max(b.server_cpu_s, 1e-9):.1f}x, detection p50 "
            f"{(_median(a.detect_s) or 0) / max(_median(b.detect_s) or 1e-9, 1e-9):.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print its table (``--json`` for machine-readable rows)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--span", type=float, default=300.0, help="measured seconds per arm")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before measuring")
    parser.add_argument("--outages", type=int, default=3)
    parser.add_argument("--down", type=float, default=40.0, help="seconds each outage lasts")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)
    if opts.outages * opts.down >= opts.span:
        parser.error("--outages x --down must be shorter than --span")
    results = asyncio.run(bench(opts))
    if opts.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
