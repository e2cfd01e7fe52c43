"""Adaptive execution benchmark: fixed concurrency/timeout settings vs adaptive, on a
sandbox service with a hidden rate limit and a latency that shifts mid-run.

The sandbox (its own process) gives Okta a hidden limit of ``--rate`` requests/s the
clients are not told about, in three models (``--limiter``): a sliding-window log with a
penalty box (rejected requests count), a token bucket (``--burst``; a rejected request is
free), and ``queueing``: the sliding log on a service that serves ``--capacity`` requests
at once and queues past it (latency x (in flight / capacity) ^ ``--contention``), the
capacity halving with the latency shift. A 429 carries ``Retry-After`` in whole seconds;
a log-normal latency of p50 20 / p95 40 ms shifts to p50 200 / p95 400 ms (10x) halfway
through each arm, through the admin API. ``--trace`` prints the adaptive gate's state
every 0.5 s; ``--only`` runs the named arms alone. Arms, in the same run, each on a
refilled limiter:

- ``fixed cN tT``: N workers calling ``GET /api/v1/groups`` as fast as they can, read
  timeout T s, the workflow retry policy (4 attempts, Retry-After honoured).
- ``adaptive``: 64 workers through the adaptive gate (:mod:`integrations.adaptive_gate`):
  adaptive timeout, AIMD concurrency, CUBIC send rate; the same retry policy.

Per arm: successful calls per second, 429 answers and timed-out attempts (counted at the
transport), failed calls. Then priorities: an incident workflow (``priority: high``, two
Okta reads in a row through the workflow runner) run 40 times alone, then beside a bulk
job in another process (``low`` priority, sharing the host-wide rate budget in SQLite),
then beside the same bulk job with no priorities and no budget; its p95 in each (the
first two models).

Goals (issue 14): adaptive >= 1.5x the throughput of the best fixed setting at <= 1/5 of
its 429s; incident p95 beside bulk <= 1.2x alone.

Run: ``.venv/bin/python bench/adaptive.py [--phase 8] [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from integrations.adaptive import AdaptiveConfig, AdaptivePolicy, priority_scope  # noqa: E402
from integrations.adaptive_gate import gates  # noqa: E402
from integrations.base import IntegrationClient  # noqa: E402
from integrations.breaker import CircuitBreaker  # noqa: E402
from integrations.catalog import load_catalog  # noqa: E402
from integrations.config import EngineConfig  # noqa: E402
from integrations.errors import IntegrationError  # noqa: E402
from integrations.retry import RetryPolicy  # noqa: E402
from integrations.sandbox.process import start_sandbox_process  # noqa: E402

SERVICE = "okta"
PATH = "/api/v1/groups"
FAST: dict[str, float] = {"p50": 20, "p95": 40}
SLOW: dict[str, float] = {"p50": 200, "p95": 400}
RETRY = RetryPolicy(max_attempts=4, backoff_base=0.1, backoff_max=2.0)
FIXED = ((2, 10.0), (8, 10.0), (32, 10.0), (8, 0.25))
"""(workers, read timeout s) of the fixed arms: engine default timeout, and one tuned to
the fast phase."""
ADAPTIVE = AdaptiveConfig(timeout_min_seconds=0.1, concurrency_max=64)
INCIDENT = {
    "name": "incident_lookup",
    "priority": "high",
    "steps": [
        {"id": "groups", "uses": "okta.list_groups", "with": {}},
        {"id": "again", "uses": "okta.list_groups", "needs": ["groups"], "with": {}},
    ],
}


class Counting(httpx.AsyncBaseTransport):
    """The real transport, counting 429 answers and timed-out attempts."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=200))
        self.throttled = 0
        self.timeouts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TimeoutException:
            self.timeouts += 1
            raise
        if response.status_code == 429:
            self.throttled += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


