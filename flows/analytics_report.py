"""The analytics-report flow (hourly deployment ``analytics-report``): the analytics
pipeline's stages as tasks (the same functions ``junction analytics report`` runs), then
the report files and the Prefect artifacts.

A critical data-validation failure stops the flow at the validation task, with the
failed checks in the error message, and publishes nothing; warnings go into the report.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from analytics.report.pipeline import STAGES, timed
from analytics.workers import close_shared_pool
from flows.runlog import emit, report_lines
from tasks.analytics import STAGE_TASKS, open_report, publish_artifacts, write_report_files


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
            (default: the built-in specs).
        validate_data: Run the data validation.
        workers: Processes fitting forecasts (default: the setting, else CPU count).
    """
    run = open_report(days, spec_dir, workers, validate_data)
    try:
        for (name, _), stage in zip(STAGES, STAGE_TASKS, strict=True):
            with timed(run, name):  # the run's log names the slow stages
                stage(run)
        path = write_report_files(run, out_dir)
        publish_artifacts(run, path)
        emit(get_run_logger(), report_lines(run.data, path))
        return path
    finally:
        run.cancel()
        close_shared_pool()  # the forecast workers end with the run
