"""The analytics-report flow: validate -> trends -> anomalies -> forecasts -> predictions
-> recommendations -> report + Prefect artifacts (hourly deployment ``analytics-report``).

A critical data-validation failure stops the flow before any analysis, with the failed
checks in the error message; warnings go into the report.
"""

from __future__ import annotations

from prefect import flow

from analytics.forecast import close_shared_pool
from tasks.analytics import (
    analysis_window,
    build_report,
    compute_trends,
    detect_anomalies,
    forecast_services,
    predict_failures,
    publish_artifacts,
    recommend_optimizations,
    validate_metrics,
)


@flow(name="analytics-report", log_prints=False)
def analytics_report(
    days: int | None = None,
    out_dir: str | None = None,
    spec_dir: str | None = None,
    validate_data: bool = True,
    workers: int | None = None,
) -> str:
    """Analyse the metrics store and publish the report; returns the HTML file's path.

    Args:
        days: Days of history (default: ``JUNCTION_ANALYTICS_REPORT_DAYS``).
        out_dir: Report directory (default: ``JUNCTION_ANALYTICS_REPORT_DIR`` or
            ``<home>/reports``).
        spec_dir: Workflow specs for recommendations and the dependency graph
            (default: ``flows/specs``).
        validate_data: Run the data validation first.
        workers: Processes fitting forecasts (default: the setting, else CPU count).
    """
    try:
        return _report(days, out_dir, spec_dir, validate_data, workers)
    finally:
        close_shared_pool()  # the forecast workers end with the run


def _report(
    days: int | None, out_dir: str | None, spec_dir: str | None, validate: bool, workers: int | None
) -> str:
    data = analysis_window(days, workers)
    if validate and not data.notes:
        data.validation = validate_metrics(data)
    trends = compute_trends(data)
    data.health, data.performance = trends["health"], trends["performance"]
    data.alerts_active, data.alerts_recent = trends["alerts_active"], trends["alerts_recent"]
    data.hourly = trends["hourly"]
    data.week_over_week = trends.get("week_over_week")
    data.stream_scores = detect_anomalies(data.hourly, workers)
    data.forecasts = forecast_services(data.hourly, workers)
    window_days = max(1, round((data.end - data.start).total_seconds() / 86400))
    data.predictions = predict_failures(data.hourly, data.forecasts, window_days)
    data.recommendations = recommend_optimizations(data, spec_dir)
    path = build_report(data, spec_dir, out_dir)
    publish_artifacts(data, path)
    return path
