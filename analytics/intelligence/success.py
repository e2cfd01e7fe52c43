"""Predict a workflow run's probability of success before it starts.

:func:`predict_success` is what ``junction workflow analyze``, the API and the dashboard
call. It uses the live success model (:mod:`analytics.intelligence.models`) when one is
promoted and loads cleanly, and the **naive estimate** otherwise: the product, over the
services the spec's steps call first, of their success rate in the hour before ``at`` (the
day before when the hour has no calls) from the metrics store's ``calls`` rows.

What "confident" means: the model's probabilities are calibrated on held-out runs, so for a
prediction ``p`` the probability that the predicted outcome (success if ``p >= 0.5``, else
failure) happens is ``max(p, 1 - p)``; that is the prediction's **confidence**. A
prediction is *confident* when the confidence reaches ``model_confidence_threshold``
(0.85, ``JUNCTION_MODEL_CONFIDENCE_THRESHOLD``). The naive estimate is not calibrated (it
ignores retries, fallbacks and conditions), so it is never confident. Text output shows a
prediction that is not confident as "not confident", with the estimate only in brackets.

A missing, corrupt or tampered model never fails a caller: the prediction falls back to the
naive estimate and says why in ``note`` (the registry records a warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analytics.intelligence.features import (
    CALL_COLUMNS,
    FEATURES,
    RUN_COLUMNS,
    build_features,
    plan_services,
    spec_plan,
)
from junction.workflows.spec import WorkflowSpec

if TYPE_CHECKING:
    from junction.settings import Settings
    from junction.store import MetricsStore

__all__ = [
    "SuccessPrediction",
    "confidence",
    "load_history",
    "predict_success",
]

HISTORY_SPAN = timedelta(days=1)
"""How far before a run its features look (the longest window)."""


@dataclass(frozen=True)
class SuccessPrediction:
    """A run's predicted probability of success.

    Attributes:
        probability: P(the run completes), 0..1.
        confident: ``confidence(probability)`` reaches the threshold and the method is a
            calibrated model (see the module docstring).
        reasons: The main reasons, most important first (plain sentences).
        method: ``"model vN"`` or ``"naive"``.
        baseline: The naive estimate for the same run (equal to ``probability`` when the
            method is naive).
        model_version: The live model's version used (``None`` for naive).
        note: Why the naive estimate was used, or what was missing (``None``: nothing).
    """

    probability: float
    confident: bool
    reasons: tuple[str, ...]
    method: str
    baseline: float
    model_version: str | None = None
    note: str | None = None

    @property
    def confidence(self) -> float:
        """``max(p, 1 - p)``: the probability the predicted outcome happens."""
        return confidence(self.probability)

    def text(self) -> str:
        """One line for users: a number only when confident."""
        shown = f"{self.probability:.0%}"
        if self.confident:
            return f"{shown} likely to succeed ({self.method})"
        return f"not confident (estimate {shown}, {self.method})"

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (``--json``, the API)."""
        return {
            "probability": round(self.probability, 4),
            "confident": self.confident,
            "confidence": round(self.confidence, 4),
            "reasons": list(self.reasons),
            "method": self.method,
            "baseline": round(self.baseline, 4),
            "model_version": self.model_version,
            "note": self.note,
        }


def confidence(probability: float) -> float:
    """The probability that the predicted outcome happens, for a calibrated ``probability``."""
    return max(probability, 1.0 - probability)


def _store(settings: Settings) -> MetricsStore | None:
    from junction.store import open_store

    # A local store with no calls yet has nothing to learn from; an object store may.
    if not settings.store_url and not (settings.metrics_dir / "calls").exists():
        return None
    return open_store(settings)


