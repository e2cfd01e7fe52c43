"""Optimization recommendations from recorded calls and runs, and applying them to specs.

:func:`recommend` reads the ``calls`` rows of workflow runs (``calls.run_id`` =
``workflow_runs.run_id``), the ``workflow_runs`` rows and the workflow specs, and returns
:class:`Recommendation` objects, each with an estimated saving (ms and/or calls per day,
at the observed run rate) and a confidence in [0, 1]. A step's calls are those of its
run with the step's ``<integration>.<action>`` (or, for a capability step, any of its
providers' bound actions).

Kinds and how each is found (``evidence(n, k) = n / (n + k)`` grows with sample size):

* ``cache`` -- a read-only step (the action's ``read_only`` flag; a GET when the
  registry does not know it) without ``cache`` whose identical request (same service,
  action and path) repeats within 15 minutes. Saving: repeats/day x mean latency, and the
  repeats as calls/day. Confidence: 0.97 (registry says read-only) or 0.6 (inferred from
  GET) x evidence(repeats, 5) x min(1, repeat share / 10 %). Change: ``cache: {ttl}``,
  the ttl twice the median repeat gap rounded up to 1m/5m/15m.
* ``parallelize`` -- a ``needs`` entry whose step the templates never read: the two steps
  run one after the other for nothing. Saving: the shorter step's mean time per run x
  runs/day. Confidence: 0.95 when both steps are read-only (order cannot matter), 0.5
  otherwise (a side effect may rely on the order), x evidence(runs, 3). Change: drop
  that ``needs`` entry.
* ``batch`` -- a step calling an action with a bulk form (``junction.workflows.batching``
  ``BATCHABLE``, merged by the runner only for concurrent calls) more than once per run
  (``for_each``) with ``concurrency`` unset or 1. Saving: (calls per run - calls per
  run / 20) x runs/day calls and the latency of those calls. Confidence 0.9 x
  evidence(runs, 3). Change: ``concurrency: 20``. Many single calls to an action with
  no safe bulk form are reported without a change (advisory).
* ``provider`` -- a capability step whose first provider has a worse success rate
  (one-sided two-proportion z-test) or p95 (one-sided Mann-Whitney U on latencies) than
  another provider of the capability. Saving: failures avoided/day, or the p95
  difference x step calls/day. Confidence: 1 - p-value x evidence(min calls, 20).
  Change: ``providers`` with the better one first.
* ``retry`` / ``timeout`` -- where transient errors (timeouts, 429, 5xx, connection)
  are at least 70 % of a step's failures and failures at least 1 % of its calls: raise
  ``retries`` to 2 (saving: failed calls/day that a retry would likely turn into
  successes, at the observed failure rate). Where timeouts dominate and the step's
  ``timeout`` is below 1.5 x the p99 of successful latencies: raise ``timeout`` to that.
  Where permanent errors (4xx) dominate and the step retries: ``retries: 0`` (saving:
  the wasted attempts). Confidence: evidence(failures, 10) x share of the dominant
  class.

Applying the changes to the spec files: :mod:`analytics.apply`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from scipy.stats import mannwhitneyu, norm

from integrations.catalog import load_catalog
from integrations.errors import ConfigurationError, UnknownCapabilityError
from integrations.registry import get_action
from integrations.yamlconfig import ConfigError, read_yaml
from junction.workflows.batching import BATCHABLE
from junction.workflows.capabilities import get_capability
from junction.workflows.spec import parse_duration
from junction.workflows.templating import step_references

Kind = Literal["cache", "parallelize", "batch", "provider", "retry", "timeout"]

TRANSIENT_ERRORS = frozenset(
    {
        "APITimeoutError",
        "APIConnectionError",
        "RateLimitError",
        "ServerError",
        "RetryLaterError",
        "RequestTimeoutError",
        "CircuitOpenError",
    }
)
"""Error classes a retry can fix (integrations.errors)."""
TIMEOUT_ERRORS = frozenset({"APITimeoutError", "RequestTimeoutError"})
PERMANENT_ERRORS = frozenset(
    {
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "ConflictError",
        "UnprocessableEntityError",
    }
)
CACHE_WINDOW_S = 900.0
BATCH_SIZE = 20


@dataclass(frozen=True)
class Change:
    """One edit of a workflow spec.

    Attributes:
        spec_path: The YAML file.
        step: The step's id.
        field: The step key set (``cache``, ``needs``, ``retries``, ``timeout``,
            ``providers``, ``concurrency``).
        old: The current value (``None``: absent).
        new: The value written (``None``: remove the key).
    """

    spec_path: str
    step: str
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Recommendation:
    """An optimization found in the data.

    Attributes:
        id: Stable id (``<kind>-<hash>``) to accept it by.
        kind: ``cache``, ``parallelize``, ``batch``, ``provider``, ``retry``, ``timeout``.
        workflow: The workflow it concerns.
        step: The step it concerns.
        service: The integration it concerns.
        title: One line.
        rationale: The evidence, in numbers.
        saving_ms_per_day: Estimated time saved per day (0 if not a time saving).
        saving_calls_per_day: Estimated calls (or failures) saved per day.
        confidence: 0-1 (formulas in the module docstring).
        change: The spec edit, or ``None`` for an advisory recommendation.
    """

    id: str
    kind: Kind
    workflow: str | None
    step: str | None
    service: str | None
    title: str
    rationale: str
    saving_ms_per_day: float
    saving_calls_per_day: float
    confidence: float
    change: Change | None = None

    def as_row(self) -> dict[str, Any]:
        """A flat dict for tables and JSON."""
        return {
            "id": self.id,
            "kind": self.kind,
            "workflow": self.workflow or "",
            "step": self.step or "",
            "service": self.service or "",
            "title": self.title,
            "saving_ms_per_day": round(self.saving_ms_per_day, 1),
            "saving_calls_per_day": round(self.saving_calls_per_day, 1),
            "confidence": round(self.confidence, 3),
            "change": "" if self.change is None else f"{self.change.field}: {self.change.new!r}",
            "rationale": self.rationale,
        }


@dataclass
class SpecFile:
    """A workflow spec on disk, as plain data.

    Attributes:
        path: The file.
        data: The parsed YAML mapping.
    """

    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        """The workflow's name (the file stem if it has none)."""
        return str(self.data.get("name") or self.path.stem)

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The steps (mappings with at least ``id`` and ``uses``)."""
        steps = self.data.get("steps") or []
        return [s for s in steps if isinstance(s, dict) and "id" in s and "uses" in s]


def load_specs(spec_dir: Path | str) -> dict[str, SpecFile]:
    """Every ``*.yaml``/``*.yml`` workflow spec in ``spec_dir`` (unparseable files skipped).

    Returns:
        ``workflow name -> SpecFile``.
    """
    out: dict[str, SpecFile] = {}
    root = Path(spec_dir)
    if not root.is_dir():
        return out
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        try:
            data = read_yaml(path).data
        except ConfigError:  # unreadable or invalid YAML: `workflow validate` says why
            continue
        if isinstance(data, dict) and isinstance(data.get("steps"), list):
            spec = SpecFile(path, data)
            out[spec.name] = spec
    return out


# ------------------------------------------------------------------ helpers


def _rec_id(kind: str, *parts: object) -> str:
    digest = hashlib.sha1("|".join(map(str, (kind, *parts))).encode()).hexdigest()[:8]
    return f"{kind}-{digest}"


def evidence(n: float, k: float) -> float:
    """``n / (n + k)``: how much ``n`` observations are worth (0 at 0, 0.5 at ``k``)."""
    return n / (n + k) if n > 0 else 0.0


def _action_info(service: str, action: str) -> tuple[bool | None, bool]:
    """(read_only or None if unknown, known)."""
    try:
        spec = get_action(service, action)
    except ConfigurationError:  # unknown integration/action: the caller uses the method
        return None, False
    return bool(spec.read_only), True


def _step_targets(step: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (integration, action) pairs a step's calls can have, primary first."""
    uses = str(step.get("uses", ""))
    left, _, right = uses.partition(".")
    if left in load_catalog():
        targets = [(left, right)]
        for fb in step.get("fallback") or []:
            fb_uses = fb.get("uses") if isinstance(fb, dict) else str(fb)
            if fb_uses:
                i, _, a = str(fb_uses).partition(".")
                targets.append((i, a or right))
        return targets
    try:
        cap = get_capability(uses)
    except UnknownCapabilityError:  # neither an integration nor a capability: as written
        return [(left, right)]
    bindings = {b.integration: b.action for b in cap.bindings}
    order = [str(p) for p in step.get("providers") or []] or list(bindings)
    return [(p, bindings[p]) for p in order if p in bindings] + [
        (p, a) for p, a in bindings.items() if p not in order
    ]