MODES = ("sliding_log", "token_bucket", "queueing")
"""The hidden limit's models; ``queueing`` is the sliding log on a service that queues
past a capacity that halves with the latency shift."""


def limiter_spec(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """The hidden limit of ``mode`` (``rate_limit`` of the sandbox's fault profile)."""
    if mode == "token_bucket":
        return {"requests_per_second": args.rate, "burst": args.burst}
    return {
        "requests_per_second": args.rate,
        "mode": "sliding_log",
        "window_seconds": args.window,
        "penalty_after": args.penalty_after,
        "penalty_seconds": args.penalty,
        "penalty_max_seconds": args.penalty_max,
    }


class Admin:
    """The sandbox's admin API (faults of the benchmark's service).

    Args:
        url: The sandbox.
        rate: The hidden limit, requests/s.
        limit: The limiter's spec.
        queue: ``(capacity, contention)`` of the fast phase: the service queues past the
            capacity, which halves with the latency shift (``None``: no queueing).
    """

    def __init__(
        self,
        url: str,
        rate: float,
        limit: dict[str, Any],
        queue: tuple[int, float] | None = None,
    ) -> None:
        self.url = url
        self.rate, self.limit, self.queue = rate, limit, queue
        self.http = httpx.Client(timeout=30)

    def start(self, latency: dict[str, float]) -> None:
        """Fresh bucket, the hidden limit, ``latency``."""
        self.http.post(f"{self.url}/_admin/reset").raise_for_status()
        self.latency(latency)

    def latency(self, latency: dict[str, float]) -> None:
        body: dict[str, Any] = {"latency_ms": latency, "rate_limit": self.limit}
        if self.queue is not None:
            capacity, contention = self.queue
            if latency is SLOW:  # the shift comes with a capacity drop
                capacity = max(1, capacity // 2)
            body |= {"capacity": capacity, "contention": contention}
        self.http.post(f"{self.url}/_admin/faults/{SERVICE}", json=body).raise_for_status()


@dataclass
class ArmResult:
    """One throughput arm."""

    name: str
    ok: int = 0
    failed: int = 0
    throttled: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Successful calls per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def client(url: str, transport: Counting, *, timeout: float, adaptive: bool) -> IntegrationClient:
    policy = AdaptivePolicy(ADAPTIVE) if adaptive else None
    return IntegrationClient(
        load_catalog().get(SERVICE),
        engine=EngineConfig(sandbox_url=url, adaptive=policy),
        transport=transport,
        retry=RETRY,
        breaker=CircuitBreaker(SERVICE, failure_threshold=10**9),  # measure, never trip
        timeout=timeout,
    )


async def hammer(c: IntegrationClient, workers: int, seconds: float, result: ArmResult) -> None:
    """``workers`` loops calling the service until ``seconds`` pass."""
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        while time.monotonic() < deadline:
            try:
                await c.request("GET", PATH, action="list_groups")
                result.ok += 1
            except IntegrationError as exc:
                result.failed += 1
                result.errors[exc.error_class] = result.errors.get(exc.error_class, 0) + 1

    await asyncio.gather(*(loop() for _ in range(workers)))


async def trace(result: ArmResult, transport: Counting, seconds: float, every: float = 0.5) -> None:
    """Print the gate's state every ``every`` seconds to stderr (``--trace``)."""
    started = time.monotonic()
    ok, throttled = 0, 0
    while (t := time.monotonic() - started) < seconds + 1:
        await asyncio.sleep(every)
        found = [g for g in gates.all() if g.service == SERVICE]
        state = ""
        if found:
            g = found[0]
            held = max(0.0, g.held_until - time.monotonic())
            rate = f"{g.rate.rate:5.1f}" if g.rate.rate is not None else "  -  "
            state = (
                f"limit {g.limit.limit:5.1f} in_flight {g.limit.in_flight:3d} rate {rate} "
                f"rtt {g.limit.rtt * 1000:5.0f}ms held {held:4.2f}s holds {g.holds:3d}"
            )
        print(
            f"  t {t:5.1f}s ok/s {(result.ok - ok) / every:5.1f} "
            f"429/s {(transport.throttled - throttled) / every:5.1f} {state}",
            file=sys.stderr,
        )
        ok, throttled = result.ok, transport.throttled


async def throughput_arm(
    admin: Admin,
    name: str,
    workers: int,
    timeout: float,
    adaptive: bool,
    phase: float,
    *,
    traced: bool = False,
) -> ArmResult:
    gates.clear()
    admin.start(FAST)
    transport = Counting()
    result = ArmResult(name)
    started = time.monotonic()

    async def shift() -> None:
        await asyncio.sleep(phase)
        await asyncio.to_thread(admin.latency, SLOW)

    async with client(admin.url, transport, timeout=timeout, adaptive=adaptive) as c:
        tracer = asyncio.create_task(trace(result, transport, 2 * phase)) if traced else None
        await asyncio.gather(hammer(c, workers, 2 * phase, result), shift())
        if tracer is not None:
            tracer.cancel()
    result.seconds = time.monotonic() - started
    result.throttled, result.timeouts = transport.throttled, transport.timeouts
    return result


# --- priorities -----------------------------------------------------------------------------


def bulk_child(
    url: str, budget: str | None, seconds: float, priority: str, rate: float
) -> subprocess.Popen[str]:
    """The bulk job, in its own process (what shares the budget is the SQLite file)."""
    args = [sys.executable, __file__, "--bulk-child", url, budget or "-", str(seconds), priority]
    args.append(str(rate))
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)


async def bulk_main(url: str, budget: str, seconds: float, priority: str, rate: float) -> None:
    policy = AdaptivePolicy(
        ADAPTIVE,
        budget_path=None if budget == "-" else budget,
        budgets=() if budget == "-" else ((SERVICE, rate, max(1.0, rate / 4)),),
    )
    transport = Counting()
    result = ArmResult("bulk")
    c = IntegrationClient(
        load_catalog().get(SERVICE),
        engine=EngineConfig(sandbox_url=url, adaptive=policy),
        transport=transport,
        retry=RETRY,
        breaker=CircuitBreaker(SERVICE, failure_threshold=10**9),
    )
    with priority_scope(priority):  # type: ignore[arg-type]
        async with c:
            await hammer(c, 64, seconds, result)
    print(json.dumps({"ok": result.ok, "throttled": transport.throttled}))


async def incident_runs(url: str, runs: int, budget: str | None, rate: float) -> list[float]:
    """Durations (ms) of ``runs`` incident workflow runs in a row."""
    # Function-level: the throughput arms and the bulk child do not need the core.
    import yaml

    from junction.settings import Settings
    from junction.workflows.runner import WorkflowRunner
    from junction.workflows.runtime import Runtime
    from junction.workflows.validate import validate_text

    gates.clear()
    spec = validate_text(yaml.safe_dump(INCIDENT), source="incident").spec
    assert spec is not None
    settings = Settings(
        sandbox_url=url,
        rate_budgets=f"{SERVICE}={rate}/{max(1.0, rate / 4)}" if budget else "",
        rate_budget_file=Path(budget) if budget else None,
        adaptive_timeout_min_seconds=ADAPTIVE.timeout_min_seconds,
    )
    out: list[float] = []
    async with Runtime(settings, client_options={"retry": RETRY}, cache=False) as rt:
        runner = WorkflowRunner(spec, rt)
        for _ in range(runs):
            result = await runner.run({})
            out.append(result.duration_ms if result.ok else float("nan"))
            await asyncio.sleep(0.05)
    return out


def p95(values: list[float]) -> float:
    good = sorted(v for v in values if v == v)
    if not good:
        return float("nan")
    return good[min(len(good) - 1, max(0, round(0.95 * len(good)) - 1))]


async def priorities(admin: Admin, runs: int, home: Path) -> dict[str, Any]:
    admin.start(FAST)
    alone = await incident_runs(admin.url, runs, None, admin.rate)
    out: dict[str, Any] = {"alone": alone}
    for label, budget, priority in (
        ("beside bulk, priorities + shared budget", str(home / "budget.sqlite"), "low"),
        ("beside bulk, no priorities, no budget", None, "normal"),
    ):
        admin.start(FAST)
        child = bulk_child(admin.url, budget, 9999, priority, admin.rate)
        await asyncio.sleep(3.0)  # the bulk job reaches its steady state
        try:
            out[label] = await incident_runs(admin.url, runs, budget, admin.rate)
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=30)
    return out


