"""The per-step facts of a workflow analysis, from the spec and the ``calls`` history.

Plain functions over a :class:`~junction.workflows.spec.WorkflowSpec` and a DataFrame of
``calls`` rows (see :mod:`analytics.intelligence.analyze` for how they are read):

- :func:`step_timings`: per step, the integration action it calls first (a capability
  step's first provider, in :func:`junction.workflows.capabilities.candidates` order) and
  that action's p50/p95 latency over the *successful* calls (pandas' linear-interpolation
  quantile, DuckDB's ``quantile_cont``, as the report computes them), or "no history";
- :func:`critical_path`: the longest chain through the step DAG
  (:meth:`WorkflowSpec.dependencies`) by summed p95, then p50, then number of steps. A step
  without history counts 0 ms and marks the totals ``partial``. A sum of per-step p95s
  bounds a run's p95 from above; it is not an estimate of it;
- :func:`parallelizable`: ``needs`` entries that serialise two steps although neither reads
  the other's output and no data dependency orders them anyway, with the critical path's
  p95 saved by dropping each;
- :func:`unprotected`: steps without ``retries`` (only where the action is idempotent: the
  validator refuses retries of the others), ``timeout`` or an alternative provider;
- :func:`unkeyed_side_effects`: side-effecting steps without an explicit
  ``idempotency_key``.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel, Field

from integrations.errors import IntegrationError
from junction.clients import get_action
from junction.workflows.capabilities import CAPABILITIES, candidates
from junction.workflows.spec import Step, WorkflowSpec
from junction.workflows.templating import step_references

__all__ = [
    "CriticalPath",
    "ParallelPair",
    "StepTiming",
    "UnkeyedEffect",
    "Unprotected",
    "critical_path",
    "parallelizable",
    "spec_services",
    "step_timings",
    "unkeyed_side_effects",
    "unprotected",
]


class StepTiming(BaseModel):
    """One step's latency from the history of the action it calls first."""

    step: str
    uses: str
    measured: str | None = Field(description="The <integration>.<action> whose calls are read.")
    calls: int = Field(description="Calls of that action in the window (failed ones too).")
    success_rate: float | None
    p50_ms: float | None = Field(description="Median latency of its successful calls.")
    p95_ms: float | None = Field(description="95th percentile latency of its successful calls.")
    critical: bool = Field(description="On the critical path.")
    note: str | None = Field(None, description="Why there are no numbers, or how to read them.")


class CriticalPath(BaseModel):
    """The longest chain of dependent steps by summed p95 latency."""

    steps: list[str]
    p50_ms: float = Field(description="Sum of the path's per-step p50.")
    p95_ms: float = Field(description="Sum of the path's per-step p95.")
    partial: bool = Field(description="Some steps have no history and count 0 ms.")
    without_history: list[str]


class ParallelPair(BaseModel):
    """A step that waits (``needs``) for another whose output it never reads."""

    step: str
    waits_for: str
    side_effect: bool = Field(description="Either step has a side effect the order may matter to.")
    p95_saving_ms: float = Field(description="Critical path p95 saved by dropping the `needs`.")
    note: str


class Unprotected(BaseModel):
    """A step missing some protection: ``retries``, ``timeout``, ``fallback``."""

    step: str
    missing: list[str]
    note: str


class UnkeyedEffect(BaseModel):
    """A side-effecting step without an explicit ``idempotency_key``."""

    step: str
    action: str
    key_field: str | None = Field(description="The action's key input (none: journal only).")
    note: str


def spec_services(spec: WorkflowSpec) -> list[str]:
    """Every integration a step of ``spec`` may call: its candidates, and every provider of
    its capability (a recommendation may prefer another one)."""
    found: set[str] = set()
    for step in spec.steps:
        try:
            found |= {c.integration for c in candidates(step)}
            target = step.target()
            if target.kind == "capability":
                found |= {b.integration for b in CAPABILITIES[target.text].bindings}
        except (IntegrationError, KeyError):  # unknown target: the validator says so
            continue
    return sorted(found)


def _primary(step: Step) -> tuple[str, str] | None:
    """The (integration, action) the runner tries first, ``None`` if the step is unknown."""
    try:
        found = candidates(step)
    except IntegrationError:
        return None
    return (found[0].integration, found[0].action) if found else None


