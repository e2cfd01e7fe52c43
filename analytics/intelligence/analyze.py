"""Analysis of a workflow spec before it runs: what the validator says, where the time
goes, what could go wrong, and what the recommended changes would give.

:func:`analyze_spec` takes a spec (a file, a built-in name, or a parsed YAML document)
and the metrics store's history (:class:`History`: ``calls`` and ``workflow_runs`` rows as
DataFrames; read from the store with :func:`load_history` when not given) and returns an
:class:`Analysis`:

- **validation**: the workflow validator's errors and warnings
  (:func:`junction.workflows.validate.validate_document`, the one every spec goes through);
- **steps**: per step, the integration action it calls first (a capability step's first
  provider, as :func:`junction.workflows.capabilities.candidates` orders them) and that
  action's p50/p95 latency over the window's *successful* calls (``quantile_cont``,
  linear interpolation, as the report computes them), or an explicit "no history";
- **critical path**: the longest chain through the step DAG
  (:meth:`WorkflowSpec.dependencies`) by summed p95 (then p50, then steps). A step without
  history counts 0 ms and marks the totals ``partial``. The sum of per-step p95s bounds a
  run's p95 from above rather than estimating it;
- **parallelizable**: ``needs`` entries that serialise two steps although neither reads
  the other's output and no data dependency orders them anyway; each with the critical
  path's p95 saved by dropping it;
- **unprotected**: steps without ``retries`` (only where the action is idempotent: the
  validator refuses retries of the others), ``timeout`` or an alternative provider;
- **unkeyed side effects**: side-effecting steps without an explicit ``idempotency_key``
  (the runner derives one from workflow, step and parameters, or, for an action that takes
  no key, records the effect in its journal);
- **success**: :func:`analytics.intelligence.success.predict_success` (its reasons, and
  "not confident" under its threshold);
- **what-if**: the recommendations engine's (:func:`analytics.recommend.recommend`) spec
  changes applied in memory, the edited spec validated and analysed again, and the
  deltas of the critical path's p95 and of the success probability. Nothing is written.

Results are pydantic models: the CLI prints them, the API returns them as they are.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from analytics.intelligence.analyze_steps import (
    CriticalPath,
    ParallelPair,
    StepTiming,
    UnkeyedEffect,
    Unprotected,
    critical_path,
    parallelizable,
    spec_services,
    step_timings,
    unkeyed_side_effects,
    unprotected,
)
from analytics.intelligence.success import HISTORY_SPAN, predict_success
from analytics.recommend import Change, Recommendation, SpecFile, recommend
from analytics.report.queries import window_end
from integrations.yamlconfig import ConfigError, YamlDocument, parse_yaml, read_yaml
from junction.settings import Settings
from junction.store import MetricsStore, open_store
from junction.workflows.builtins import resolve_spec_path
from junction.workflows.problems import SpecError, ValidationResult
from junction.workflows.spec import WorkflowSpec
from junction.workflows.validate import validate_document

__all__ = [
    "Analysis",
    "CriticalPath",
    "Delta",
    "History",
    "ParallelPair",
    "PlannedChange",
    "Problem",
    "StepTiming",
    "SuccessInfo",
    "UnkeyedEffect",
    "Unprotected",
    "Validation",
    "WhatIf",
    "Window",
    "analyze_spec",
    "analyze_text",
    "load_history",
    "read_spec",
]

CALL_COLUMNS = (
    "ts, service, action, method, path, ok, latency_ms, error_class, attempts, breaker_state, "
    "run_id"
)
"""The ``calls`` columns the analysis, the recommendations engine and the success model read."""
RUN_COLUMNS = "run_id, workflow, started_at, ended_at, status, duration_ms, retries, fallbacks"
"""The ``workflow_runs`` columns they read."""


# --- results ------------------------------------------------------------------------------------


class Problem(BaseModel):
    """One validation error or warning."""

    line: int | None
    step: str | None
    message: str


class Validation(BaseModel):
    """What the workflow validator found (``ok``: no errors)."""

    ok: bool
    errors: list[Problem]
    warnings: list[Problem]


class Window(BaseModel):
    """The history read: the ``days`` before the store's newest call or probe."""

    start: datetime
    end: datetime
    days: int


class SuccessInfo(BaseModel):
    """The success model's prediction for a run starting now."""

    probability: float | None
    confident: bool
    reasons: list[str]
    method: str
    baseline: float | None
    model_version: str | None
    note: str | None