def _capability_providers(step: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    uses = str(step.get("uses", ""))
    if uses.partition(".")[0] in load_catalog():
        return None
    try:
        cap = get_capability(uses)
    except UnknownCapabilityError:
        return None
    return [(b.integration, b.action) for b in cap.bindings]


def _template_refs(step: Mapping[str, Any], ids: set[str]) -> set[str]:
    """Step ids the step's templates read (``steps.<id>``)."""
    fields: list[Any] = [step.get("with"), step.get("when"), step.get("for_each")]
    fields.append(step.get("idempotency_key"))
    for fb in step.get("fallback") or []:
        if isinstance(fb, dict):
            fields.append(fb.get("with"))
    found: set[str] = set()
    for i, value in enumerate(fields):
        if value is not None:
            found |= step_references(value, expression=i in (1, 2))
    return found & ids


def _ttl_text(seconds: float) -> str:
    for limit, text in ((60, "1m"), (300, "5m"), (900, "15m")):
        if seconds <= limit:
            return text
    return "15m"


def _parse_seconds(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(parse_duration(value))
    except ValueError:
        return None


def _days(calls: pd.DataFrame, runs: pd.DataFrame) -> float:
    stamps: list[pd.Timestamp] = []
    if len(calls):
        stamps += [calls["ts"].min(), calls["ts"].max()]
    if len(runs):
        stamps += [runs["started_at"].min(), runs["started_at"].max()]
    if not stamps:
        return 1.0
    span = (max(stamps) - min(stamps)).total_seconds() / 86400
    return max(span, 1 / 24)


# ------------------------------------------------------------------ finders


def _cache(
    spec: SpecFile, step: dict[str, Any], sc: pd.DataFrame, per_day: float
) -> Recommendation | None:
    if step.get("cache") or sc.empty:
        return None
    service, action = _step_targets(step)[0]
    sc = sc[(sc["service"] == service) & (sc["action"] == action) & sc["ok"]]
    if len(sc) < 2:
        return None
    read_only, known = _action_info(service, action)
    if read_only is False:
        return None
    if not known and not (sc["method"].str.upper() == "GET").all():
        return None
    sc = sc.sort_values("ts")
    gaps = sc.groupby(["service", "action", "path"])["ts"].diff().dt.total_seconds()
    repeat = gaps.notna() & (gaps <= CACHE_WINDOW_S)
    repeats = int(repeat.sum())
    if repeats == 0:
        return None
    share = repeats / len(sc)
    mean_ms = float(sc["latency_ms"].mean())
    conf = (0.97 if known else 0.6) * evidence(repeats, 5) * min(1.0, share / 0.10)
    ttl = _ttl_text(2 * float(gaps[repeat].median()))
    return Recommendation(
        id=_rec_id("cache", spec.name, step["id"]),
        kind="cache",
        workflow=spec.name,
        step=str(step["id"]),
        service=service,
        title=f"Cache {service}.{action} in {spec.name}.{step['id']} (ttl {ttl})",
        rationale=(
            f"{repeats} of {len(sc)} successful calls ({share:.0%}) repeated an identical "
            f"read within {CACHE_WINDOW_S / 60:.0f} min; mean latency {mean_ms:,.0f} ms"
        ),
        saving_ms_per_day=repeats * per_day * mean_ms,
        saving_calls_per_day=repeats * per_day,
        confidence=round(conf, 3),
        change=Change(str(spec.path), str(step["id"]), "cache", None, {"ttl": ttl}),
    )


def _step_ms(step: Mapping[str, Any], sc: pd.DataFrame, runs: int) -> float:
    """Mean time one run spends in the step (sum of its calls' latency / runs)."""
    if sc.empty or runs == 0:
        return 0.0
    targets = set(_step_targets(step))
    mask = [(s, a) in targets for s, a in zip(sc["service"], sc["action"], strict=True)]
    return float(sc.loc[mask, "latency_ms"].sum()) / runs


def _step_read_only(step: Mapping[str, Any]) -> bool:
    service, action = _step_targets(step)[0]
    read_only, _ = _action_info(service, action)
    return bool(read_only)


def _parallelize(
    spec: SpecFile, sc: pd.DataFrame, runs: int, runs_per_day: float
) -> list[Recommendation]:
    out: list[Recommendation] = []
    steps = {str(s["id"]): s for s in spec.steps}
    ids = set(steps)
    for sid, step in steps.items():
        needs = step.get("needs") or []
        needs = [needs] if isinstance(needs, str) else [str(n) for n in needs]
        refs = _template_refs(step, ids)
        for dep in needs:
            if dep in refs or dep not in steps:
                continue
            both_ro = _step_read_only(step) and _step_read_only(steps[dep])
            saved = min(_step_ms(step, sc, runs), _step_ms(steps[dep], sc, runs))
            conf = (0.95 if both_ro else 0.5) * evidence(runs, 3)
            new = [n for n in needs if n != dep]
            out.append(
                Recommendation(
                    id=_rec_id("parallelize", spec.name, sid, dep),
                    kind="parallelize",
                    workflow=spec.name,
                    step=sid,
                    service=None,
                    title=f"Run {spec.name}.{sid} alongside {dep} (drop needs: {dep})",
                    rationale=(
                        f"{sid} waits for {dep} but never reads its output; over {runs} runs "
                        f"the shorter of the two took {saved:,.0f} ms per run"
                        + ("" if both_ro else "; a side effect may rely on the order")
                    ),
                    saving_ms_per_day=saved * runs_per_day,
                    saving_calls_per_day=0.0,
                    confidence=round(conf, 3),
                    change=Change(str(spec.path), sid, "needs", needs, new or None),
                )
            )
    return out


def _batch(
    spec: SpecFile, step: dict[str, Any], sc: pd.DataFrame, runs: int, runs_per_day: float
) -> Recommendation | None:
    if sc.empty or runs == 0:
        return None
    service, action = _step_targets(step)[0]
    mine = sc[(sc["service"] == service) & (sc["action"] == action)]
    per_run = len(mine) / runs
    if per_run < 2:
        return None
    mean_ms = float(mine["latency_ms"].mean())
    bulk = (service, action) in BATCHABLE
    concurrency = step.get("concurrency")
    if bulk and step.get("for_each") and (concurrency is None or int(concurrency) <= 1):
        saved_calls = (per_run - math.ceil(per_run / BATCH_SIZE)) * runs_per_day
        return Recommendation(
            id=_rec_id("batch", spec.name, step["id"]),
            kind="batch",
            workflow=spec.name,
            step=str(step["id"]),
            service=service,
            title=f"Batch {service}.{action} in {spec.name}.{step['id']} (concurrency 20)",
            rationale=(
                f"{per_run:.1f} single {service}.{action} calls per run ({mean_ms:,.0f} ms "
                f"each) one at a time; with concurrent items the runner merges them into "
                f"bulk requests of up to {BATCH_SIZE}"
            ),
            saving_ms_per_day=saved_calls * mean_ms,
            saving_calls_per_day=saved_calls,
            confidence=round(0.9 * evidence(runs, 3), 3),
            change=Change(str(spec.path), str(step["id"]), "concurrency", concurrency, BATCH_SIZE),
        )
    if bulk or per_run < 5:
        return None
    return Recommendation(
        id=_rec_id("batch", spec.name, step["id"]),
        kind="batch",
        workflow=spec.name,
        step=str(step["id"]),
        service=service,
        title=f"{spec.name}.{step['id']} makes {per_run:.0f} {service}.{action} calls per run",
        rationale=(
            f"{per_run:.1f} single calls per run ({mean_ms:,.0f} ms each); look for a bulk "
            f"endpoint of {service} (none is registered as safe to batch)"
        ),
        saving_ms_per_day=0.0,
        saving_calls_per_day=0.0,
        confidence=round(0.3 * evidence(runs, 3), 3),
    )


def provider_stats(calls: pd.DataFrame) -> pd.DataFrame:
    """Per service: calls, success rate and p95 latency of successful calls."""
    if calls.empty:
        return pd.DataFrame(columns=["service", "calls", "success_rate", "p95_ms"])
    grouped = calls.groupby("service")
    stats = pd.DataFrame(
        {
            "calls": grouped.size(),
            "success_rate": grouped["ok"].mean(),
            "p95_ms": calls[calls["ok"]].groupby("service")["latency_ms"].quantile(0.95),
        }
    ).reset_index()
    return stats


def _provider(
    spec: SpecFile, step: dict[str, Any], all_calls: pd.DataFrame, step_calls_per_day: float
) -> Recommendation | None:
    providers = _capability_providers(step)
    if not providers or all_calls.empty:
        return None

    declared = [str(p) for p in step.get("providers") or []]
    order = declared or [p for p, _ in _step_targets(step)]
    current = order[0]
    data = {
        p: all_calls[(all_calls["service"] == p) & (all_calls["action"] == a)] for p, a in providers
    }
    cur = data.get(current)
    if cur is None or len(cur) < 5:
        return None
    best: tuple[float, str, str, float, float] | None = None  # (conf, name, why, ms, calls)
    for name, rows in data.items():
        if name == current or len(rows) < 5:
            continue
        n1, n2 = len(cur), len(rows)
        r1, r2 = float(cur["ok"].mean()), float(rows["ok"].mean())
        pooled = (cur["ok"].sum() + rows["ok"].sum()) / (n1 + n2)
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n1 + 1 / n2))
        p_rate = float(1 - norm.cdf((r2 - r1) / se)) if se > 0 else 1.0
        lat1, lat2 = cur.loc[cur["ok"], "latency_ms"], rows.loc[rows["ok"], "latency_ms"]
        p95_1 = float(lat1.quantile(0.95)) if len(lat1) else math.nan
        p95_2 = float(lat2.quantile(0.95)) if len(lat2) else math.nan
        ev = evidence(min(n1, n2), 20)
        if r2 - r1 >= 0.01 and p_rate < 0.05:
            conf = (1 - p_rate) * ev
            why = f"success {r2:.1%} vs {r1:.1%} (p={p_rate:.3f})"
            cand = (conf, name, why, 0.0, (r2 - r1) * step_calls_per_day)
        elif len(lat1) >= 5 and len(lat2) >= 5 and p95_2 < 0.8 * p95_1 and r2 >= r1 - 0.005:
            p_lat = float(mannwhitneyu(lat2, lat1, alternative="less").pvalue)
            if p_lat >= 0.05:
                continue
            conf = (1 - p_lat) * ev
            why = f"p95 {p95_2:,.0f} ms vs {p95_1:,.0f} ms (Mann-Whitney p={p_lat:.3g})"
            cand = (conf, name, why, (p95_1 - p95_2) * step_calls_per_day, 0.0)
        else:
            continue
        if best is None or cand[0] > best[0]:
            best = cand
    if best is None:
        return None
    conf, name, why, ms, saved_calls = best
    new_order = [name, *[p for p in order if p != name]]
    return Recommendation(
        id=_rec_id("provider", spec.name, step["id"], name),
        kind="provider",
        workflow=spec.name,
        step=str(step["id"]),
        service=name,
        title=f"Prefer {name} over {current} for {spec.name}.{step['id']} ({step['uses']})",
        rationale=f"{name} {why}, over {len(data[name])} and {len(cur)} calls",
        saving_ms_per_day=ms,
        saving_calls_per_day=saved_calls,
        confidence=round(conf, 3),
        change=Change(
            str(spec.path), str(step["id"]), "providers", step.get("providers"), new_order
        ),
    )