def step_timings(spec: WorkflowSpec, calls: pd.DataFrame, span: str) -> list[StepTiming]:
    """Each step's latency from the calls of the action it calls first.

    Args:
        spec: The workflow.
        calls: ``calls`` rows (service, action, ok, latency_ms).
        span: The window in words, for "no history" notes (``in the last 30 days``).
    """
    stats: dict[tuple[str, str], tuple[int, float, float | None, float | None]] = {}
    if len(calls):
        for (service, action), rows in calls.groupby(["service", "action"], sort=False):
            ok = rows.loc[rows["ok"].astype(bool), "latency_ms"].astype(float)
            stats[(str(service), str(action))] = (
                len(rows),
                float(len(ok)) / len(rows),
                float(ok.quantile(0.5)) if len(ok) else None,
                float(ok.quantile(0.95)) if len(ok) else None,
            )
    out: list[StepTiming] = []
    for step in spec.steps:
        target = _primary(step)
        if target is None:
            out.append(
                StepTiming(
                    step=step.id,
                    uses=step.uses,
                    measured=None,
                    calls=0,
                    success_rate=None,
                    p50_ms=None,
                    p95_ms=None,
                    critical=False,
                    note="no history: the step's target is unknown (see validation)",
                )
            )
            continue
        measured = f"{target[0]}.{target[1]}"
        n, rate, p50, p95 = stats.get(target, (0, None, None, None))
        note = None
        if n == 0:
            note = f"no history: no {measured} calls {span}"
        elif p95 is None:
            note = f"no history of success: all {n} {measured} calls failed {span}"
        elif step.for_each:
            note = "per item (for_each): the step makes one call per item"
        elif step.when is not None:
            note = "conditional (when): counted as if it runs"
        out.append(
            StepTiming(
                step=step.id,
                uses=step.uses,
                measured=measured,
                calls=n,
                success_rate=None if rate is None else round(rate, 4),
                p50_ms=None if p50 is None else round(p50, 3),
                p95_ms=None if p95 is None else round(p95, 3),
                critical=False,
                note=note,
            )
        )
    return out


def _longest(
    spec: WorkflowSpec, deps: dict[str, set[str]], timings: dict[str, StepTiming]
) -> tuple[float, float, list[str]]:
    """(p95 sum, p50 sum, steps) of the longest chain of ``deps`` (a DAG)."""
    # The full graph's order is an order of any of its subgraphs (``deps`` may drop edges).
    order = [sid for wave in spec.topological_order() for sid in wave]
    best: dict[str, tuple[float, float, list[str]]] = {}
    for sid in order:
        t = timings[sid]
        before = max(
            (best[d] for d in deps[sid] if d in best),
            key=lambda b: (b[0], b[1], len(b[2])),
            default=(0.0, 0.0, []),
        )
        best[sid] = (
            before[0] + (t.p95_ms or 0.0),
            before[1] + (t.p50_ms or 0.0),
            [*before[2], sid],
        )
    return max(best.values(), key=lambda b: (b[0], b[1], len(b[2])), default=(0.0, 0.0, []))


def critical_path(
    spec: WorkflowSpec, deps: dict[str, set[str]], timings: list[StepTiming]
) -> CriticalPath:
    """The longest chain of ``deps`` by p95; marks its steps ``critical`` in ``timings``.

    Raises:
        ValueError: The dependencies have a cycle.
    """
    by_id = {t.step: t for t in timings}
    p95, p50, path = _longest(spec, deps, by_id)
    missing = [t.step for t in timings if t.p95_ms is None]
    for sid in path:
        by_id[sid].critical = True
    return CriticalPath(
        steps=path,
        p50_ms=round(p50, 3),
        p95_ms=round(p95, 3),
        partial=bool(missing),
        without_history=missing,
    )


def _data_deps(spec: WorkflowSpec) -> dict[str, set[str]]:
    """Each step's upstream steps by what its templates read (``needs`` left out)."""
    ids = {s.id for s in spec.steps}
    out: dict[str, set[str]] = {}
    for s in spec.steps:
        found: set[str] = set()
        for key, value in spec.template_fields(s).items():
            found |= step_references(value, expression=key in {"when", "for_each"})
        out[s.id] = (found & ids) - {s.id}
    return out


