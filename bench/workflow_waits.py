"""Where a workflow run's time goes under injected faults: every attempt, every wait.

``--runs`` onboardings through the production flow (``flows.workflow.run_workflow``, as
the ``junction`` arm of ``bench/workflows.py``) on the sandbox with that bench's fault mix
(15% transient failures: 7% 5xx, 4% 429 + ``Retry-After: 1``, 4% resets; 50-300 ms per
answer), one at a time, per retry-policy arm taking turns hire by hire:

- ``full-jitter``: the workflow runtime's policy from the settings (what ships);
- ``added-jitter``: the policy before, ``base * 2**(n-1) + U(0, base)``, same settings;
- ``no-backoff``: 5xx and resets retried at once (``Retry-After`` still honoured): the
  floor that no backoff can beat.

Every integration attempt is recorded (step, service, action, start, end, outcome), with
the gate's wait before it goes on the wire and every retry wait the policy chose. Per run,
the critical path (the chain of steps that ended last, each after the dependency that
ended last) is split into time on the wire, retry waits (``Retry-After`` honoured vs
backoff), step-level retry sleeps, gate waits and the rest (task runs, templating); the
report gives the arms' p50 / mean runs and the median run's breakdown.

Run: ``.venv/bin/python bench/workflow_waits.py [--runs 30] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workflows import (  # noqa: E402
    SPEC,
    AddedJitterPolicy,
    Admin,
    alternate,
    flow_sample,
    retry_policy_arm,
    start_bench_sandbox,
    workflow_policies,
)
from integrations.adaptive_gate import AdaptiveGate  # noqa: E402
from integrations.base import IntegrationClient  # noqa: E402
from integrations.errors import APIStatusError  # noqa: E402
from integrations.retry import RetryPolicy  # noqa: E402
from junction.workflows.runtime import current_step  # noqa: E402
from junction.workflows.validate import load_workflow  # noqa: E402


@dataclass
class Attempt:
    """One integration attempt."""

    step: str | None
    service: str
    action: str
    queued: float  # entered the engine's send
    sent: float  # on the wire (after the gate's waits)
    ended: float
    outcome: str  # "ok", the status code, or the exception class


@dataclass
class Wait:
    """One retry wait the policy chose."""

    step: str | None
    at: float
    seconds: float
    retry_after: bool


@dataclass
class Trace:
    """Everything recorded while a run was going."""

    attempts: list[Attempt] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)


TRACE = Trace()


def instrument() -> None:
    """Record every attempt and retry wait into :data:`TRACE` (this process only)."""
    send_once = IntegrationClient._send_once
    gate_send = AdaptiveGate.send
    wire: dict[int, float] = {}  # id(task) -> when its attempt went on the wire

    async def traced_send(self: IntegrationClient, *args: Any) -> Any:
        queued = time.perf_counter()
        task = id(asyncio.current_task())
        wire.pop(task, None)
        outcome = "ok"
        try:
            return await send_once(self, *args)
        except APIStatusError as exc:
            outcome = str(exc.status_code)
            raise
        except Exception as exc:
            outcome = type(exc).__name__
            raise
        finally:
            ended = time.perf_counter()
            TRACE.attempts.append(
                Attempt(
                    current_step.get(),
                    self.name,
                    str(args[3]),  # the action
                    queued,
                    wire.pop(task, queued),
                    ended,
                    outcome,
                )
            )

    async def traced_gate(
        self: AdaptiveGate,
        action: str,
        configured: float | None,
        attempt: Callable[[float], Awaitable[Any]],
    ) -> Any:
        async def on_wire(timeout: float) -> Any:
            wire[id(asyncio.current_task())] = time.perf_counter()
            return await attempt(timeout)

        return await gate_send(self, action, configured, on_wire)

    def traced(wait_seconds: Callable[[Any, BaseException | None, int], float]) -> Any:
        def traced_wait(self: RetryPolicy, exc: BaseException | None, attempt: int) -> float:
            seconds = wait_seconds(self, exc, attempt)
            hinted = getattr(exc, "retry_after", None) is not None
            TRACE.waits.append(Wait(current_step.get(), time.perf_counter(), seconds, hinted))
            return seconds

        return traced_wait

    IntegrationClient._send_once = traced_send  # type: ignore[method-assign,assignment]
    AdaptiveGate.send = traced_gate  # type: ignore[method-assign]
    for policy in (RetryPolicy, AddedJitterPolicy):
        policy.wait_seconds = traced(policy.wait_seconds)  # type: ignore[method-assign]


def critical_chain(steps: list[dict[str, Any]], deps: dict[str, set[str]]) -> list[str]:
    """The steps that set the run's end: the last to end, then the dependency of each that
    ended last."""
    end: dict[str, float] = {}
    for s in steps:
        if s.get("started_at"):
            start = datetime.fromisoformat(s["started_at"]).timestamp()
            end[s["step_id"]] = start + s["duration_ms"] / 1000
    if not end:
        return []
    chain = [max(end, key=lambda k: end[k])]
    while True:
        before = [d for d in deps.get(chain[-1], set()) if d in end]
        if not before:
            return chain[::-1]
        chain.append(max(before, key=lambda k: end[k]))


def breakdown(
    steps: list[dict[str, Any]],
    deps: dict[str, set[str]],
    attempts: list[Attempt],
    waits: list[Wait],
    step_delay: float,
) -> dict[str, Any]:
    """One run: counts over all its attempts, the critical chain's time by kind (ms)."""
    chain = critical_chain(steps, deps)
    on = set(chain)
    by_id = {s["step_id"]: s for s in steps}
    failed = [a for a in attempts if a.outcome != "ok"]
    step_sleeps = {
        sid: sum(step_delay * 2**k for k in range(max(0, s["attempts"] - 1)))
        for sid, s in by_id.items()
    }
    wire = sum(a.ended - a.sent for a in attempts if a.step in on) * 1000
    gate = sum(a.sent - a.queued for a in attempts if a.step in on) * 1000
    hinted = sum(w.seconds for w in waits if w.step in on and w.retry_after) * 1000
    backoff = sum(w.seconds for w in waits if w.step in on and not w.retry_after) * 1000
    sleeps = sum(step_sleeps.get(sid, 0.0) for sid in chain) * 1000
    total = sum(by_id[sid]["duration_ms"] for sid in chain)
    return {
        "chain": chain,
        "chain_ms": total,
        "wire_ms": wire,
        "retry_after_ms": hinted,
        "backoff_ms": backoff,
        "step_retry_ms": sleeps,
        "gate_ms": gate,
        "rest_ms": total - wire - hinted - backoff - sleeps - gate,
        "attempts": len(attempts),
        "failed": {k: sum(a.outcome == k for a in failed) for k in {a.outcome for a in failed}},
        "timeline": [
            (
                a.step,
                a.action,
                round((a.sent - a.queued) * 1000),
                round((a.ended - a.sent) * 1000),
                a.outcome,
            )
            for a in attempts
        ],
        "wait_list": [(w.step, round(w.seconds * 1000), w.retry_after) for w in waits],
        "steps": {s["step_id"]: (s["started_at"], s["duration_ms"], s["attempts"]) for s in steps},
        "waits": len(waits),
        "step_retries": sum(max(0, s["attempts"] - 1) for s in steps),
    }


