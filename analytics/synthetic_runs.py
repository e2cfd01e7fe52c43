"""Synthetic runs of the built-in workflow specs whose failures follow the services' health.

:func:`generate_spec_runs` adds to a synthetic history (:func:`analytics.synthetic.
generate_history`, whose :class:`~analytics.synthetic.GroundTruth` names every incident)
what the workflow runner records for real runs: one ``workflow_runs`` row per run (with its
``run_id``) and one ``calls`` row per integration call (``source = workflow``, ``run_id`` =
the run). Each run walks its spec's steps in order; a step with a ``when`` is skipped part
of the time; each step tries its alternatives (the first provider, then the fallbacks)
with ``retries + 1`` attempts each, and every attempt is a call that fails with the
service's probability *at that moment*: its base error rate, or its incident's failure rate
while an incident is on (as 503s, client timeouts or, for a share, an open breaker). A step
fails when every attempt of every alternative failed, and the run fails at its first failed
step. So runs fail when (and only as much as) the services they call are failing then,
modulo retries and fallbacks, which is what the success model has to learn.

Services a spec calls that the history does not have get a default profile (healthy, no
incidents). Deterministic for a given ``seed``.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from analytics.intelligence.features import StepPlan, spec_plan
from analytics.synthetic import GroundTruth, _write_partitions, generate_history
from junction.store import TABLES
from junction.workflows.builtins import builtin_specs
from junction.workflows.spec import WorkflowSpec
from junction.workflows.validate import load_workflow

__all__ = ["SKIP_CONDITIONAL", "generate_spec_history", "generate_spec_runs", "spec_services"]

SKIP_CONDITIONAL = 0.4
"""Share of runs in which a step with a ``when`` is skipped."""

_DEFAULT_LATENCY_MS = 200.0
_DEFAULT_ERROR_RATE = 0.004
_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ERRORS = {
    "server": ("ServerError", "503 Service Unavailable", 503),
    "timeout": ("APITimeoutError", "timed out after 10.0 s", None),
    "breaker": ("CircuitOpenError", "circuit open", None),
    "base": ("ServerError", "502 Bad Gateway", 502),
}


def spec_services(specs: Mapping[str, WorkflowSpec] | None = None) -> list[str]:
    """Every service the (built-in) specs may call, sorted."""
    specs = specs if specs is not None else _builtin()
    return sorted(
        {svc for spec in specs.values() for st in spec_plan(spec) for svc, _ in st.alternatives}
    )


def _builtin() -> dict[str, WorkflowSpec]:
    return {name: load_workflow(path) for name, path in builtin_specs().items()}


def _us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


class _Health:
    """A service's failure probability and failure kind at any instant."""

    def __init__(self, truth: GroundTruth) -> None:
        self.profiles = {p.name: p for p in truth.services}
        self.incidents: dict[str, list[tuple[int, int, float, str]]] = {}
        for inc in truth.incidents:
            self.incidents.setdefault(inc.service, []).append(
                (_us(inc.start), _us(inc.end), inc.failure_rate, inc.mode)
            )
        for spans in self.incidents.values():
            spans.sort()
        self.starts = {s: [span[0] for span in v] for s, v in self.incidents.items()}

    def latency(self, service: str) -> float:
        profile = self.profiles.get(service)
        return profile.base_latency_ms if profile else _DEFAULT_LATENCY_MS

    def state(self, service: str, at: int) -> tuple[float, str | None]:
        """(failure probability, incident mode or ``None``) at ``at`` (epoch µs)."""
        spans = self.incidents.get(service)
        if spans:
            i = bisect.bisect_right(self.starts[service], at) - 1
            if i >= 0 and spans[i][0] <= at < spans[i][1]:
                return spans[i][2], spans[i][3]
        profile = self.profiles.get(service)
        return (profile.error_rate if profile else _DEFAULT_ERROR_RATE), None


def _call(
    health: _Health, service: str, action: str, at: int, run_id: str, rng: np.random.Generator
) -> dict[str, Any]:
    p_fail, mode = health.state(service, at)
    failed = bool(rng.random() < p_fail)
    latency = health.latency(service) * float(np.exp(rng.normal(0.0, 0.35)))
    kind = None
    if failed:
        if mode is None:
            kind = "base"
        elif rng.random() < 0.2:
            kind = "breaker"
        elif mode == "errors" or (mode == "mixed" and rng.random() < 0.5):
            kind = "server"
        else:
            kind = "timeout"
    status: int | None = 201 if action.startswith(("create", "add", "post", "send")) else 200
    error_class = error = None
    attempts = 1
    if kind is not None:
        error_class, error, status = _ERRORS[kind]
        attempts = 1 if kind == "breaker" else 3
        latency = {"timeout": 10_000.0, "breaker": 0.1}.get(kind, latency * 0.3 + 5.0)
    return {
        "id": rng.bytes(16).hex(),
        "ts": at,
        "service": service,
        "action": action,
        "method": "POST" if status == 201 else "GET",
        "path": f"/{action}",
        "status": status,
        "ok": not failed,
        "latency_ms": round(latency, 3),
        "error_class": error_class,
        "error": error,
        "attempts": attempts,
        "breaker_state": "open" if kind == "breaker" else "closed",
        "source": "workflow",
        "run_id": run_id,
    }