def load_history(
    settings: Settings,
    at: datetime,
    *,
    span: timedelta = HISTORY_SPAN,
    services: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``calls`` and ``workflow_runs`` rows of ``span`` before ``at`` from the store.

    Args:
        settings: Settings (the store).
        at: End of the span (excluded).
        span: How far back.
        services: Only the calls of these services (``None``: every service).

    Returns:
        ``(calls, runs)`` with :data:`CALL_COLUMNS` and :data:`RUN_COLUMNS` (empty frames
        when the store has no data).
    """
    store = _store(settings)
    empty_calls = pd.DataFrame(columns=list(CALL_COLUMNS))
    empty_runs = pd.DataFrame(columns=list(RUN_COLUMNS))
    if store is None:
        return empty_calls, empty_runs
    start = at - span
    only = ""
    params: list[object] = [start, at]
    if services is not None:
        only = f" AND service IN ({', '.join('?' for _ in services)})" if services else " AND false"
        params += services
    calls = store.query(
        f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE ts >= ? AND ts < ?{only} ORDER BY ts",
        params,
    )
    runs = store.query(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM workflow_runs "
        "WHERE started_at >= ? AND started_at < ?",
        [start, at],
    )
    return calls, runs


def _reasons(calls: pd.DataFrame, services: list[str], at: datetime) -> list[str]:
    """Plain sentences about the services' recent health, worst first."""
    if calls.empty:
        return [f"no recorded calls of {', '.join(services)} in the day before"]
    ts = pd.to_datetime(calls["ts"], utc=True)
    out: list[tuple[float, str]] = []
    for service in services:
        mine = calls[(calls["service"] == service)]
        if mine.empty:
            out.append((0.5, f"{service}: no recorded calls in the day before"))
            continue
        recent = mine[ts[mine.index] >= at - timedelta(hours=1)]
        if not recent.empty:
            rate = float(recent["ok"].astype(bool).mean())
            if rate < 0.99:
                out.append(
                    (
                        rate,
                        f"{service}: {rate:.0%} of {len(recent)} calls succeeded in the last hour",
                    )
                )
        last5 = mine[ts[mine.index] >= at - timedelta(minutes=5)]
        if not last5.empty and (last5["breaker_state"].astype(str) != "closed").any():
            out.append((0.0, f"{service}: circuit breaker open in the last 5 minutes"))
    out.sort(key=lambda item: item[0])
    if not out:
        return [f"every service ({', '.join(services)}) healthy in the last hour"]
    return [text for _, text in out[:4]]


def predict_success(
    spec: WorkflowSpec,
    settings: Settings,
    *,
    at: datetime | None = None,
    history: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
) -> SuccessPrediction:
    """Predict whether a run of ``spec`` starting at ``at`` will complete.

    Never raises for a missing or broken model or store data: it falls back to the naive
    estimate and says why in ``note``.

    Args:
        spec: The workflow (e.g. from ``load_workflow``).
        settings: Settings (the store, the model registry under ``home``, the threshold).
        at: When the run starts (default now, UTC).
        history: ``calls`` rows (:data:`~analytics.intelligence.features.CALL_COLUMNS`)
            of the day before ``at``; ``None`` reads them from the metrics store. Pass the
            same frame to predict several variants of a spec (what-if) at one cost.
        runs: ``workflow_runs`` rows of that day (recent-run features); ``None`` with
            ``history=None`` reads them from the store, else none.

    Returns:
        The :class:`SuccessPrediction`.
    """
    at = (at or datetime.now(UTC)).astimezone(UTC)
    plan = spec_plan(spec)
    services = plan_services(plan)
    unread = None
    if history is None:
        every = sorted({svc for step in plan for svc, _ in step.alternatives})
        try:
            history, store_runs = load_history(settings, at, services=every)
        except Exception as exc:  # an unreadable store must not fail the caller
            history, store_runs = pd.DataFrame(columns=list(CALL_COLUMNS)), None
            unread = f"metrics store unreadable ({type(exc).__name__})"
        runs = store_runs if runs is None else runs
    frame = build_features(
        pd.DataFrame({"workflow": [spec.name], "started_at": [at]}),
        {spec.name: plan},
        history,
        runs,
    )
    baseline = float(frame["naive"].iloc[0])
    reasons = tuple(_reasons(history, services, at))
    note = (
        None if not history.empty else "no call history: the estimate assumes every service is up"
    )
    if unread:
        note = f"{unread}; {note}"
    model_prediction = _model_probability(settings, frame[list(FEATURES)])
    if isinstance(model_prediction, str):
        return SuccessPrediction(
            probability=baseline,
            confident=False,
            reasons=reasons,
            method="naive",
            baseline=baseline,
            note=model_prediction if note is None else f"{model_prediction}; {note}",
        )
    probability, version = model_prediction
    threshold = settings.model_confidence_threshold
    return SuccessPrediction(
        probability=probability,
        confident=confidence(probability) >= threshold and not history.empty,
        reasons=reasons,
        method=f"model {version}",
        baseline=baseline,
        model_version=version,
        note=note,
    )


def _model_probability(settings: Settings, features: pd.DataFrame) -> tuple[float, str] | str:
    """The live model's probability and version, or why there is none (a sentence)."""
    from analytics.intelligence.models import load_live

    loaded = load_live(settings)
    if isinstance(loaded, str):
        return loaded
    try:
        p = float(loaded.predict(features)[0])
    except Exception as exc:  # a model that cannot score must not fail the caller
        return f"model {loaded.version} failed to predict ({type(exc).__name__}): naive estimate"
    if not np.isfinite(p):
        return f"model {loaded.version} gave no finite probability: naive estimate"
    return p, loaded.version
