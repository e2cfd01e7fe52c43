"""The analytics pipeline: one sequence of stages, run by the CLI (:func:`collect`) and by
the ``analytics-report`` flow (one Prefect task per stage, ``tasks/analytics.py``).

:func:`open_window` fixes the window (``days`` back from the newest row at or before
``until``, optionally only some services' rows) and returns a
:class:`ReportRun`; each function of :data:`STAGES` then fills part of its
:class:`~analytics.report.model.ReportData`:

1. ``hourly``: hourly series per service, then the CPU-heavy work is handed to a pool of
   worker processes (streaming detector over volume, latency and error rate; Prophet
   fits of volume and latency), which runs while the next stages run here;
2. ``validation`` (optional): the data checks of :mod:`analytics.validation`; a critical
   failure cancels the background work and raises
   :class:`~analytics.validation.DataValidationError`: nothing computed from invalid
   data is returned;
3. ``service tables``: health (24 h), performance and week-over-week, alerts;
4. ``recommendations`` from the window's workflow calls and runs and the specs;
5. ``dependencies``: the dependency map of the specs, with co-failures of the last day;
6. ``kpis``; 7. ``anomalies`` and 8. ``forecasts`` (wait for the workers);
9. ``predictions`` from the forecasts; 10. ``notes``: segments the store found
   unreadable and moved aside while the report read it.

An empty store gives a report whose sections say "not enough data" (the stages that
need data do nothing).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.forecast import (
    FitRunner,
    ForecastConfig,
    error_rate_series,
    hourly_series,
    series_from_hourly,
    start_forecasts,
)
from analytics.intelligence.models import live_summary
from analytics.prediction import predict_services
from analytics.recommend import Recommendation, load_specs, recommend
from analytics.report.anomalies import start_stream_scores
from analytics.report.kpis import kpi_scorecard
from analytics.report.model import ReportData
from analytics.report.queries import (
    action_week_over_week,
    alert_tables,
    health_overview,
    performance_table,
    window_end,
)
from analytics.report.scope import check_services, scoped
from analytics.validation import ValidationReport, validate_store
from analytics.workers import Pending, shared_pool
from junction.settings import Settings
from junction.store import MetricsStore
from junction.workflows.builtins import builtin_spec_dir
from junction.workflows.capabilities import CAPABILITIES
from junction.workflows.depmap import DependencyMap, build_map
from junction.workflows.validate import SpecInvalid, load_workflow

EMPTY_STORE_NOTE = "the metrics store is empty: nothing to analyse yet"
COFAILURE_DAYS = 1
"""Co-failures for the dependency graph are looked for over the window's last day only:
per-minute windows over a month of calls cost more than the rest of the report."""


def default_spec_dir() -> Path:
    """The built-in workflow specs."""
    return builtin_spec_dir()


def report_dir(settings: Settings, out: Path | str | None = None) -> Path:
    """Where the report is written: ``out``, else the setting, else ``<home>/reports``."""
    if out:
        return Path(out)
    return settings.analytics_report_dir or Path(settings.home) / "reports"


class ReportRun:
    """One run of the pipeline: its inputs, the data filled stage by stage, and the jobs
    running on the worker pool.

    A plain class, not a dataclass: Prefect walks dataclass task arguments looking for
    futures, which would mean every DataFrame of the report at every task.

    Attributes:
        store: The metrics store.
        settings: The settings (windows, thresholds, forecast options).
        spec_dir: Workflow specs for recommendations and the dependency graph.
        workers: Worker processes for fits and scores (``None``: the CPU count).
        validate: Run the data validation stage.
        data: The report's data.
        scores: The streaming detector's jobs, until :func:`anomalies` collects them.
        fits: The forecasts' jobs, until :func:`forecasts` collects them.
        fit_runner: Starts the fits instead of the process pool (``None``: the pool).
    """

    def __init__(
        self,
        store: MetricsStore,
        settings: Settings,
        spec_dir: Path,
        workers: int | None,
        validate: bool,
        data: ReportData,
    ) -> None:
        self.store = store
        self.settings = settings
        self.spec_dir = spec_dir
        self.workers = workers
        self.validate = validate
        self.data = data
        self.scores: Pending | None = None
        self.fits: Pending | None = None
        self.fit_runner: FitRunner | None = None  # None: the process pool

    @property
    def forecast_config(self) -> ForecastConfig:
        """Horizon and uncertainty samples of the fits, from the settings."""
        return ForecastConfig(
            horizon=timedelta(days=self.settings.analytics_forecast_horizon_days),
            uncertainty_samples=self.settings.analytics_uncertainty_samples,
        )

    @property
    def days(self) -> int:
        """Length of the window in whole days."""
        return max(1, round((self.data.end - self.data.start) / timedelta(days=1)))

    def cancel(self) -> None:
        """Cancel the background jobs not started yet."""
        for pending in (self.scores, self.fits):
            if pending is not None:
                pending.cancel()
        self.scores = self.fits = None


def open_window(
    store: MetricsStore,
    settings: Settings,
    *,
    days: int | None = None,
    spec_dir: Path | None = None,
    workers: int | None = None,
    validate: bool = False,
    now: datetime | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
) -> ReportRun:
    """Fix the window: ``days`` (default: the setting) back from its end, the newest row
    at or before ``until``.

    Args:
        store: The metrics store.
        settings: The settings.
        days: Window length in days.
        until: End of the window (default: now); the newest row before it ends the window
            when the store holds nothing later.
        services: Only these services' calls, probes and alerts (catalog names; default
            every service).
        spec_dir: Workflow specs (default: ``analytics_spec_dir``, else
            :func:`default_spec_dir`).
        workers: Worker processes (default: ``analytics_forecast_workers``, else the CPU
            count).
        validate: Whether the validation stage runs.
        now: ``generated_at`` (default: the wall clock).

    Raises:
        ValueError: ``services`` names an unknown service, or ``until`` has no time zone.
    """
    generated = now or datetime.now(UTC)
    if until is not None and until.tzinfo is None:
        raise ValueError(f"until: {until.isoformat()} has no time zone (add +00:00 for UTC)")
    chosen = check_services(services) if services else []
    store = scoped(store, chosen)
    end = window_end(store, until)
    if end is None:
        data = ReportData(generated, generated, generated)
        data.notes.append(EMPTY_STORE_NOTE)
    else:
        span = timedelta(days=days or settings.analytics_report_days)
        data = ReportData(generated, end - span, end)
    if chosen:
        data.notes.append(f"services: only {', '.join(chosen)}")
    return ReportRun(
        store=store,
        settings=settings,
        spec_dir=spec_dir or settings.analytics_spec_dir or default_spec_dir(),
        workers=workers or settings.analytics_forecast_workers,
        validate=validate,
        data=data,
    )


def start_background(run: ReportRun) -> None:
    """Hourly series, then hand the detector and the fits to the worker pool."""
    if run.data.empty:
        return
    pool = shared_pool(run.workers)  # workers start importing Prophet right away
    run.data.hourly = hourly_series(run.store, days=run.days, until=run.data.end)
    series = series_from_hourly(run.data.hourly)
    run.scores = start_stream_scores(
        {**series, **error_rate_series(run.data.hourly)}, workers=run.workers, pool=pool
    )
    if run.fit_runner is not None:  # e.g. the Dask fan-out (JUNCTION_TASK_RUNNER=dask)
        run.fits = run.fit_runner(series, run.forecast_config)
        return
    run.fits = start_forecasts(series, config=run.forecast_config, workers=run.workers, pool=pool)


def run_validation(
    store: MetricsStore, settings: Settings, start: datetime, end: datetime
) -> ValidationReport:
    """The data checks over ``[start, end]`` (:func:`analytics.validation.validate_store`).

    Raises:
        analytics.validation.DataValidationError: A critical check failed.
    """
    interval = settings.analytics_probe_interval_seconds
    return validate_store(
        store,
        since=start,
        until=end + timedelta(microseconds=1),
        probe_interval=None if interval is None else timedelta(seconds=interval),
        max_clock_skew=timedelta(seconds=settings.analytics_max_clock_skew_seconds),
        gap_factor=settings.analytics_gap_factor,
    )


def validate(run: ReportRun) -> None:
    """Validate the window's data while the workers fit; a critical failure cancels them.

    Raises:
        analytics.validation.DataValidationError: A critical check failed.
    """
    if not run.validate or run.data.empty:
        return
    try:
        run.data.validation = run_validation(run.store, run.settings, run.data.start, run.data.end)
    except BaseException:
        run.cancel()
        raise


def service_tables(run: ReportRun) -> None:
    """Health (24 h), performance, week-over-week per action, active and recent alerts."""
    data = run.data
    if data.empty:
        return
    data.health = health_overview(run.store, run.settings, data.end)
    data.performance = performance_table(run.store, data.start, data.end)
    data.alerts_active, data.alerts_recent = alert_tables(run.store, data.start, data.end)
    data.week_over_week = action_week_over_week(run.store, data.end)


def _capability_services() -> list[str]:
    return sorted({b.integration for cap in CAPABILITIES.values() for b in cap.bindings})


def recommendations_for(
    store: MetricsStore, start: datetime, end: datetime, spec_dir: Path
) -> list[Recommendation]:
    """Recommendations from the window's workflow calls and runs and the specs in
    ``spec_dir``."""
    specs = load_specs(spec_dir)
    if not specs:
        return []
    runs = store.query(
        "SELECT run_id, workflow, started_at, status, duration_ms FROM workflow_runs "
        "WHERE started_at >= ? AND started_at <= ?",
        [start, end],
    )
    calls = store.query(
        "SELECT ts, service, action, method, path, ok, latency_ms, error_class, attempts, "
        "run_id FROM calls WHERE ts >= ? AND ts <= ? AND (run_id IS NOT NULL "
        "OR list_contains(?, service))",
        [start, end, _capability_services()],
    )
    return recommend(calls, runs, specs)


def recommendations(run: ReportRun) -> None:
    """Optimization recommendations (stage)."""
    # WORKFLOW_OPTIMIZATION_ENABLED=false: the report has no recommendations section.
    if not run.data.empty and run.settings.workflow_optimization_enabled:
        run.data.recommendations = recommendations_for(
            run.store, run.data.start, run.data.end, run.spec_dir
        )


def dependency_map(
    spec_dir: Path, *, store: MetricsStore | None = None, since: datetime | None = None
) -> DependencyMap | None:
    """The dependency map of the valid specs in ``spec_dir`` (``None``: no valid spec),
    with the co-failures recorded in ``store`` since ``since``."""
    specs = []
    for path in sorted(spec_dir.glob("*.yaml")) if spec_dir.is_dir() else []:
        with contextlib.suppress(SpecInvalid):  # an invalid spec is `validate`'s business
            specs.append(load_workflow(path))
    if not specs:
        return None
    return build_map(specs, store=store, since=since)


def dependencies(run: ReportRun) -> None:
    """The dependency map (stage), with the co-failures of the window's last day."""
    data = run.data
    if data.empty:
        data.dependency = dependency_map(run.spec_dir)
        return
    since = max(data.start, data.end - timedelta(days=COFAILURE_DAYS))
    data.dependency = dependency_map(run.spec_dir, store=run.store, since=since)