def _run(
    name: str,
    steps: Sequence[StepPlan],
    start: int,
    health: _Health,
    rng: np.random.Generator,
    calls: list[dict[str, Any]],
) -> dict[str, Any]:
    run_id = rng.bytes(16).hex()
    now = start
    retries = fallbacks = ran = 0
    error = None
    for step in steps:
        if step.conditional and rng.random() < SKIP_CONDITIONAL:
            continue
        ran += 1
        done = False
        for index, (service, action) in enumerate(step.alternatives):
            for attempt in range(step.retries + 1):
                row = _call(health, service, action, now, run_id, rng)
                calls.append(row)
                now += int(row["latency_ms"] * 1000) + 1000
                retries += (attempt > 0) + row["attempts"] - 1
                if row["ok"]:
                    done = True
                    fallbacks += index > 0
                    break
            if done:
                break
        if not done and not step.continue_on_error:
            last = calls[-1]
            error = f"step {step.step_id!r} failed: {last['service']}: {last['error']}"
            break
    return {
        "id": rng.bytes(16).hex(),
        "run_id": run_id,
        "workflow": name,
        "started_at": start,
        "ended_at": now,
        "status": "failed" if error else "completed",
        "duration_ms": (now - start) / 1000.0,
        "steps": ran,
        "retries": retries,
        "fallbacks": fallbacks,
        "error": error,
        "params_json": json.dumps({"synthetic": True}),
    }


def _table(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = TABLES[table]
    columns: dict[str, pa.Array] = {}
    for fld in schema:
        values = [r[fld.name] for r in rows]
        if pa.types.is_timestamp(fld.type):
            columns[fld.name] = pa.array(
                np.array(values, dtype=np.int64).astype("datetime64[us]"), type=fld.type
            )
        else:
            columns[fld.name] = pa.array(values, type=fld.type)
    tbl = pa.Table.from_pydict(columns, schema=schema)
    key = "ts" if table == "calls" else "started_at"
    return tbl.sort_by(key)


def generate_spec_runs(
    store_root: str | Path,
    truth: GroundTruth,
    *,
    runs_per_hour: float = 4.0,
    seed: int = 0,
    specs: Mapping[str, WorkflowSpec] | None = None,
) -> dict[str, int]:
    """Write runs of ``specs`` (default: the built-in specs) over ``truth``'s span.

    Args:
        store_root: The metrics store root the history was written to.
        truth: The history's ground truth (its services and incidents).
        runs_per_hour: Mean runs of each spec per hour at an average hour (more in the
            afternoon, fewer at night and on weekends, like the history's traffic).
        seed: Everything follows from it.
        specs: Workflow name -> spec.

    Returns:
        Rows written per table (``workflow_runs``, ``calls``).
    """
    specs = specs if specs is not None else _builtin()
    health = _Health(truth)
    rng = np.random.default_rng([seed, 77])
    start, end = _us(truth.start), _us(truth.end)
    step = 300 * _US
    t = np.arange(start, end, step, dtype=np.int64)
    hour = (t % (86_400 * _US)) / (3600 * _US)
    weekday = ((t // (86_400 * _US)) + 3) % 7
    load = (1.0 + 0.55 * np.cos(2 * np.pi * (hour - 14.0) / 24.0)) * np.where(
        weekday >= 5, 0.55, 1.0
    )
    runs: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for name in sorted(specs):
        steps = spec_plan(specs[name])
        counts = rng.poisson(runs_per_hour / 12.0 * load)
        starts = np.repeat(t, counts) + rng.integers(0, step, int(counts.sum()))
        for at in np.sort(starts):
            runs.append(_run(name, steps, int(at), health, rng, calls))
    root = Path(store_root).absolute()
    written = {"workflow_runs": len(runs), "calls": len(calls)}
    if runs:
        _write_partitions(root, "workflow_runs", _table("workflow_runs", runs), rng)
    if calls:
        _write_partitions(root, "calls", _table("calls", calls), rng)
    return written


def generate_spec_history(
    store_root: str | Path,
    *,
    days: float = 21,
    seed: int = 0,
    incidents_per_30_days: float = 10.0,
    runs_per_hour: float = 4.0,
    start: datetime | None = None,
) -> tuple[GroundTruth, dict[str, int]]:
    """A history of the services the built-in specs call, with runs of those specs.

    What the success model's tests and benchmark train on: outages frequent enough
    (``incidents_per_30_days`` per service) for a few percent of the runs to fail.

    Returns:
        The history's ground truth and the spec runs' rows per table.
    """
    truth = generate_history(
        store_root,
        services=spec_services(),
        days=days,
        seed=seed,
        start=start,
        incidents_per_30_days=incidents_per_30_days,
        workflows=0,
    )
    return truth, generate_spec_runs(store_root, truth, runs_per_hour=runs_per_hour, seed=seed)