def _retry_timeout(
    spec: SpecFile, step: dict[str, Any], sc: pd.DataFrame, per_day: float
) -> list[Recommendation]:
    out: list[Recommendation] = []
    service, action = _step_targets(step)[0]
    mine = sc[(sc["service"] == service) & (sc["action"] == action)]
    fails = mine[~mine["ok"]]
    n, nf = len(mine), len(fails)
    if n < 10 or nf == 0:
        return out
    classes = fails["error_class"].fillna("unknown")
    transient = float(classes.isin(TRANSIENT_ERRORS).mean())
    timeouts = float(classes.isin(TIMEOUT_ERRORS).mean())
    permanent = float(classes.isin(PERMANENT_ERRORS).mean())
    fail_rate = nf / n
    retries = int(step.get("retries") or 0)
    sid = str(step["id"])
    if transient >= 0.7 and fail_rate >= 0.01 and retries < 2:
        # A retry fails again with about the same probability (independent attempts).
        recovered = nf * (1 - fail_rate ** (2 - retries)) * per_day
        out.append(
            Recommendation(
                id=_rec_id("retry", spec.name, sid),
                kind="retry",
                workflow=spec.name,
                step=sid,
                service=service,
                title=f"Retry {spec.name}.{sid} up to 2 times ({service}.{action})",
                rationale=(
                    f"{nf} of {n} calls failed ({fail_rate:.1%}), {transient:.0%} of them "
                    f"transient ({', '.join(sorted(set(classes)))}); step retries now {retries}"
                ),
                saving_ms_per_day=0.0,
                saving_calls_per_day=recovered,
                confidence=round(evidence(nf, 10) * transient, 3),
                change=Change(str(spec.path), sid, "retries", step.get("retries"), 2),
            )
        )
    timeout_s = _parse_seconds(step.get("timeout"))
    ok_lat = mine.loc[mine["ok"], "latency_ms"]
    if timeouts >= 0.5 and timeout_s is not None and len(ok_lat) >= 10:
        p99 = float(ok_lat.quantile(0.99)) / 1000
        if timeout_s < 1.5 * p99:
            new_s = math.ceil(1.5 * p99)
            out.append(
                Recommendation(
                    id=_rec_id("timeout", spec.name, sid),
                    kind="timeout",
                    workflow=spec.name,
                    step=sid,
                    service=service,
                    title=f"Raise the timeout of {spec.name}.{sid} to {new_s}s",
                    rationale=(
                        f"{timeouts:.0%} of {nf} failures are timeouts at {timeout_s:g}s while "
                        f"successful calls reach p99 {p99:.1f}s"
                    ),
                    saving_ms_per_day=0.0,
                    saving_calls_per_day=nf * timeouts * per_day,
                    confidence=round(evidence(nf, 10) * timeouts, 3),
                    change=Change(str(spec.path), sid, "timeout", step.get("timeout"), f"{new_s}s"),
                )
            )
    if permanent >= 0.7 and retries > 0:
        out.append(
            Recommendation(
                id=_rec_id("retry", spec.name, sid, "off"),
                kind="retry",
                workflow=spec.name,
                step=sid,
                service=service,
                title=f"Stop retrying {spec.name}.{sid}: its failures are permanent",
                rationale=(
                    f"{permanent:.0%} of {nf} failures are 4xx errors a retry cannot fix; "
                    f"each failure costs {retries} extra attempts"
                ),
                saving_ms_per_day=float(fails["latency_ms"].mean()) * nf * retries * per_day,
                saving_calls_per_day=nf * retries * per_day,
                confidence=round(evidence(nf, 10) * permanent, 3),
                change=Change(str(spec.path), sid, "retries", step.get("retries"), 0),
            )
        )
    return out


