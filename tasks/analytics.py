"""Thin Prefect tasks of the analytics-report flow (the logic lives in ``analytics.*``).

Tasks pass DataFrames and forecasts to each other in memory; ``NO_CACHE`` keeps Prefect
from hashing those inputs for a cache key (slow for a month of data, and a report is
meant to be recomputed every run).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from analytics.forecast import ForecastOutcome
from analytics.prediction import PredictionOutcome
from analytics.recommend import Recommendation
from analytics.report import ReportData


def _store_and_settings() -> tuple[Any, Any]:
    from junction.health import open_store
    from junction.settings import get_settings

    settings = get_settings()
    return open_store(settings), settings


@task(name="analytics-window", cache_policy=NO_CACHE)
def analysis_window(days: int | None, workers: int | None) -> ReportData:
    """The window to analyse: ``days`` back from the newest row (empty store: now).

    Also starts the shared worker pool, so the workers import Prophet while the
    validation runs.
    """
    from analytics.forecast import shared_pool
    from analytics.report import window_end

    store, settings = _store_and_settings()
    shared_pool(workers or settings.analytics_forecast_workers)
    now = datetime.now(UTC)
    end = window_end(store)
    span = timedelta(days=days or settings.analytics_report_days)
    data = ReportData(generated_at=now, start=(end or now) - span, end=end or now)
    if end is None:
        data.notes.append("the metrics store is empty: nothing to analyse yet")
    return data


@task(name="validate-metrics", cache_policy=NO_CACHE)
def validate_metrics(data: ReportData) -> Any:
    """Great Expectations checks over the window (``analytics.validation``).

    Raises:
        analytics.validation.DataValidationError: A critical check failed; its message
            lists every failed check, and the flow stops there.
    """
    from analytics.report import run_validation

    store, settings = _store_and_settings()
    return run_validation(store, settings, data.start, data.end)


@task(name="compute-trends", cache_policy=NO_CACHE)
def compute_trends(data: ReportData) -> dict[str, pd.DataFrame]:
    """Health (24 h), performance, alerts, hourly series and G's DuckDB trend tables."""
    from analytics.forecast import hourly_series
    from analytics.report import alert_tables, health_overview, performance_table

    store, settings = _store_and_settings()
    days = max(1, round((data.end - data.start) / timedelta(days=1)))
    active, recent = alert_tables(store, data.start, data.end)
    out = {
        "health": health_overview(store, settings, data.end),
        "performance": performance_table(store, data.start, data.end),
        "alerts_active": active,
        "alerts_recent": recent,
        "hourly": hourly_series(store, days=days, until=data.end),
    }
    try:
        from analytics.trends import week_over_week
    except ImportError:
        return out
    out["week_over_week"] = week_over_week(
        store, until=data.end + timedelta(microseconds=1), by_action=True
    )
    return out


@task(name="detect-anomalies", cache_policy=NO_CACHE)
def detect_anomalies(
    hourly: pd.DataFrame, workers: int | None
) -> dict[tuple[str, str], pd.DataFrame]:
    """The streaming detector over each service's recent hourly volume, latency and
    error rate (the last week of each, point by point)."""
    from analytics.forecast import error_rate_series, series_from_hourly, shared_pool
    from analytics.report import stream_scores_for

    if hourly.empty:
        return {}
    _, settings = _store_and_settings()
    n = workers or settings.analytics_forecast_workers
    series = {**series_from_hourly(hourly), **error_rate_series(hourly)}
    return stream_scores_for(series, workers=n, pool=shared_pool(n))


@task(name="forecast-services", cache_policy=NO_CACHE)
def forecast_services(
    hourly: pd.DataFrame, workers: int | None
) -> dict[tuple[str, str], ForecastOutcome]:
    """Prophet forecasts of volume and p95 latency per service, fitted in parallel."""
    from analytics.forecast import ForecastConfig, forecast_many, series_from_hourly, shared_pool

    if hourly.empty:
        return {}
    _, settings = _store_and_settings()
    config = ForecastConfig(
        horizon=timedelta(days=settings.analytics_forecast_horizon_days),
        uncertainty_samples=settings.analytics_uncertainty_samples,
    )
    n = workers or settings.analytics_forecast_workers
    return forecast_many(series_from_hourly(hourly), config=config, workers=n, pool=shared_pool(n))


