"""The product plan's KPI table, reproduced on the sandbox: a naive baseline vs Junction.

One run, one sandbox (in its own process) with the faults of ``bench/workflows.py`` on every
service (50-300 ms, 15% transient failures: 5xx, 429 + Retry-After, resets) and, on top, a
schedule of outages (503 for 20-30 s, 30-40 s apart) alternating between the two services
the onboarding can fall back from: Webex (fallback: email) and Jira (fallback:
ServiceNow). Both arms work through the same schedule at the same time:

* **baseline**: the onboarding as a hand-written script (``bench.workflows.Naive``: one
  HTTP client, the vendor routes in sequence, no retries, no fallback) and a health check
  run by cron every 5 minutes;
* **junction**: the built-in ``employee_onboarding`` spec as the production flow
  (``flows.workflow.run_workflow``: retries, idempotent creates, provider fallback) and
  ``junction monitor --every 5s`` in its own process, reading the runs' live calls from the
  metrics store, with a webhook channel to a receiver in this process.

Each arm starts an onboarding every ``--pace`` seconds (distinct hires per arm). KPIs:

* **workflow success rate**: completed runs / runs;
* **average response time**: mean latency of the successful API calls (as the report's
  scorecard defines it: Junction's from the metrics store, the script's timed at its
  transport); also the mean wall time of completed runs and of all runs;
* **effective service uptime**: every second, each capability of the onboarding (HR,
  identity, code, message, ticket) is checked as each arm would reach it: the script's
  provider with one attempt; Junction's provider or its fallback, with the clients' retry
  policy (3 attempts); the share of capability-seconds up;
* **error detection time**: outage start -> alert delivered. Junction: the firing webhook.
  Cron: a check at a random phase every 300 s detects an outage only when it runs while
  the service is down (computed from the outage windows and the seeded phase: a 5-minute
  cron cannot be run side by side any faster).

Run: ``.venv/bin/python bench/kpi.py [--outages 4] [--pace 4] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.detection import JunctionArm, Receiver, pct, schedule  # noqa: E402
from bench.workflows import (  # noqa: E402
    FAULTS,
    SPEC,
    Admin,
    Naive,
    Sample,
    flow_sample,
    start_bench_sandbox,
)

CRON_SECONDS = 300.0
OUTAGE_SERVICES = ("webex", "jira")
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "hr": ("workday",),
    "identity": ("okta",),
    "code": ("gitlab",),
    "message": ("webex", "smtp"),
    "ticket": ("jira", "servicenow"),
}
"""Each capability of the onboarding: its provider, then its fallback."""


async def availability(stop: asyncio.Event, slots: list[dict[str, dict[str, bool]]]) -> None:
    """Once a second, every provider checked twice at once: as the script would call it
    (one attempt) and as Junction's clients do (their retry policy, 3 attempts)."""
    from junction.clients import get_client

    names = sorted({n for providers in CAPABILITIES.values() for n in providers})
    clients = {n: get_client(n, source="bench") for n in names}
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            once, retried = await asyncio.gather(
                asyncio.gather(*(c.health_check() for c in clients.values())),
                asyncio.gather(*(c.health_check(max_attempts=3) for c in clients.values())),
            )
            slots.append(
                {
                    "baseline": {r.service: r.ok for r in once},
                    "junction": {r.service: r.ok for r in retried},
                }
            )
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    finally:
        for client in clients.values():
            await client.aclose()


def uptime(slots: list[dict[str, dict[str, bool]]], arm: str, fallback: bool) -> float:
    """Share of capability-seconds up for ``arm`` (with or without the fallback provider)."""
    up = total = 0
    for slot in slots:
        seen = slot[arm]
        for providers in CAPABILITIES.values():
            used = providers if fallback else providers[:1]
            up += any(seen.get(p, False) for p in used)
            total += 1
    return up / total if total else 0.0


