"""The report's tables as plain rows: Prefect table artifacts and the CLI's ``--json``.

Rows hold plain values (text, numbers, ISO timestamps); artifacts render them escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analytics.prediction import Prediction, PredictionOutcome
from analytics.report.model import Kpi, ReportData


def kpi_rows(kpis: list[Kpi]) -> list[dict[str, Any]]:
    """One row per KPI: kpi, target, measured, baseline, baseline_source, status, note."""
    return [
        {
            "kpi": k.name,
            "target": k.target,
            "measured": k.value,
            "baseline": k.baseline,
            "baseline_source": k.baseline_source,
            "status": k.status,
            "note": k.note,
        }
        for k in kpis
    ]


def prediction_rows(predictions: Mapping[str, list[PredictionOutcome]]) -> list[dict[str, Any]]:
    """Every prediction (not the "not enough data" ones), most likely first."""
    rows: list[dict[str, Any]] = [
        {
            "service": svc,
            "risk": p.kind,
            "probability": round(p.probability, 3),
            "expected_at": p.expected_at.isoformat() if p.expected_at else None,
            "explanation": p.explanation,
        }
        for svc, outcomes in sorted(predictions.items())
        for p in outcomes
        if isinstance(p, Prediction)
    ]
    rows.sort(key=lambda r: -float(r["probability"]))
    return rows


def artifact_tables(data: ReportData) -> dict[str, tuple[list[dict[str, Any]], str]]:
    """``key -> (rows, description)`` of the table artifacts ``kpi-scorecard``,
    ``recommendations`` and ``failure-predictions`` (a placeholder row when empty)."""
    kpis = kpi_rows(data.kpis)
    met = sum(1 for k in data.kpis if k.met)
    recs = [r.as_row() for r in data.recommendations]
    preds = prediction_rows(data.predictions)
    likely = sum(1 for p in preds if float(p["probability"]) >= 0.5)
    return {
        "kpi-scorecard": (kpis, f"{met}/{len(kpis)} KPI targets met"),
        "recommendations": (
            recs or [{"id": "", "title": "no recommendations"}],
            f"{len(recs)} optimization recommendations",
        ),
        "failure-predictions": (
            [{**p, "expected_at": p["expected_at"] or ""} for p in preds]
            or [{"service": "", "explanation": "not enough data"}],
            f"{likely} risks >= 50%",
        ),
    }


__all__ = ["artifact_tables", "kpi_rows", "prediction_rows"]
