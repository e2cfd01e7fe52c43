"""The analytics-report flow (hourly deployment ``analytics-report``): the analytics
pipeline's stages as tasks (the same functions ``junction analytics report`` runs), then
the report files and the Prefect artifacts.

The form's ``until`` ends the window and ``services`` keeps some integrations only; an
unknown service ends the run Failed with one line before anything runs.
With ``JUNCTION_TASK_RUNNER=dask`` the forecasts are fitted by the subflow
``forecast-fanout`` on a Dask task runner (``flows/forecast_dask.py``).
A critical data-validation failure stops the flow at the validation task, with the
failed checks in the error message, and publishes nothing; warnings go into the report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.states import Failed

from analytics.report.pipeline import STAGES, timed
from analytics.report.pipeline import forecasts as collect_forecasts
from analytics.report.scope import check_services
from analytics.workers import close_shared_pool
from flows.forecast_dask import dask_fit_runner
from flows.runlog import emit, report_lines
from flows.variables import apply_prefect_variables_sync
from junction.settings import get_settings
from tasks.analytics import STAGE_TASKS, open_report, publish_artifacts, write_report_files


@flow(name="analytics-report", log_prints=False)
def analytics_report(
    days: int | None = None,
    out_dir: str | None = None,
    spec_dir: str | None = None,
    validate_data: bool = True,
    workers: int | None = None,
    until: datetime | None = None,
    services: list[str] | None = None,
) -> str | State[Any]:
    """Analyse the metrics store and publish the report; returns the HTML file's path.

    Args:
        days: Days of history (default: ``JUNCTION_ANALYTICS_REPORT_DAYS``).
        out_dir: Report directory (default: ``JUNCTION_ANALYTICS_REPORT_DIR`` or
            ``<home>/reports``).
        spec_dir: Workflow specs for recommendations and the dependency graph
            (default: the built-in specs).
        validate_data: Run the data validation.
        workers: Processes fitting forecasts (default: the setting, else CPU count).
        until: End of the window, with its time zone (default: now); the window ends at
            the newest row before it.
        services: Only these integrations (catalog names; default: every one).

    Returns:
        The HTML file's path, or a Failed state naming an unknown service or a ``until``
        without a time zone (nothing analysed or published).
    """
    apply_prefect_variables_sync()  # Prefect Variables fill unset settings
    try:
        chosen = check_services(services or [])
        if until is not None and until.tzinfo is None:
            raise ValueError(f"until: {until.isoformat()} has no time zone (add +00:00 for UTC)")
    except ValueError as exc:
        get_run_logger().error(str(exc))
        return Failed(message=str(exc))
    run = open_report(days, spec_dir, workers, validate_data, until, chosen or None)
    settings = get_settings()
    if settings.task_runner == "dask":  # one forecast task per service on Dask
        run.fit_runner = dask_fit_runner(settings, workers)
    try:
        for (name, _), stage in zip(STAGES, STAGE_TASKS, strict=True):
            with timed(run, name):  # the run's log names the slow stages
                if name == "forecasts" and run.fit_runner is not None:
                    # The Dask subflow runs from the flow, not inside a task: Dask ships
                    # the caller's context to its workers, and a stage task's holds the
                    # ReportRun (its open store cannot be pickled).
                    collect_forecasts(run)
                else:
                    stage(run)
        path = write_report_files(run, out_dir)
        publish_artifacts(run, path)
        emit(get_run_logger(), report_lines(run.data, path))
        return path
    finally:
        run.cancel()
        close_shared_pool()  # the forecast workers end with the run