def kpis(run: ReportRun) -> None:
    """The KPI scorecard (stage)."""
    run.data.kpis = kpi_scorecard(run.store, run.data.start, run.data.end)


def anomalies(run: ReportRun) -> None:
    """Wait for the streaming detector's scores."""
    if run.scores is not None:
        run.data.stream_scores = run.scores.result()
        run.scores = None


def forecasts(run: ReportRun) -> None:
    """Wait for the forecasts."""
    if run.fits is not None:
        run.data.forecasts = run.fits.result()
        run.fits = None


def predictions(run: ReportRun) -> None:
    """Failure prediction from the forecasts (stage)."""
    data = run.data
    if data.hourly.empty:
        return
    data.predictions = predict_services(
        data.hourly,
        data.forecasts,
        latency_critical_ms=run.settings.response_time_critical_ms,
        success_rate_critical=run.settings.success_rate_critical,
        slo=run.settings.analytics_slo_target,
        horizon=run.forecast_config.horizon,
        window_days=run.days,
    )


def store_notes(run: ReportRun) -> None:
    """Note each segment the store moved aside as unreadable while the report read it, and
    the live workflow success model."""
    for path in run.store.quarantined:
        where = path.relative_to(run.store.root)
        run.data.notes.append(f"unreadable segment moved aside, its rows are left out: {where}")
    run.data.notes.append(live_summary(run.settings))  # which success model predictions use