class PlannedChange(BaseModel):
    """A recommended spec edit, as the what-if applied (or skipped) it."""

    id: str
    kind: str
    step: str
    field: str
    old: Any = None
    new: Any = None
    confidence: float
    title: str
    applied: bool
    reason: str | None = Field(None, description="Why it was not applied.")


class Delta(BaseModel):
    """A number before and after the changes (``change`` = after - before)."""

    before: float | None
    after: float | None
    change: float | None


class WhatIf(BaseModel):
    """The analysis again with the recommended changes applied in memory."""

    changes: list[PlannedChange]
    valid: bool = Field(description="The edited spec passes the validator.")
    note: str | None
    critical_path: list[str]
    critical_path_p95_ms: Delta
    success_probability: Delta
    errors: list[Problem] = Field(default_factory=list)


class Analysis(BaseModel):
    """Everything :func:`analyze_spec` found (see the module docstring)."""

    source: str
    name: str | None
    validation: Validation
    window: Window | None
    steps: list[StepTiming]
    critical_path: CriticalPath | None
    parallelizable: list[ParallelPair]
    unprotected: list[Unprotected]
    unkeyed_side_effects: list[UnkeyedEffect]
    success: SuccessInfo | None
    what_if: WhatIf | None
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def nothing_more(
        cls, source: str, name: str | None, validation: Validation, note: str
    ) -> Analysis:
        """The analysis of a spec that is not a workflow: its validation only."""
        return cls(
            source=source,
            name=name,
            validation=validation,
            window=None,
            steps=[],
            critical_path=None,
            parallelizable=[],
            unprotected=[],
            unkeyed_side_effects=[],
            success=None,
            what_if=None,
            notes=[note],
        )