def cron_delays(windows: list[tuple[float, float]], origin: float, seed: int) -> list[float | None]:
    """Detection by a check every ``CRON_SECONDS`` at a seeded random phase."""
    phase = random.Random(seed).uniform(0.0, CRON_SECONDS)
    out: list[float | None] = []
    for down, up in windows:
        k = max(0, int((down - origin - phase) // CRON_SECONDS) + 1)
        tick = origin + phase + k * CRON_SECONDS
        out.append(tick - down if tick < up else None)
    return out


def junction_delays(
    windows: list[tuple[float, float]], arrivals: list[Any], end: float
) -> list[float | None]:
    """First firing webhook within each outage's interval (until the next outage)."""
    out: list[float | None] = []
    for i, (down, _) in enumerate(windows):
        nxt = windows[i + 1][0] if i + 1 < len(windows) else end
        fired = [a.at for a in arrivals if a.kind == "firing" and down <= a.at < nxt]
        out.append(min(fired) - down if fired else None)
    return out


class TimedNaive(Naive):
    """The script, with the latency of each of its API calls recorded (headers received)."""

    def __init__(self, url: str) -> None:
        import httpx

        super().__init__(url)
        self.calls: list[tuple[float, bool]] = []
        calls = self.calls

        class Timed(httpx.AsyncHTTPTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                t0 = time.perf_counter()
                try:
                    response = await super().handle_async_request(request)
                except httpx.HTTPError:
                    calls.append(((time.perf_counter() - t0) * 1000, False))
                    raise
                calls.append(((time.perf_counter() - t0) * 1000, response.status_code < 400))
                return response

        self.http = httpx.AsyncClient(timeout=10, transport=Timed())


def junction_call_latency(store_dir: str, since: float) -> float | None:
    """Mean latency of the successful API calls of Junction's runs (the metrics store)."""
    from datetime import UTC, datetime

    from junction.tail import read_since

    rows = read_since(store_dir, "calls", datetime.fromtimestamp(since, UTC))
    ok = [
        float(r["latency_ms"])
        for r in rows
        if r.get("ok") and r.get("source") not in ("probe", "bench")
    ]
    return statistics.fmean(ok) if ok else None


async def workload(
    sample: Any, workers: list[str], pace: float, stop: asyncio.Event
) -> list[Sample]:
    """One run every ``pace`` seconds (or right after a slower one) until ``stop``."""
    out: list[Sample] = []
    for wid in workers:
        if stop.is_set():
            break
        t0 = time.monotonic()
        out.append(await sample(wid))
        await asyncio.sleep(max(0.0, pace - (time.monotonic() - t0)))
    return out


async def bench(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    """Both arms through the outage schedule; the KPIs."""
    # Function-level: Prefect reads PREFECT_HOME when first imported (set by main()).
    from flows.workflow import run_workflow

    admin = Admin(url)
    workers = admin.workers()
    admin.wipe()
    admin.faults()
    receiver = Receiver()
    await receiver.start()
    monitor = JunctionArm(work, 5.0, url, ",".join(OUTAGE_SERVICES), f"{receiver.url}/junction")
    naive = TimedNaive(url)
    plan = schedule(args.outages, args.seed, (20.0, 30.0), (30.0, 40.0))
    try:
        await monitor.start()
        await asyncio.sleep(10)  # a few healthy sweeps
        receiver.arrivals.clear()

        async def junction_sample(wid: str) -> Sample:
            return await flow_sample(run_workflow, SPEC, {"worker_id": wid})

        stop = asyncio.Event()
        slots: list[dict[str, dict[str, bool]]] = []
        origin = time.time()
        naive_task = asyncio.ensure_future(workload(naive.sample, workers[0::2], args.pace, stop))
        junction_task = asyncio.ensure_future(
            workload(junction_sample, workers[1::2], args.pace, stop)
        )
        probe_task = asyncio.ensure_future(availability(stop, slots))
        windows: list[tuple[float, float]] = []
        for i, outage in enumerate(plan):
            service = OUTAGE_SERVICES[i % len(OUTAGE_SERVICES)]
            await asyncio.sleep(outage.gap)
            down = time.time()
            admin.http.post(
                f"{url}/_admin/outage/{service}",
                json={"seconds": outage.duration + 600, "mode": "503"},
            ).raise_for_status()
            await asyncio.sleep(outage.duration)
            admin.http.delete(f"{url}/_admin/outage/{service}").raise_for_status()
            windows.append((down, time.time()))
            print(f"outage {i + 1}/{len(plan)}: {service} {outage.duration:.0f}s", file=sys.stderr)
        await asyncio.sleep(10)
        end = time.time()
        stop.set()
        naive_runs, junction_runs = await naive_task, await junction_task
        await probe_task
    finally:
        monitor.stop()
        await receiver.stop()
        await naive.http.aclose()
    arms = {
        "baseline (script + 5-min cron)": (naive_runs, uptime(slots, "baseline", False)),
        "junction": (junction_runs, uptime(slots, "junction", True)),
    }
    doc: dict[str, Any] = {"arms": {}, "outages": len(windows), "load_avg": os.getloadavg()}
    detections = {
        "baseline (script + 5-min cron)": cron_delays(windows, origin, args.seed),
        "junction": junction_delays(windows, receiver.arrivals, end),
    }
    outside = [
        a
        for a in receiver.arrivals
        if a.kind == "firing" and not any(d <= a.at <= u + 15 for d, u in windows)
    ]
    doc["junction_alerts_outside_outages"] = len(outside)
    call_ms = {
        "baseline (script + 5-min cron)": statistics.fmean(ms for ms, ok in naive.calls if ok)
        if any(ok for _, ok in naive.calls)
        else None,
        "junction": junction_call_latency(os.environ["JUNCTION_STORE_DIR"], origin),
    }
    for name, (runs, up) in arms.items():
        ok = [s.latency_ms for s in runs if s.ok]
        found = [d for d in detections[name] if d is not None]
        doc["arms"][name] = {
            "runs": len(runs),
            "success_rate": sum(s.ok for s in runs) / len(runs) if runs else 0.0,
            "mean_call_ms": call_ms[name],
            "mean_ok_ms": statistics.fmean(ok) if ok else None,
            "mean_all_ms": statistics.fmean(s.latency_ms for s in runs) if runs else None,
            "uptime": up,
            "detected": len(found),
            "detect_p50_s": pct(found, 50),
            "detect_max_s": max(found) if found else None,
        }
    return doc


def _s(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(doc: dict[str, Any]) -> str:
    """The KPI table, arms side by side, with the plan's targets."""
    names = list(doc["arms"])
    a = [doc["arms"][n] for n in names]
    n = doc["outages"]

    def det(x: dict[str, Any]) -> str:
        if not x["detected"]:
            return f"none of {n} outages detected"
        return (
            f"{_s(x['detect_p50_s'], '.1f')} s p50, max {_s(x['detect_max_s'], '.1f')} s "
            f"({x['detected']} of {n} detected)"
        )

    rows = [
        ("workflow success rate (plan: 85% -> >= 92%)", [f"{x['success_rate']:.1%}" for x in a]),
        (
            "average response time, successful API calls (plan: <= 800 ms)",
            [_s(x["mean_call_ms"], ".0f") + " ms" for x in a],
        ),
        ("average run time, completed runs", [_s(x["mean_ok_ms"], ".0f") + " ms" for x in a]),
        ("average run time, all runs", [_s(x["mean_all_ms"], ".0f") + " ms" for x in a]),
        ("effective service uptime (plan: >= 99%)", [f"{x['uptime']:.2%}" for x in a]),
        ("error detection time (plan: 5-10 min -> < 1 min)", [det(x) for x in a]),
        ("runs", [str(x["runs"]) for x in a]),
    ]
    lines = [f"| KPI | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {label} | {' | '.join(vals)} |" for label, vals in rows]
    load = ", ".join(f"{x:.1f}" for x in doc["load_avg"])
    lines.append(
        f"\nJunction firing notifications outside the outages (transient faults): "
        f"{doc['junction_alerts_outside_outages']}; load average at the end: {load}"
    )
    return "\n".join(lines)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--outages", type=int, default=4)
    parser.add_argument("--pace", type=float, default=4.0, help="seconds between runs per arm")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.outages < 1 or args.pace <= 0:
        parser.error("need --outages >= 1 and --pace > 0")

    proc = start_bench_sandbox("junction-bench-kpi-")
    home = Path(os.environ["JUNCTION_HOME"]).parent
    # The monitor (its own JUNCTION_HOME) reads the runs' calls from this store.
    os.environ["JUNCTION_STORE_DIR"] = str(home / "store")
    try:
        doc = asyncio.run(bench(args, os.environ["JUNCTION_SANDBOX_URL"], home))
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
    doc["config"] = {"faults": FAULTS, "outages": args.outages, "pace_s": args.pace}
    print(json.dumps(doc, indent=2, default=str) if args.json else render(doc))


if __name__ == "__main__":
    main()