def describe_limit(args: argparse.Namespace, mode: str) -> str:
    """One line naming the hidden limit."""
    if mode == "token_bucket":
        return f"token bucket {args.rate:g}/s (burst {args.burst}; a 429 costs nothing)"
    if mode == "queueing":
        return (
            f"sliding-window log {args.rate:g}/s + penalty box as above, on a service that "
            f"serves {args.capacity} at once, then {max(1, args.capacity // 2)} after the "
            f"shift; past it latency x (in flight / capacity)^{args.contention:g}"
        )
    return (
        f"sliding-window log {args.rate:g}/s over {args.window:g} s (429s count), penalty box "
        f"after {args.penalty_after} 429s in a window: {args.penalty:g} s, doubling while "
        f"hammered, up to {args.penalty_max:g} s"
    )


def render(arms: list[ArmResult], prio: dict[str, Any], args: argparse.Namespace, mode: str) -> str:
    best = max((a for a in arms if a.name != "adaptive"), key=lambda a: a.throughput)
    adaptive = next(a for a in arms if a.name == "adaptive")
    lines = [
        f"Hidden limit: {describe_limit(args, mode)}; latency p50 20 -> 200 ms after "
        f"{args.phase:g} s; {2 * args.phase:g} s per arm.",
        "",
        "arm              | ok/s  | 429s | timeouts | failed calls | vs best fixed",
        "---------------- | ----- | ---- | -------- | ------------ | -------------",
    ]
    for a in arms:
        lines.append(
            f"{a.name:<16} | {a.throughput:5.1f} | {a.throttled:4d} | {a.timeouts:8d} | "
            f"{a.failed:12d} | {a.throughput / best.throughput if best.throughput else 0:.2f}x"
        )
    ratio = adaptive.throughput / best.throughput if best.throughput else 0.0
    share = adaptive.throttled / best.throttled if best.throttled else 0.0
    lines += [
        "",
        f"adaptive vs best fixed ({best.name}): {ratio:.2f}x throughput (goal >= 1.5x), "
        f"{share:.2f} of its 429s (goal <= 0.20); ceiling {args.rate:g} / "
        f"{best.throughput:.1f} = {args.rate / best.throughput if best.throughput else 0:.2f}x",
    ]
    if not prio:
        return "\n".join(lines)
    lines += [
        "",
        "incident workflow (2 reads, priority high) | runs | p50 ms | p95 ms | p95 / alone",
        "------------------------------------------ | ---- | ------ | ------ | -----------",
    ]
    alone = p95(prio["alone"])
    for label, values in prio.items():
        good = [v for v in values if v == v]
        med = statistics.median(good) if good else float("nan")
        lines.append(
            f"{label:<42} | {len(good):4d} | {med:6.0f} | {p95(values):6.0f} | "
            f"{p95(values) / alone:.2f}x"
        )
    lines.append("(goal: beside bulk with priorities <= 1.2x alone)")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bulk-child":
        url, budget, seconds, priority, rate = sys.argv[2:7]
        asyncio.run(bulk_main(url, budget, float(seconds), priority, float(rate)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", type=float, default=8.0, help="Seconds per latency phase.")
    parser.add_argument("--rate", type=float, default=40.0, help="Hidden limit, requests/s.")
    parser.add_argument("--burst", type=int, default=10, help="Hidden bucket size.")
    parser.add_argument(
        "--limiter",
        choices=("all", "both", *MODES),
        default="all",
        help="The hidden limit's model (both: the sliding log, then the bucket; all: and "
        "then the queueing service).",
    )
    parser.add_argument(
        "--capacity", type=int, default=8, help="queueing: requests served at once, fast phase."
    )
    parser.add_argument(
        "--contention", type=float, default=2.0, help="queueing: latency exponent past it."
    )
    parser.add_argument("--window", type=float, default=1.0, help="Sliding log window, s.")
    parser.add_argument("--penalty-after", type=int, default=10, help="429s that box.")
    parser.add_argument("--penalty", type=float, default=1.0, help="First penalty box, s.")
    parser.add_argument("--penalty-max", type=float, default=30.0, help="Longest box, s.")
    parser.add_argument("--runs", type=int, default=40, help="Incident runs per case.")
    parser.add_argument("--quick", action="store_true", help="4 s phases, 15 incident runs.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of tables.")
    parser.add_argument(
        "--trace", action="store_true", help="Print the adaptive gate's state every 0.5 s."
    )
    parser.add_argument(
        "--only", default="", help="Comma-separated arms to run (e.g. adaptive,c8); no incidents."
    )
    args = parser.parse_args()
    if args.quick:
        args.phase, args.runs = min(args.phase, 4.0), min(args.runs, 15)

    from deployments.local import free_port  # function-level: only the parent needs it

    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="junction-bench-adaptive-"))
    os.environ["JUNCTION_HOME"] = str(home)
    proc = start_sandbox_process(port, smtp_port=free_port())
    modes = {"all": MODES, "both": MODES[:2]}.get(args.limiter, (args.limiter,))
    results: dict[str, tuple[list[ArmResult], dict[str, Any]]] = {}
    try:
        for mode in modes:
            queue = (args.capacity, args.contention) if mode == "queueing" else None
            spec = limiter_spec(args, "sliding_log" if mode == "queueing" else mode)
            admin = Admin(f"http://127.0.0.1:{port}", args.rate, spec, queue)

            async def run(admin: Admin, mode: str) -> tuple[list[ArmResult], dict[str, Any]]:
                only = {a for a in args.only.split(",") if a}
                arms = []
                for workers, timeout in FIXED:
                    name = f"fixed c{workers} t{timeout:g}"
                    if only and f"c{workers}" not in only and name not in only:
                        continue
                    arms.append(
                        await throughput_arm(admin, name, workers, timeout, False, args.phase)
                    )
                    print(f"{name}: {arms[-1]}", file=sys.stderr)
                if not only or "adaptive" in only:
                    arms.append(
                        await throughput_arm(
                            admin, "adaptive", 64, 10.0, True, args.phase, traced=args.trace
                        )
                    )
                    print(f"adaptive: {arms[-1]}", file=sys.stderr)
                if only or mode == "queueing":  # the incident runs: the first two models
                    return arms, {}
                return arms, await priorities(admin, args.runs, home)

            results[mode] = asyncio.run(run(admin, mode))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    load = os.getloadavg()
    if args.json:
        out = {
            mode: {"arms": [a.__dict__ for a in arms], "incident": prio}
            for mode, (arms, prio) in results.items()
        }
        print(json.dumps({"load": load, **out}, indent=2))
        return
    if args.only:
        for mode, (arms, _) in results.items():
            for a in arms:
                print(
                    f"{mode} {a.name}: {a.throughput:.1f} ok/s, {a.throttled} 429s, "
                    f"{a.timeouts} timeouts, {a.failed} failed"
                )
        return
    for mode, (arms, prio) in results.items():
        print(render(arms, prio, args, mode), end="\n\n")
    print(f"load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


if __name__ == "__main__":
    main()
