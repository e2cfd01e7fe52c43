"""The report's forecasts fanned out on Dask: one Prefect task per service.

With ``JUNCTION_TASK_RUNNER=dask`` the analytics report fits its forecasts in the subflow
``forecast-fanout``, whose task runner is a :class:`prefect_dask.DaskTaskRunner`: the
cluster at ``JUNCTION_DASK_ADDRESS`` when set (several hosts), else a ``LocalCluster``
of ``JUNCTION_DASK_WORKERS`` workers started for the run. Each task fits one service's
series with the same function the process pool runs (:func:`analytics.forecast.forecast_many`
inline), so both paths give the same forecasts; the UI shows one task run per service. A
remote cluster's workers run Junction's code: start them from the same environment
(``dask worker tcp://...`` with this project installed, ``PREFECT_API_URL`` set so their
task runs report to the server).

The default (``pool``) keeps the process pool of :mod:`analytics.workers`, which starts
the fits in the background while the report's other stages run; the Dask path fits in
the ``forecasts`` stage, called from the flow itself (a cluster's start-up is paid once
per run; on a remote cluster the report's host does none of the fitting).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import pandas as pd
from distributed import LocalCluster
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_dask import DaskTaskRunner

from analytics.forecast import FitRunner, ForecastConfig, ForecastOutcome, forecast_many
from analytics.workers import Pending
from junction.settings import Settings

Key = tuple[str, str]


def dask_task_runner(settings: Settings, workers: int | None = None) -> DaskTaskRunner:
    """The task runner the settings name: an existing cluster, else a LocalCluster.

    Args:
        settings: ``dask_address``, ``dask_workers``, ``dask_processes``.
        workers: LocalCluster workers (default: ``dask_workers``, else
            ``analytics_forecast_workers``, else Dask's default for the CPU count).
    """
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    n = workers or settings.dask_workers or settings.analytics_forecast_workers
    kwargs: dict[str, Any] = {"processes": settings.dask_processes}
    if n:
        kwargs["n_workers"] = n
    if not settings.dask_processes:
        kwargs["threads_per_worker"] = 1  # one fit per worker, as in the pool
    # Any free port for the dashboard: two report runs on one host would both want 8787.
    kwargs["dashboard_address"] = ":0"
    return DaskTaskRunner(cluster_class=LocalCluster, cluster_kwargs=kwargs)


@task(name="fit-service-forecasts", cache_policy=NO_CACHE, persist_result=False)
def fit_service(
    service: str, series: dict[Key, pd.DataFrame], config: ForecastConfig
) -> dict[Key, ForecastOutcome]:
    """Fit one service's series (volume, latency) in the Dask worker."""
    return forecast_many(series, config=config, workers=1)


@flow(name="forecast-fanout", log_prints=False)
def forecast_fanout(
    series: dict[Key, pd.DataFrame], config: ForecastConfig
) -> dict[Key, ForecastOutcome]:
    """One :func:`fit_service` task per service on the flow's task runner.

    Returns:
        ``(service, metric) -> Forecast | NotEnoughData``, in the input's order.
    """
    by_service: dict[str, dict[Key, pd.DataFrame]] = {}
    for key, frame in series.items():
        by_service.setdefault(key[0], {})[key] = frame
    futures = [fit_service.submit(service, jobs, config) for service, jobs in by_service.items()]
    fitted: dict[Key, ForecastOutcome] = {}
    for future in futures:
        fitted.update(future.result())
    get_run_logger().info(
        "forecast fan-out: %d series of %d services fitted", len(fitted), len(by_service)
    )
    return {key: fitted[key] for key in series}


def dask_forecasts(
    series: Mapping[Key, pd.DataFrame],
    config: ForecastConfig,
    settings: Settings,
    workers: int | None = None,
) -> dict[Key, ForecastOutcome]:
    """Run :func:`forecast_fanout` on the Dask task runner the settings name."""
    # Any: Flow.with_options is typed for TaskRunner[PrefectFuture] (invariant), Dask's
    # runner yields PrefectDaskFuture.
    runner: Any = dask_task_runner(settings, workers)
    result: dict[Key, ForecastOutcome] = forecast_fanout.with_options(task_runner=runner)(
        dict(series), config
    )
    return result


def dask_fit_runner(settings: Settings, workers: int | None = None) -> FitRunner:
    """A ``ReportRun.fit_runner``: the report's forecasts go to :func:`dask_forecasts`
    when its ``forecasts`` stage collects them (a :class:`Pending` run inline there)."""

    def start(series: Mapping[Key, pd.DataFrame], config: ForecastConfig) -> Pending:
        jobs: dict[Hashable, tuple[Any, ...]] = {"all": (series, config, settings, workers)}
        return Pending(dask_forecasts, jobs, {}, finish=lambda out: out["all"])

    return start


__all__ = [
    "dask_fit_runner",
    "dask_forecasts",
    "dask_task_runner",
    "fit_service",
    "forecast_fanout",
]