@task(name="predict-failures", cache_policy=NO_CACHE)
def predict_failures(
    hourly: pd.DataFrame, forecasts: dict[tuple[str, str], ForecastOutcome], window_days: int
) -> dict[str, list[PredictionOutcome]]:
    """Probability and time of crossing a critical line or exhausting the error budget."""
    from analytics.prediction import predict_services

    if hourly.empty:
        return {}
    _, settings = _store_and_settings()
    return predict_services(
        hourly,
        forecasts,
        latency_critical_ms=settings.response_time_critical_ms,
        success_rate_critical=settings.success_rate_critical,
        slo=settings.analytics_slo_target,
        horizon=timedelta(days=settings.analytics_forecast_horizon_days),
        window_days=window_days,
    )


@task(name="recommend-optimizations", cache_policy=NO_CACHE)
def recommend_optimizations(data: ReportData, spec_dir: str | None) -> list[Recommendation]:
    """Optimization recommendations from the window's workflow calls, runs and specs."""
    from analytics.report import recommendations_for

    store, _ = _store_and_settings()
    return recommendations_for(store, data.start, data.end, Path(spec_dir) if spec_dir else None)


@task(name="build-report", cache_policy=NO_CACHE)
def build_report(data: ReportData, spec_dir: str | None, out_dir: str | None) -> str:
    """Dependency map + KPIs, then write report.html; returns its path."""
    from analytics.report import dependency_map, kpi_scorecard, write_report

    store, settings = _store_and_settings()
    folder = Path(spec_dir) if spec_dir else None
    data.dependency = dependency_map(
        folder, store=store, since=max(data.start, data.end - timedelta(days=1))
    )
    data.kpis = kpi_scorecard(store, data.start, data.end)
    target = Path(out_dir) if out_dir else settings.analytics_report_dir
    target = target or Path(settings.home) / "reports"
    return str(write_report(data, target))


@task(name="publish-report-artifacts", cache_policy=NO_CACHE)
def publish_artifacts(data: ReportData, report_path: str) -> list[str]:
    """The report as Prefect artifacts: markdown ``analytics-report``, tables
    ``kpi-scorecard``, ``recommendations`` and ``failure-predictions``.

    Returns:
        The artifact keys written.
    """
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from analytics.prediction import Prediction
    from analytics.report import render_markdown

    markdown = render_markdown(data) + f"\n\nFull HTML report: `{report_path}`\n"
    create_markdown_artifact(
        key="analytics-report", markdown=markdown, description="Junction analytics report"
    )
    kpis = [
        {
            "kpi": k.name,
            "target": k.target,
            "measured": k.value,
            "baseline": k.baseline,
            "baseline_source": k.baseline_source,
            "status": "n/a" if k.met is None else ("met" if k.met else "missed"),
            "note": k.note,
        }
        for k in data.kpis
    ]
    met = sum(1 for k in data.kpis if k.met)
    create_table_artifact(
        key="kpi-scorecard", table=kpis, description=f"{met}/{len(kpis)} KPI targets met"
    )
    recs = [r.as_row() for r in data.recommendations]
    create_table_artifact(
        key="recommendations",
        table=recs or [{"id": "", "title": "no recommendations"}],
        description=f"{len(recs)} optimization recommendations",
    )
    preds: list[dict[str, Any]] = [
        {
            "service": svc,
            "risk": p.kind,
            "probability": round(p.probability, 3),
            "expected_at": p.expected_at.isoformat() if p.expected_at else "",
            "explanation": p.explanation,
        }
        for svc, outcomes in sorted(data.predictions.items())
        for p in outcomes
        if isinstance(p, Prediction)
    ]
    preds.sort(key=lambda r: -float(r["probability"]))
    create_table_artifact(
        key="failure-predictions",
        table=preds or [{"service": "", "explanation": "not enough data"}],
        description=f"{sum(1 for p in preds if float(p['probability']) >= 0.5)} risks >= 50%",
    )
    return ["analytics-report", "kpi-scorecard", "recommendations", "failure-predictions"]
