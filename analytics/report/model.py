"""What the analytics report shows, as data: :class:`ReportData` and its KPI lines.

Also the small helpers every report module needs to read DuckDB results under pandas 3,
where a SQL ``NULL`` arrives as ``None``, ``NaN``, ``NaT`` or ``pd.NA`` depending on the
column's type: :func:`missing` and :func:`opt` treat all four alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from analytics.forecast import ForecastOutcome
from analytics.prediction import PredictionOutcome
from analytics.recommend import Recommendation
from analytics.validation import ValidationReport
from junction.workflows.depmap import DependencyMap

BASELINE_WORKFLOW_SUCCESS = 0.85
"""The product plan's baseline workflow success rate."""
BASELINE_DETECTION = "5-10 min"
"""The product plan's baseline error detection time."""
SUCCESS_STATUSES = ("completed", "succeeded", "success", "ok")
"""``workflow_runs.status`` values that count as a successful run."""


@dataclass(frozen=True)
class Kpi:
    """One line of the KPI scorecard.

    Attributes:
        name: What is measured.
        target: The plan's target, as text (">= 92%").
        value: The measured value, as text ("n/a" without data).
        baseline: The baseline, as text.
        baseline_source: Where the baseline comes from.
        met: Whether the target is met (``None``: not enough data).
        note: How it was measured, or why it could not be.
    """

    name: str
    target: str
    value: str
    baseline: str
    baseline_source: str
    met: bool | None
    note: str

    @property
    def status(self) -> str:
        """``met``, ``missed`` or ``n/a``."""
        return "n/a" if self.met is None else ("met" if self.met else "missed")


@dataclass
class ReportData:
    """Everything the report shows (filled by the stages of :mod:`analytics.report.pipeline`).

    Attributes:
        generated_at: When the report was made (UTC).
        start: Start of the analysed window (UTC).
        end: End of the window (the newest row, UTC).
        health: Per service, last 24 h: calls, success_rate, p50_ms, p95_ms, uptime,
            score, status, reasons.
        performance: Per service over the window: calls_per_day, success_rate, p50/p95/
            p99_ms, wow_volume, wow_p95 (week-over-week change, fractions).
        alerts_active: Alerts whose latest transition is ``firing``.
        alerts_recent: The latest alert transitions.
        hourly: Hourly per-service aggregates (:func:`analytics.forecast.hourly_series`).
        forecasts: ``(service, metric) -> Forecast | NotEnoughData``.
        stream_scores: ``(service, metric) -> timestamp/score frame`` of the streaming
            detector.
        predictions: ``service -> [latency, success_rate, error_budget]``.
        recommendations: Optimization recommendations.
        dependency: The dependency map of the workflow specs (``None``: no specs).
        kpis: The scorecard.
        validation: The data validation report, when validation ran.
        notes: Problems met while collecting (a section's input missing, ...).
        timings: Seconds per stage.
        week_over_week: Per service and action, this week against the last
            (:func:`analytics.trends.week_over_week`).
    """

    generated_at: datetime
    start: datetime
    end: datetime
    health: pd.DataFrame = field(default_factory=pd.DataFrame)
    performance: pd.DataFrame = field(default_factory=pd.DataFrame)
    alerts_active: pd.DataFrame = field(default_factory=pd.DataFrame)
    alerts_recent: pd.DataFrame = field(default_factory=pd.DataFrame)
    hourly: pd.DataFrame = field(default_factory=pd.DataFrame)
    forecasts: dict[tuple[str, str], ForecastOutcome] = field(default_factory=dict)
    stream_scores: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    predictions: dict[str, list[PredictionOutcome]] = field(default_factory=dict)
    recommendations: list[Recommendation] = field(default_factory=list)
    dependency: DependencyMap | None = None
    kpis: list[Kpi] = field(default_factory=list)
    validation: ValidationReport | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    week_over_week: pd.DataFrame | None = None

    @property
    def empty(self) -> bool:
        """True when the store held nothing to analyse."""
        return self.start == self.end


def missing(value: Any) -> bool:
    """True for ``None``, ``NaN``, ``NaT`` and ``pd.NA`` (never for lists or arrays)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if pd.api.types.is_scalar(value):
        return bool(pd.isna(value))
    return False


def opt(value: Any) -> Any:
    """``value``, or ``None`` when it is missing (:func:`missing`)."""
    return None if missing(value) else value


def opt_float(value: Any) -> float | None:
    """``float(value)``, or ``None`` when it is missing."""
    return None if missing(value) else float(value)


def utc(value: Any) -> datetime | None:
    """A timestamp from DuckDB/pandas as an aware UTC ``datetime`` (``None`` if missing)."""
    if missing(value):
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    return ts.to_pydatetime()


class Row:
    """Attribute access to one record (keeps pandas' scalar union types out of mypy's way)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - only for typing
        raise AttributeError(name)


def records(frame: pd.DataFrame) -> list[Any]:
    """The frame's rows as :class:`Row` objects, missing values as ``None``."""
    return [Row({str(k): opt(v) for k, v in row.items()}) for row in frame.to_dict("records")]