async def run(args: argparse.Namespace, admin: Admin) -> dict[str, Any]:
    # Function-level: Prefect reads its settings when first imported (after the env is set).
    from flows.workflow import prefect_clients, run_workflow
    from junction.settings import get_settings

    settings = get_settings()
    policies = workflow_policies(settings)
    # the floor any backoff could reach: retry 5xx and resets at once (Retry-After kept)
    policies["no-backoff"] = replace(policies["full-jitter"], backoff_base=0.0, throttle_base=0.0)
    spec = load_workflow(SPEC)
    deps = {k: set(v) for k, v in spec.dependencies().items()}
    delays = {s.retry_delay for s in spec.steps if s.retry_delay is not None}
    step_delay = delays.pop() if len(delays) == 1 else 0.5  # the runner's default
    workers = admin.workers()
    rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in policies}

    def arm(name: str, policy: RetryPolicy) -> Callable[[str], Awaitable[Any]]:
        async def sample(wid: str) -> Any:
            n_att, n_wait = len(TRACE.attempts), len(TRACE.waits)
            s = await flow_sample(run_workflow, SPEC, {"worker_id": wid})
            row = breakdown(
                s.raw_steps, deps, TRACE.attempts[n_att:], TRACE.waits[n_wait:], step_delay
            )
            rows[name].append({"ok": s.ok, "wall_ms": s.latency_ms, "inner_ms": s.inner_ms} | row)
            return s

        return retry_policy_arm(sample, policy, settings)

    admin.faults()
    async with prefect_clients():
        await flow_sample(run_workflow, SPEC, {"worker_id": workers[-1]})  # warm-up
        await alternate({k: arm(k, p) for k, p in policies.items()}, workers, args.runs, admin)
    admin.clear_faults()
    return {"runs": rows, "load": os.getloadavg()}


def render(result: dict[str, Any]) -> str:
    """The report table."""
    keys = ("wire_ms", "retry_after_ms", "backoff_ms", "step_retry_ms", "gate_ms", "rest_ms")
    lines = [
        "arm          | ok   | p50 wall | p50 in-flow | mean in-flow | median run's chain: "
        + " / ".join(k.removesuffix("_ms") for k in keys)
        + " (ms) | attempts, failed, waits per run (mean)",
    ]
    for arm, rows in result["runs"].items():
        inner = sorted(rows, key=lambda r: r["inner_ms"] or 0.0)
        mid = inner[len(inner) // 2]
        parts = " / ".join(f"{mid[k]:.0f}" for k in keys)
        lines.append(
            f"{arm:<12} | {sum(r['ok'] for r in rows)}/{len(rows)} | "
            f"{statistics.median(r['wall_ms'] for r in rows):8.0f} | "
            f"{statistics.median(r['inner_ms'] or 0 for r in rows):11.0f} | "
            f"{statistics.fmean(r['inner_ms'] or 0 for r in rows):12.0f} | {parts} | "
            f"{statistics.fmean(r['attempts'] for r in rows):.1f}, "
            f"{statistics.fmean(sum(r['failed'].values()) for r in rows):.1f}, "
            f"{statistics.fmean(r['waits'] for r in rows):.1f}"
        )
        means = " / ".join(f"{statistics.fmean(r[k] for r in rows):.0f}" for k in keys)
        lines.append(f"{'':<12}   mean chain: {means}; median chain: {' -> '.join(mid['chain'])}")
    load = result["load"]
    lines.append(f"load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="Runs per arm.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args()
    proc = start_bench_sandbox()
    try:
        instrument()
        result = asyncio.run(run(args, Admin(os.environ["JUNCTION_SANDBOX_URL"])))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    print(json.dumps(result, indent=2, default=str) if args.json else render(result))


if __name__ == "__main__":
    main()