def _reaches(deps: dict[str, set[str]], start: str, goal: str) -> bool:
    """Whether ``goal`` is upstream of ``start`` in ``deps``."""
    seen: set[str] = set()
    todo = list(deps.get(start, ()))
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(deps.get(node, ()))
    return False


def _side_effect(step: Step) -> bool | None:
    """Whether the step's first action has a side effect (``None``: unknown action)."""
    target = _primary(step)
    if target is None:
        return None
    try:
        return not get_action(*target).read_only
    except IntegrationError:
        return None


def parallelizable(
    spec: WorkflowSpec, deps: dict[str, set[str]], timings: list[StepTiming], p95: float
) -> list[ParallelPair]:
    """``needs`` entries that order two steps no data dependency orders.

    Args:
        spec: The workflow (acyclic).
        deps: Its dependencies.
        timings: :func:`step_timings`.
        p95: The critical path's p95 with every ``needs``.
    """
    data = _data_deps(spec)
    by_id = {t.step: t for t in timings}
    out: list[ParallelPair] = []
    for step in spec.steps:
        for up in dict.fromkeys(step.needs):
            if up not in deps or up in data[step.id]:
                continue
            trimmed = {**deps, step.id: deps[step.id] - {up}}
            if _reaches(trimmed, step.id, up):
                continue  # still ordered by data: the `needs` only restates it
            effect = bool(_side_effect(step)) or bool(_side_effect(spec.step(up)))
            saving = max(0.0, p95 - _longest(spec, trimmed, by_id)[0])
            note = f"{step.id} waits for {up} but reads none of its output"
            if effect:
                note += "; a side effect may rely on the order: check before dropping `needs`"
            out.append(
                ParallelPair(
                    step=step.id,
                    waits_for=up,
                    side_effect=effect,
                    p95_saving_ms=round(saving, 3),
                    note=note,
                )
            )
    return out


def _alternatives(integration: str, action: str) -> list[str]:
    """Other providers of a capability ``integration.action`` serves."""
    out: list[str] = []
    for cap in CAPABILITIES.values():
        try:
            bindings = cap.bindings
        except IntegrationError:
            continue
        if any(b.integration == integration and b.action == action for b in bindings):
            out += [
                f"{b.integration} ({cap.name})" for b in bindings if b.integration != integration
            ]
    return out


def unprotected(spec: WorkflowSpec) -> list[Unprotected]:
    """Steps without ``retries`` (where allowed), ``timeout`` or an alternative provider."""
    out: list[Unprotected] = []
    for step in spec.steps:
        try:
            alts = candidates(step)
            action = get_action(alts[0].integration, alts[0].action)
        except (IntegrationError, IndexError):
            continue  # unknown target: the validator reports it
        missing: list[str] = []
        notes: list[str] = []
        if step.retries == 0:
            if action.idempotent or action.read_only:
                missing.append("retries")
            else:
                notes.append("not idempotent, so step retries are refused (the client's only)")
        if step.timeout is None:
            missing.append("timeout")
        if len(alts) <= 1:
            missing.append("fallback")
            others = _alternatives(alts[0].integration, alts[0].action)
            notes.append(
                f"possible fallback: {', '.join(others)}" if others else "no other provider"
            )
        if missing:
            out.append(Unprotected(step=step.id, missing=missing, note="; ".join(notes)))
    return out


def unkeyed_side_effects(spec: WorkflowSpec) -> list[UnkeyedEffect]:
    """Side-effecting steps (their first action) without an explicit ``idempotency_key``."""
    out: list[UnkeyedEffect] = []
    for step in spec.steps:
        if step.idempotency_key is not None:
            continue
        target = _primary(step)
        if target is None:
            continue
        try:
            action = get_action(*target)
        except IntegrationError:
            continue
        if action.read_only:
            continue
        if action.key_field:
            note = (
                f"the runner derives the key ({action.key_field}) from workflow, step and "
                "parameters: a rerun with other parameters repeats the side effect; key it "
                "on the business object (idempotency_key)"
            )
        else:
            note = "the action takes no key: a rerun relies on the runner's side-effect journal" + (
                "" if action.idempotent else " and a lost response cannot be retried"
            )
        out.append(
            UnkeyedEffect(
                step=step.id,
                action=f"{target[0]}.{target[1]}",
                key_field=action.key_field,
                note=note,
            )
        )
    return out