# --- history ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """The metrics store's rows an analysis reads.

    Attributes:
        calls: ``calls`` rows (:data:`CALL_COLUMNS`).
        runs: ``workflow_runs`` rows (:data:`RUN_COLUMNS`).
        window: The time range they cover (``None``: an empty store).
    """

    calls: pd.DataFrame
    runs: pd.DataFrame
    window: Window | None = None

    @classmethod
    def empty(cls) -> History:
        """No history at all."""
        return cls(
            pd.DataFrame(columns=CALL_COLUMNS.split(", ")),
            pd.DataFrame(columns=RUN_COLUMNS.split(", ")),
            None,
        )


def load_history(store: MetricsStore, spec: WorkflowSpec, *, days: int) -> History:
    """The calls of ``spec``'s integrations and the runs of ``spec`` over ``days``.

    The window ends at the store's newest call or probe (as the report's does).
    """
    end = window_end(store)
    if end is None:
        return History.empty()
    start = end - timedelta(days=days)
    calls = store.query(
        f"SELECT {CALL_COLUMNS} FROM calls WHERE ts >= ? AND ts <= ? AND list_contains(?, service)",
        [start, end, spec_services(spec)],
    )
    runs = store.query(
        f"SELECT {RUN_COLUMNS} FROM workflow_runs "
        "WHERE started_at >= ? AND started_at <= ? AND workflow = ?",
        [start, end, spec.name],
    )
    return History(calls, runs, Window(start=start, end=end, days=days))


# --- reading a spec -----------------------------------------------------------------------------


def read_spec(spec_or_path: str | Path | YamlDocument) -> YamlDocument:
    """The parsed YAML of a spec file, a built-in spec's name, or a document as given.

    Raises:
        FileNotFoundError: No such file or built-in spec (the message lists the built-ins).
        ConfigError: The file is not readable YAML (size, syntax, duplicate keys...).
    """
    if isinstance(spec_or_path, YamlDocument):
        return spec_or_path
    return read_yaml(resolve_spec_path(spec_or_path))


def _problems(errors: list[SpecError]) -> list[Problem]:
    return [Problem(line=e.line, step=e.step, message=e.message) for e in errors]


def _validation(result: ValidationResult) -> Validation:
    return Validation(
        ok=result.ok, errors=_problems(result.errors), warnings=_problems(result.warnings)
    )


def _success(spec: WorkflowSpec, run: _Run) -> SuccessInfo:
    """The success model's prediction, from the day of history before the run's start."""
    calls, runs = run.history.calls, run.history.runs
    if len(calls):
        ts = pd.to_datetime(calls["ts"], utc=True)
        calls = calls[(ts >= run.at - HISTORY_SPAN) & (ts < run.at)]
    if len(runs):
        started = pd.to_datetime(runs["started_at"], utc=True)
        runs = runs[(started >= run.at - HISTORY_SPAN) & (started < run.at)]
    found = predict_success(
        spec, run.settings, at=run.at, history=calls.reset_index(drop=True), runs=runs
    )
    return SuccessInfo(
        probability=round(found.probability, 4),
        confident=found.confident,
        reasons=list(found.reasons),
        method=found.method,
        baseline=round(found.baseline, 4),
        model_version=found.model_version,
        note=found.note,
    )


# --- what-if ------------------------------------------------------------------------------------


def _edit(change: Change, current: Any) -> tuple[Any, str | None]:
    """The value ``change`` gives its field when the step has ``current``, or why not."""
    if change.field == "needs":
        have = [current] if isinstance(current, str) else list(current or [])
        dropped = set(change.old or []) - set(change.new or [])
        # Two recommendations may each drop an entry of one step's `needs`, each computed
        # against the whole list: drop this one's entries from what is left.
        if dropped and dropped <= set(have):
            return [n for n in have if n not in dropped] or None, None
    if current == change.old:
        return change.new, None
    return None, f"{change.step}.{change.field} is {current!r}, not {change.old!r}"


def _apply_changes(
    data: dict[str, Any], recs: list[Recommendation], source: str
) -> tuple[dict[str, Any], list[PlannedChange]]:
    """A copy of the spec data with each recommendation's change made (none is written).

    A change whose step no longer has the recorded old value is skipped, as
    :func:`analytics.apply.apply_recommendations` skips it; so is a change after which
    the spec would not validate (the others still apply).
    """
    out = copy.deepcopy(data)
    planned: list[PlannedChange] = []
    for rec in recs:
        change = rec.change
        if change is None:
            continue  # advisory: nothing to apply
        edited = copy.deepcopy(out)
        steps = {str(s.get("id")): s for s in edited.get("steps") or [] if isinstance(s, dict)}
        step = steps.get(change.step)
        reason: str | None = f"no step {change.step!r} in the spec"
        if step is not None:
            value, reason = _edit(change, step.get(change.field))
        if step is not None and reason is None:
            if value is None:
                step.pop(change.field, None)
            else:
                step[change.field] = copy.deepcopy(value)
            errors = validate_document(YamlDocument(data=edited, source=source)).errors
            if errors:
                reason = f"the spec would not validate: {errors[0].message}"
            else:
                out = edited
        planned.append(
            PlannedChange(
                id=rec.id,
                kind=rec.kind,
                step=change.step,
                field=change.field,
                old=change.old,
                new=change.new,
                confidence=rec.confidence,
                title=rec.title,
                applied=reason is None,
                reason=reason,
            )
        )
    return out, planned


def _delta(before: float | None, after: float | None) -> Delta:
    change = None if before is None or after is None else round(after - before, 4)
    return Delta(before=before, after=after, change=change)


def _what_if(doc: YamlDocument, spec: WorkflowSpec, before: Analysis, run: _Run) -> WhatIf:
    specs = {spec.name: SpecFile(Path(doc.source), doc.data)}
    recs = recommend(run.history.calls, run.history.runs, specs)
    data, changes = _apply_changes(doc.data, recs, doc.source)
    cp_before = before.critical_path.p95_ms if before.critical_path else None
    p_before = before.success.probability if before.success else None
    if not any(c.applied for c in changes):
        why = (
            "no recommended change: no recorded runs or calls of this workflow show one"
            if not changes
            else "no recommended change applies to this spec as it is"
        )
        return WhatIf(
            changes=changes,
            valid=True,
            note=why,
            critical_path=before.critical_path.steps if before.critical_path else [],
            critical_path_p95_ms=_delta(cp_before, cp_before),
            success_probability=_delta(p_before, p_before),
        )
    after = _analyze(YamlDocument(data=data, source=doc.source), run, what_if=False)
    if not after.validation.ok:
        return WhatIf(
            changes=changes,
            valid=False,
            note="the spec with the changes applied does not validate",
            critical_path=[],
            critical_path_p95_ms=_delta(cp_before, None),
            success_probability=_delta(p_before, None),
            errors=after.validation.errors,
        )
    return WhatIf(
        changes=changes,
        valid=True,
        note=None,
        critical_path=after.critical_path.steps if after.critical_path else [],
        critical_path_p95_ms=_delta(
            cp_before, after.critical_path.p95_ms if after.critical_path else None
        ),
        success_probability=_delta(p_before, after.success.probability if after.success else None),
    )


# --- the analysis -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """What one analysis (and its what-if) shares."""

    settings: Settings
    history: History
    at: datetime


def _analyze(doc: YamlDocument, run: _Run, *, what_if: bool) -> Analysis:
    result = validate_document(doc)
    validation = _validation(result)
    spec = result.spec
    name = doc.data.get("name") if isinstance(doc.data, dict) else None
    if spec is None:
        return Analysis.nothing_more(
            doc.source,
            name if isinstance(name, str) else None,
            validation,
            "the spec does not parse as a workflow: nothing more to analyse",
        )
    notes: list[str] = []
    history = run.history
    span = (
        f"in the last {history.window.days} days"
        if history.window
        else "(the metrics store has none)"
    )
    timings = step_timings(spec, history.calls, span)
    deps = spec.dependencies()
    critical: CriticalPath | None = None
    parallel: list[ParallelPair] = []
    try:
        critical = critical_path(spec, deps, timings)
        parallel = parallelizable(spec, deps, timings, critical.p95_ms)
    except ValueError:
        notes.append("the dependencies have a cycle: no critical path")
    success = None
    if validation.ok:
        success = _success(spec, run)
    else:
        notes.append("no success prediction or what-if for a spec that does not validate")
    analysis = Analysis(
        source=doc.source,
        name=spec.name,
        validation=validation,
        window=history.window,
        steps=timings,
        critical_path=critical,
        parallelizable=parallel,
        unprotected=unprotected(spec),
        unkeyed_side_effects=unkeyed_side_effects(spec),
        success=success,
        what_if=None,
        notes=notes,
    )
    if what_if and validation.ok:
        analysis.what_if = _what_if(doc, spec, analysis, run)
    return analysis


def analyze_spec(
    spec_or_path: str | Path | YamlDocument,
    settings: Settings,
    *,
    history: History | None = None,
    store: MetricsStore | None = None,
    days: int | None = None,
    at: datetime | None = None,
) -> Analysis:
    """Analyse a workflow spec (see the module docstring); nothing runs, nothing is written.

    Args:
        spec_or_path: A spec file, a built-in spec's name, or a parsed document.
        settings: Settings (the metrics store, the window's default length, the model).
        history: The rows to read; default: :func:`load_history` from ``store``.
        store: The metrics store; default: the one of ``settings``.
        days: Days of history (default ``settings.analytics_report_days``).
        at: When the run would start (the success model's time features); default now.

    Returns:
        The analysis. An invalid spec is a result (``validation.ok`` false), not an error.

    Raises:
        FileNotFoundError: No such file or built-in spec.
        ConfigError: The file is not readable YAML.
    """
    doc = read_spec(spec_or_path)
    if history is None:
        spec = validate_document(doc).spec
        if spec is None:
            history = History.empty()
        elif store is not None:
            history = load_history(store, spec, days=days or settings.analytics_report_days)
        else:
            with open_store(settings) as opened:
                history = load_history(opened, spec, days=days or settings.analytics_report_days)
    start = (at or datetime.now(UTC)).astimezone(UTC)
    return _analyze(doc, _Run(settings, history, start), what_if=True)


def analyze_text(
    text: str,
    settings: Settings,
    *,
    source: str = "<spec>",
    store: MetricsStore | None = None,
    days: int | None = None,
    at: datetime | None = None,
) -> Analysis:
    """:func:`analyze_spec` of a spec's YAML text; unreadable YAML is a result too.

    Returns:
        The analysis; for text the bounded YAML loader refuses (syntax, size, duplicate
        keys), ``validation`` lists its problems and nothing else is analysed.
    """
    try:
        doc = parse_yaml(text, source=source)
    except ConfigError as exc:
        errors = [Problem(line=p.line, step=None, message=p.message) for p in exc.problems]
        return Analysis.nothing_more(
            source,
            None,
            Validation(ok=False, errors=errors, warnings=[]),
            "the text is not readable YAML: nothing more to analyse",
        )
    return analyze_spec(doc, settings, store=store, days=days, at=at)
