"""The scale-out work on a Prefect server: the report's forecasts on a Dask task runner
(one Prefect task per service, the same forecasts as the process pool), and a run of the
capacity-watch flow (here to share this module's server: a second one costs ~15 s; its
pure logic is tests/test_capacity.py).

Not collected by the session (no ``test_`` prefix): ``tests/test_dask_forecast.py`` runs
this file in a fresh interpreter, where the in-process Dask cluster's threads and event
loops meet none of the session's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analytics.forecast import (
    Forecast,
    ForecastConfig,
    forecast_many,
    hourly_series,
    series_from_hourly,
)
from junction.settings import Settings

pytestmark = pytest.mark.prefect

# No simulated paths: the interval is then the fit itself, deterministic in any process.
CONFIG = ForecastConfig(horizon=timedelta(days=1), uncertainty_samples=0)


def _series(root: Path) -> dict[tuple[str, str], pd.DataFrame]:
    """The report's series (volume, latency per service) of a small synthetic store."""
    from analytics.synthetic import generate_history
    from junction.store import MetricsStore

    end = datetime(2026, 11, 30, tzinfo=UTC)
    generate_history(
        root, services=["okta", "jira"], days=3, seed=3, start=end - timedelta(days=3),
        workflows=0, tables=("calls",),
    )  # fmt: skip
    out = series_from_hourly(hourly_series(MetricsStore(root), days=3))
    out[("slack", "volume")] = pd.DataFrame({"ds": [end], "y": [1.0]})  # too short to fit
    return out


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from tests.prefect_harness import harness

    with harness():
        yield


def test_dask_fanout_gives_the_pool_path_forecasts_one_task_per_service(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.forecast_dask import dask_fit_runner

    series = _series(tmp_path / "metrics")
    # The pool's workers run exactly this (forecast_many's jobs, one per series); the pool
    # itself costs ~15 s to spawn here: bench/dask_forecast.py compares it on a full store.
    pooled = forecast_many(series, config=CONFIG, workers=1)
    # A LocalCluster of one thread worker: the task runner is what is under test.
    settings = Settings(task_runner="dask", dask_processes=False, dask_workers=1)
    on_dask = dask_fit_runner(settings)(series, CONFIG).result()

    assert list(on_dask) == list(series)
    for key, expected in pooled.items():
        got = on_dask[key]
        assert type(got) is type(expected), key
        if isinstance(expected, Forecast):
            assert isinstance(got, Forecast)
            pd.testing.assert_frame_equal(got.frame, expected.frame)
        else:
            assert got == expected
    assert isinstance(on_dask[("okta", "volume")], Forecast)

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["forecast-fanout"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        assert runs and runs[0].state is not None and runs[0].state.is_completed()
        tasks = client.read_task_runs(limit=50)
    fits = [t for t in tasks if t.flow_run_id == runs[0].id and t.name.startswith("fit-service")]
    assert len(fits) == 3  # okta, jira, slack


def test_capacity_watch_reads_the_queue_and_signals_scale_out(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Scheduled

    from flows.capacity import capacity_watch
    from junction.alerting.engine import AlertEngine
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("JUNCTION_CAPACITY_MIN_SAMPLES", "2")
    monkeypatch.setenv("JUNCTION_CAPACITY_QUEUE_THRESHOLD", "2")
    get_settings.cache_clear()
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:  # two runs waiting past their start
        client.create_work_pool(WorkPoolCreate(name="capacity-pool", type="process"))
        flow_id = client.create_flow_from_name("capacity-probe")
        deployment = client.create_deployment(flow_id, "d", work_pool_name="capacity-pool")
        for minutes in (20, 10):
            client.create_flow_run_from_deployment(
                deployment, state=Scheduled(scheduled_time=now - timedelta(minutes=minutes))
            )
    try:
        first = capacity_watch(now=now - timedelta(minutes=5))
        second = capacity_watch(now=now)
    finally:
        get_settings.cache_clear()

    assert first["signal"] is False and first["samples"] >= 5  # 1 sample: not enough data
    assert second["signal"] is True and second["event"] is True
    assert "queue_depth of capacity-pool is 2, at or above 2" in second["reasons"]
    assert second["forecast_at"] == now.isoformat()
    artifact: Any = Artifact.get("capacity-watch")  # sync in a sync context
    assert artifact is not None and "capacity-pool" in str(artifact.data)
    with AlertEngine.from_settings(Settings(home=tmp_path)) as engine:
        (alert,) = engine.active_alerts()
    assert alert.service == "junction" and "queue_depth of capacity-pool" in alert.message