Stage = Callable[[ReportRun], None]

STAGES: list[tuple[str, Stage]] = [
    ("hourly", start_background),
    ("validation", validate),
    ("service tables", service_tables),
    ("recommendations", recommendations),
    ("dependencies", dependencies),
    ("kpis", kpis),
    ("anomalies", anomalies),
    ("forecasts", forecasts),
    ("predictions", predictions),
    ("notes", store_notes),
]
"""The pipeline's stages, in order: (name, function)."""


@contextlib.contextmanager
def timed(run: ReportRun, stage: str) -> Iterator[None]:
    """Add the block's wall time to ``run.data.timings[stage]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings = run.data.timings
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started


def run_stages(run: ReportRun, progress: Callable[[str, int, int], None] | None = None) -> None:
    """Run every stage of :data:`STAGES` on ``run``; on failure cancel the background jobs.

    Args:
        run: From :func:`open_window`.
        progress: Called with (stage name, index, number of stages) before each stage.
    """
    try:
        for i, (name, stage) in enumerate(STAGES):
            if progress is not None:
                progress(name, i, len(STAGES))
            with timed(run, name):
                stage(run)
    finally:
        run.cancel()


def collect(
    store: MetricsStore,
    settings: Settings,
    *,
    days: int | None = None,
    spec_dir: Path | None = None,
    workers: int | None = None,
    now: datetime | None = None,
    validate: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
) -> ReportData:
    """Run the whole pipeline in this process and return the report's data.

    Args:
        store: The metrics store.
        settings: The settings.
        days: Window length (default: ``settings.analytics_report_days``).
        spec_dir: Workflow specs (default: :func:`default_spec_dir`).
        workers: Worker processes (default: the setting, else the CPU count).
        now: ``generated_at`` (default: the wall clock).
        validate: Validate the window's data (see :func:`validate`).
        progress: Called with (stage name, index, number of stages) before each stage.
        until: End of the window (see :func:`open_window`).
        services: Only these services (see :func:`open_window`).

    Raises:
        analytics.validation.DataValidationError: ``validate`` and a critical check failed.
        ValueError: An unknown service, or a naive ``until``.
    """
    run = open_window(
        store,
        settings,
        days=days,
        spec_dir=spec_dir,
        workers=workers,
        validate=validate,
        now=now,
        until=until,
        services=services,
    )
    run_stages(run, progress)
    return run.data


__all__ = [
    "EMPTY_STORE_NOTE",
    "STAGES",
    "ReportRun",
    "anomalies",
    "collect",
    "default_spec_dir",
    "dependencies",
    "dependency_map",
    "forecasts",
    "kpis",
    "open_window",
    "predictions",
    "recommendations",
    "recommendations_for",
    "report_dir",
    "run_stages",
    "run_validation",
    "service_tables",
    "start_background",
    "store_notes",
    "validate",
]
