"""Features of a workflow run known before it starts, from the metrics store's history.

A run is described by its spec (which services and actions each step may call, in
preference order, with its retries: :func:`spec_plan`) and by the services' recent health
in the ``calls`` rows before the run's start (success rates over several windows, latency
against its day, the error mix, open breakers, client retries) and by the workflow's own
recent runs (``workflow_runs``: failures, retries, fallbacks that had ended before the
start). :func:`build_features` turns a frame of runs (``run_id``, ``workflow``,
``started_at``) into one row of numbers per run: DataFrame in, DataFrame out, vectorised
(cumulative counts per service and ``searchsorted``), so a month of history costs well
under a second.

The naive estimate the model has to beat is also a column (``naive``): the product over the
services the run's steps call first of their success rate in the hour before the start
(the 24 hours before when the hour has no calls; a service with no calls at all is left
out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from integrations.errors import UnknownCapabilityError
from junction.workflows.capabilities import candidates
from junction.workflows.spec import WorkflowSpec

__all__ = [
    "CALL_COLUMNS",
    "FEATURES",
    "RUN_COLUMNS",
    "WINDOWS",
    "StepPlan",
    "build_features",
    "plan_services",
    "spec_plan",
]

WINDOWS: dict[str, int] = {"5m": 300, "15m": 900, "1h": 3600, "24h": 86_400}
"""Look-back windows (seconds) of the health features; the naive estimate uses ``1h``."""

CALL_COLUMNS = (
    "ts",
    "service",
    "action",
    "ok",
    "latency_ms",
    "error_class",
    "attempts",
    "breaker_state",
)
"""``calls`` columns the features read."""

RUN_COLUMNS = ("run_id", "workflow", "started_at", "ended_at", "status", "retries", "fallbacks")
"""``workflow_runs`` columns the features read (the workflow's recent runs)."""

_US = 1_000_000
_PRIOR = 2.0  # pseudo-calls pulling a short window's rate toward the service's day
_ERRORS = {
    "timeout": ("APITimeoutError", "TimeoutError", "ConnectTimeout", "ReadTimeout"),
    "server": ("ServerError",),
    "rate_limit": ("RateLimitError",),
    "breaker": ("CircuitOpenError",),
}


@dataclass(frozen=True)
class StepPlan:
    """What one step may call before it starts.

    Attributes:
        step_id: The step.
        alternatives: ``(service, action)`` in the order the runner tries them.
        retries: Step-level retries of each alternative.
        conditional: The step has a ``when`` (it may be skipped).
        continue_on_error: The run goes on when the step fails.
    """

    step_id: str
    alternatives: tuple[tuple[str, str], ...]
    retries: int
    conditional: bool
    continue_on_error: bool = False


def spec_plan(spec: WorkflowSpec) -> tuple[StepPlan, ...]:
    """The steps of ``spec`` and the services each may call (an unknown capability: none)."""
    out = []
    for step in spec.steps:
        try:
            alts = tuple((c.integration, c.action) for c in candidates(step))
        except UnknownCapabilityError:
            alts = ()
        out.append(
            StepPlan(step.id, alts, step.retries, step.when is not None, step.continue_on_error)
        )
    return tuple(out)


def plan_services(plan: Sequence[StepPlan]) -> list[str]:
    """The services the steps call first (no fallback), once each, in step order."""
    return list(dict.fromkeys(s.alternatives[0][0] for s in plan if s.alternatives))


FEATURES: tuple[str, ...] = (
    *(f"ok_min_{w}" for w in WINDOWS),
    *(f"ok_prod_{w}" for w in WINDOWS),
    *(f"calls_min_{w}" for w in WINDOWS),
    "eff_ok_5m",
    "eff_ok_15m",
    "eff_ok_1h",
    "alt_ok_min_15m",
    "action_ok_min_24h",
    "latency_ratio_max_15m",
    "timeout_share_1h",
    "server_share_1h",
    "rate_limit_share_1h",
    "breaker_open_5m",
    "breaker_open_1h",
    "retries_per_call_1h",
    "n_steps",
    "n_services",
    "n_fallback_steps",
    "n_no_retry_steps",
    "n_conditional_steps",
    "hour_sin",
    "hour_cos",
    "weekday",
    "weekend",
    "wf_runs_6h",
    "wf_fail_share_6h",
    "wf_fail_share_24h",
    "wf_retries_mean_6h",
    "wf_fallbacks_mean_6h",
)
"""Model inputs, in order (``naive`` is a column too but not an input)."""


def _micros(values: pd.Series | Sequence[datetime]) -> np.ndarray:
    ts = pd.to_datetime(pd.Series(values), utc=True)
    return ts.dt.as_unit("us").astype("int64").to_numpy()


class _Windowed:
    """Cumulative sums of event columns by time: any window's sums in O(log n)."""

    def __init__(self, ts: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
        order = np.argsort(ts, kind="stable")
        self.ts = ts[order]
        self.cum = {
            k: np.concatenate([[0.0], np.cumsum(np.asarray(v, dtype=float)[order])])
            for k, v in columns.items()
        }

    def sums(self, at: np.ndarray, seconds: int) -> dict[str, np.ndarray]:
        hi = np.searchsorted(self.ts, at, side="left")  # strictly before the start
        lo = np.searchsorted(self.ts, at - seconds * _US, side="left")
        return {k: c[hi] - c[lo] for k, c in self.cum.items()}


def _index_calls(calls: pd.DataFrame) -> tuple[dict[str, _Windowed], dict[str, _Windowed]]:
    """Per service and per ``service.action``: windowed sums of the calls' health."""
    by_service: dict[str, _Windowed] = {}
    by_action: dict[str, _Windowed] = {}
    if calls.empty:
        return by_service, by_action
    ts = _micros(calls["ts"])
    ok = calls["ok"].astype(bool).to_numpy()
    err = calls["error_class"].astype("string").fillna("").to_numpy(dtype=object)
    breaker = calls["breaker_state"].astype("string").fillna("closed").to_numpy(dtype=object)
    cols: dict[str, np.ndarray] = {
        "n": np.ones(len(calls)),
        "ok": ok.astype(float),
        "latency": calls["latency_ms"].astype(float).fillna(0.0).to_numpy(),
        "retries": np.maximum(calls["attempts"].astype(float).fillna(1.0).to_numpy() - 1, 0),
        "breaker": ((breaker != "closed") | (err == "CircuitOpenError")).astype(float),
    }
    for kind, names in _ERRORS.items():
        cols[kind] = (~ok & np.isin(err, names)).astype(float)
    services = calls["service"].astype(str).to_numpy()
    actions = services + "." + calls["action"].astype(str).to_numpy()
    for name in np.unique(services):
        mask = services == name
        by_service[str(name)] = _Windowed(ts[mask], {k: v[mask] for k, v in cols.items()})
    for name in np.unique(actions):
        mask = actions == name
        by_action[str(name)] = _Windowed(ts[mask], {"n": cols["n"][mask], "ok": cols["ok"][mask]})
    return by_service, by_action


def _rates(index: _Windowed | None, at: np.ndarray) -> dict[str, np.ndarray]:
    """Per window: raw and shrunk success rates, counts, and the health sums of one service."""
    out: dict[str, np.ndarray] = {}
    zeros = np.zeros(len(at))
    if index is None:
        for w in WINDOWS:
            out[f"n_{w}"] = zeros
            out[f"rate_{w}"] = np.full(len(at), np.nan)
            out[f"shrunk_{w}"] = np.ones(len(at))
        for key in (
            "latency_15m",
            "latency_24h",
            "breaker_5m",
            "breaker_1h",
            "retries_1h",
            "fails_1h",
            *(f"{k}_1h" for k in _ERRORS),
        ):
            out[key] = zeros
        return out
    day = index.sums(at, WINDOWS["24h"])
    day_rate = np.where(day["n"] > 0, (day["ok"] + 1.0) / (day["n"] + 1.0), 1.0)
    for w, seconds in WINDOWS.items():
        s = day if w == "24h" else index.sums(at, seconds)
        out[f"n_{w}"] = s["n"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"rate_{w}"] = np.where(s["n"] > 0, s["ok"] / s["n"], np.nan)
        out[f"shrunk_{w}"] = (s["ok"] + _PRIOR * day_rate) / (s["n"] + _PRIOR)
        if w == "15m":
            out["latency_15m"] = np.where(s["n"] > 0, s["latency"] / np.maximum(s["n"], 1), 0.0)
        if w == "5m":
            out["breaker_5m"] = s["breaker"] / np.maximum(s["n"], 1)
        if w == "1h":
            out["breaker_1h"] = s["breaker"] / np.maximum(s["n"], 1)
            out["retries_1h"] = s["retries"] / np.maximum(s["n"], 1)
            out["fails_1h"] = s["n"] - s["ok"]
            for kind in _ERRORS:
                out[f"{kind}_1h"] = s[kind]
    out["latency_24h"] = np.where(day["n"] > 0, day["latency"] / np.maximum(day["n"], 1), 0.0)
    return out


def _action_rate(index: _Windowed | None, at: np.ndarray) -> np.ndarray:
    if index is None:
        return np.ones(len(at))
    s = index.sums(at, WINDOWS["24h"])
    return (s["ok"] + 1.0) / (s["n"] + 1.0)


def _run_history(runs: pd.DataFrame | None) -> dict[str, _Windowed]:
    """Per workflow: the runs that had ended, by end time (what was known at a start)."""
    out: dict[str, _Windowed] = {}
    if runs is None or runs.empty:
        return out
    ended = runs["ended_at"].where(runs["ended_at"].notna(), runs["started_at"])
    ts = _micros(ended)
    failed = (runs["status"].astype(str) != "completed").to_numpy().astype(float)
    names = runs["workflow"].astype(str).to_numpy()
    retries = runs["retries"].astype(float).fillna(0.0).to_numpy()
    fallbacks = runs["fallbacks"].astype(float).fillna(0.0).to_numpy()
    for name in np.unique(names):
        m = names == name
        out[str(name)] = _Windowed(
            ts[m],
            {
                "n": np.ones(int(m.sum())),
                "failed": failed[m],
                "retries": retries[m],
                "fallbacks": fallbacks[m],
            },
        )
    return out


def _eff_ok(
    plan: Sequence[StepPlan], rates: Mapping[str, Mapping[str, np.ndarray]], w: str, n: int
) -> np.ndarray:
    """P(every step succeeds) if calls fail independently at the window's rates, with the
    step's retries and its alternatives."""
    total = np.ones(n)
    for step in plan:
        fail = np.ones(n)
        for service, _ in step.alternatives:
            f = np.clip(1.0 - rates[service][f"shrunk_{w}"], 0.0, 1.0)
            fail = fail * f ** (step.retries + 1)
        total = total * (1.0 - fail) if step.alternatives else total
    return total


def build_features(
    runs: pd.DataFrame,
    plans: Mapping[str, Sequence[StepPlan]],
    calls: pd.DataFrame,
    past_runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row of features per run, from what was recorded before each run started.

    Args:
        runs: ``run_id`` (optional), ``workflow``, ``started_at``; only runs whose
            workflow is in ``plans`` are kept.
        plans: Workflow name -> its :func:`spec_plan`.
        calls: ``calls`` rows (:data:`CALL_COLUMNS`) covering the day before the runs.
        past_runs: ``workflow_runs`` rows (:data:`RUN_COLUMNS`) for the workflows'
            recent-run features (``None``: none known).

    Returns:
        Columns :data:`FEATURES` plus ``naive``, ``workflow`` and ``started_at``, indexed
        like ``runs`` (restricted to known workflows).
    """
    runs = runs[runs["workflow"].astype(str).isin(list(plans))]
    by_service, by_action = _index_calls(calls)
    history = _run_history(past_runs)
    parts = []
    for workflow, group in runs.groupby(runs["workflow"].astype(str), sort=False):
        parts.append(
            _workflow_features(
                str(workflow),
                group,
                plans[str(workflow)],
                by_service,
                by_action,
                history.get(str(workflow)),
            )
        )
    if not parts:
        return pd.DataFrame(columns=[*FEATURES, "naive", "workflow", "started_at"])
    return pd.concat(parts).loc[runs.index]


def _workflow_features(
    workflow: str,
    group: pd.DataFrame,
    plan: Sequence[StepPlan],
    by_service: Mapping[str, _Windowed],
    by_action: Mapping[str, _Windowed],
    history: _Windowed | None,
) -> pd.DataFrame:
    at = _micros(group["started_at"])
    n = len(at)
    primary = plan_services(plan)
    every = sorted({s for step in plan for s, _ in step.alternatives})
    rates = {s: _rates(by_service.get(s), at) for s in every}
    cols: dict[str, np.ndarray] = {}

    def stack(key: str, services: Iterable[str]) -> np.ndarray:
        names = list(services)
        if not names:
            return np.ones((1, n))
        return np.vstack([rates[s][key] for s in names])

    for w in WINDOWS:
        shrunk = stack(f"shrunk_{w}", primary)
        cols[f"ok_min_{w}"] = shrunk.min(axis=0)
        cols[f"ok_prod_{w}"] = shrunk.prod(axis=0)
        cols[f"calls_min_{w}"] = np.log1p(stack(f"n_{w}", primary).min(axis=0))
    for w in ("5m", "15m", "1h"):
        cols[f"eff_ok_{w}"] = _eff_ok(plan, rates, w, n)
    alts = [s for s in every if s not in primary]
    cols["alt_ok_min_15m"] = stack("shrunk_15m", alts).min(axis=0) if alts else np.ones(n)
    actions = [f"{a[0][0]}.{a[0][1]}" for a in (s.alternatives for s in plan) if a]
    cols["action_ok_min_24h"] = np.vstack(
        [_action_rate(by_action.get(a), at) for a in actions] or [np.ones(n)]
    ).min(axis=0)
    lat15, lat24 = stack("latency_15m", primary), stack("latency_24h", primary)
    ratio = np.where((lat15 > 0) & (lat24 > 0), lat15 / np.maximum(lat24, 1e-9), 1.0)
    cols["latency_ratio_max_15m"] = ratio.max(axis=0)
    fails = stack("fails_1h", primary).sum(axis=0)
    for kind in ("timeout", "server", "rate_limit"):
        cols[f"{kind}_share_1h"] = stack(f"{kind}_1h", primary).sum(axis=0) / np.maximum(fails, 1)
    cols["breaker_open_5m"] = stack("breaker_5m", primary).max(axis=0)
    cols["breaker_open_1h"] = stack("breaker_1h", primary).max(axis=0)
    cols["retries_per_call_1h"] = stack("retries_1h", primary).mean(axis=0)
    cols["n_steps"] = np.full(n, float(len(plan)))
    cols["n_services"] = np.full(n, float(len(primary)))
    cols["n_fallback_steps"] = np.full(n, float(sum(len(s.alternatives) > 1 for s in plan)))
    cols["n_no_retry_steps"] = np.full(n, float(sum(s.retries == 0 for s in plan)))
    cols["n_conditional_steps"] = np.full(n, float(sum(s.conditional for s in plan)))
    seconds_of_day = (at // _US) % 86_400
    cols["hour_sin"] = np.sin(2 * np.pi * seconds_of_day / 86_400)
    cols["hour_cos"] = np.cos(2 * np.pi * seconds_of_day / 86_400)
    weekday = ((at // (86_400 * _US)) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    cols["weekday"] = weekday.astype(float)
    cols["weekend"] = (weekday >= 5).astype(float)
    if history is None:
        for key in (
            "wf_runs_6h",
            "wf_fail_share_6h",
            "wf_fail_share_24h",
            "wf_retries_mean_6h",
            "wf_fallbacks_mean_6h",
        ):
            cols[key] = np.zeros(n)
    else:
        six, day = history.sums(at, 6 * 3600), history.sums(at, 86_400)
        cols["wf_runs_6h"] = np.log1p(six["n"])
        cols["wf_fail_share_6h"] = six["failed"] / np.maximum(six["n"], 1)
        cols["wf_fail_share_24h"] = day["failed"] / np.maximum(day["n"], 1)
        cols["wf_retries_mean_6h"] = six["retries"] / np.maximum(six["n"], 1)
        cols["wf_fallbacks_mean_6h"] = six["fallbacks"] / np.maximum(six["n"], 1)
    cols["naive"] = _naive(rates, primary, n)
    frame = pd.DataFrame({k: cols[k] for k in (*FEATURES, "naive")}, index=group.index)
    frame["workflow"] = workflow
    frame["started_at"] = pd.to_datetime(group["started_at"], utc=True).to_numpy()
    return frame


def _naive(
    rates: Mapping[str, Mapping[str, np.ndarray]], primary: Sequence[str], n: int
) -> np.ndarray:
    """Product over the first-choice services of the hour's success rate (else the day's)."""
    total = np.ones(n)
    for service in primary:
        hour, day = rates[service]["rate_1h"], rates[service]["rate_24h"]
        rate = np.where(np.isnan(hour), day, hour)
        total = total * np.where(np.isnan(rate), 1.0, rate)
    return total