def recommend(
    calls: pd.DataFrame,
    runs: pd.DataFrame,
    specs: Mapping[str, SpecFile],
) -> list[Recommendation]:
    """Find optimization recommendations (kinds and formulas in the module docstring).

    Args:
        calls: ``calls`` rows (needs service, action, method, path, ts, ok, latency_ms,
            error_class, run_id).
        runs: ``workflow_runs`` rows (needs run_id, workflow, started_at).
        specs: Workflow specs by name (:func:`load_specs`).

    Returns:
        Recommendations, highest confidence first, then biggest saving.
    """
    if calls.empty:  # no calls, no evidence
        return []
    calls = calls.copy()
    calls["ts"] = pd.to_datetime(calls["ts"], utc=True)
    runs = runs.copy()
    if len(runs):
        runs["started_at"] = pd.to_datetime(runs["started_at"], utc=True)
    days = _days(calls, runs)
    out: list[Recommendation] = []
    for spec in specs.values():
        wr = runs[runs["workflow"] == spec.name] if len(runs) else runs
        n_runs = int(wr["run_id"].nunique()) if len(wr) else 0
        if n_runs == 0:
            # No runs to learn step costs from; providers can still be compared on
            # everything else that called them (probes' calls, other workflows, CLI).
            for step in spec.steps:
                service, action = _step_targets(step)[0]
                mask = (calls["service"] == service) & (calls["action"] == action)
                found = _provider(spec, step, calls, int(mask.sum()) / days)
                if found is not None:
                    out.append(found)
            continue
        sc = calls[calls["run_id"].isin(set(wr["run_id"]))]
        runs_per_day = n_runs / days
        per_day = 1 / days
        out.extend(_parallelize(spec, sc, n_runs, runs_per_day))
        for step in spec.steps:
            targets = set(_step_targets(step))
            step_calls = sc[
                [(s, a) in targets for s, a in zip(sc["service"], sc["action"], strict=True)]
            ]
            for found in (
                _cache(spec, step, sc, per_day),
                _batch(spec, step, sc, n_runs, runs_per_day),
                _provider(spec, step, calls, len(step_calls) / days),
            ):
                if found is not None:
                    out.append(found)
            out.extend(_retry_timeout(spec, step, sc, per_day))
    out.sort(key=lambda r: (-r.confidence, -(r.saving_ms_per_day + r.saving_calls_per_day)))
    return out
