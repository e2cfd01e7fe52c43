"""The report's forecasts: the process pool vs Dask (prefect-dask), in the same run.

Data: ``analytics.synthetic.generate_history`` writes ``--services`` services x ``--days``
days (5-minute steps) under ``/tmp/junction-bench-dask/<services>-<days>/`` once; the
hourly series are what the report fits (volume and latency per service).

Arms (each ``--repeat`` times, interleaved; the table shows the median), under one
``prefect_test_harness`` server:

* ``pool``: :func:`analytics.forecast.forecast_many` on a new spawn pool of ``--workers``
  (what a report run pays in a fresh worker process: spawn + Prophet import + fits);
* ``dask-processes``: the subflow ``forecast-fanout`` (one Prefect task per service) on a
  ``LocalCluster`` of ``--workers`` worker processes, started by the run;
* ``dask-threads``: the same on a LocalCluster of ``--workers`` threads (no spawn);
* ``report-pool`` / ``report-dask``: the whole ``analytics-report`` flow (validation off),
  with ``JUNCTION_TASK_RUNNER`` ``pool`` and ``dask`` (the fan-out subflow runs in the
  report's ``forecasts`` stage, on a LocalCluster of ``--workers`` threads, or processes
  with ``--report-processes``): end to end, what the setting changes.

Every arm's forecast frames are checked equal to the pool's (``uncertainty_samples=0``: no
simulated paths, so the fit is deterministic in any process).

Run: ``nice .venv/bin/python bench/dask_forecast.py [--services 8] [--workers 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = Path("/tmp/junction-bench-dask")


def ensure_data(services: int, days: int) -> Path:
    """The synthetic store (written once, reused)."""
    from analytics.synthetic import generate_history

    root = CACHE / f"{services}-{days}" / "metrics"
    done = root.parent / "done"
    if not done.exists():
        end = datetime(2026, 11, 30, tzinfo=UTC)
        generate_history(
            root, services=services, days=days, seed=7, start=end - timedelta(days=days),
            workflows=0, if_exists="replace",
        )  # fmt: skip
        done.write_text("ok")
    return root


def same(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    """Whether two forecast dicts hold the same outcomes and frames."""
    import pandas as pd

    from analytics.forecast import Forecast

    if list(a) != list(b):
        return False
    for key, x in a.items():
        y = b[key]
        if type(x) is not type(y):
            return False
        if isinstance(x, Forecast):
            try:
                pd.testing.assert_frame_equal(x.frame, y.frame)
            except AssertionError:
                return False
        elif x != y:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=8)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--arms", default="pool,dask-processes,dask-threads,report-pool,report-dask"
    )
    parser.add_argument("--report-processes", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from prefect.testing.utilities import prefect_test_harness

    from analytics.forecast import ForecastConfig, forecast_many, hourly_series, series_from_hourly
    from analytics.workers import close_shared_pool
    from flows.analytics_report import analytics_report
    from flows.forecast_dask import dask_forecasts
    from junction.settings import Settings, get_settings
    from junction.store import MetricsStore

    root = ensure_data(args.services, args.days)
    home = CACHE / "home"
    os.environ.update(
        JUNCTION_HOME=str(home),
        JUNCTION_STORE_DIR=str(root),
        JUNCTION_ANALYTICS_UNCERTAINTY_SAMPLES="0",
        JUNCTION_ANALYTICS_REPORT_DAYS=str(args.days),
        JUNCTION_ANALYTICS_FORECAST_WORKERS=str(args.workers),
    )
    get_settings.cache_clear()
    series = series_from_hourly(hourly_series(MetricsStore(root), days=args.days))
    config = ForecastConfig(horizon=timedelta(days=7), uncertainty_samples=0)
    base = Settings(task_runner="dask", dask_workers=args.workers)

    def report(runner: str) -> Callable[[], Any]:
        def run() -> Any:
            os.environ["JUNCTION_TASK_RUNNER"] = runner
            os.environ["JUNCTION_DASK_PROCESSES"] = str(args.report_processes).lower()
            get_settings.cache_clear()
            try:
                return analytics_report(validate_data=False, out_dir=str(home / runner))
            finally:
                close_shared_pool()

        return run

    arms: dict[str, Callable[[], Any]] = {
        "pool": lambda: forecast_many(series, config=config, workers=args.workers),
        "dask-processes": lambda: dask_forecasts(
            series, config, base.model_copy(update={"dask_processes": True})
        ),
        "dask-threads": lambda: dask_forecasts(
            series, config, base.model_copy(update={"dask_processes": False})
        ),
        "report-pool": report("pool"),
        "report-dask": report("dask"),
    }
    chosen = [a for a in args.arms.split(",") if a]
    times: dict[str, list[float]] = {a: [] for a in chosen}
    results: dict[str, Any] = {}
    with prefect_test_harness(server_startup_timeout=300):  # slow on a loaded host
        for _ in range(args.repeat):
            for arm in chosen:
                started = time.perf_counter()
                results[arm] = arms[arm]()
                times[arm].append(time.perf_counter() - started)
                print(f"{arm}: {times[arm][-1]:.1f} s", file=sys.stderr)
    reference = results.get("pool")
    rows = []
    first = statistics.median(times[chosen[0]])
    for arm in chosen:
        med = statistics.median(times[arm])
        equal: bool | None = None
        if reference is not None and isinstance(results[arm], dict):
            equal = same(reference, results[arm])
        rows.append(
            {
                "arm": arm,
                "median_s": round(med, 2),
                "runs_s": [round(t, 2) for t in times[arm]],
                f"vs_{chosen[0]}": round(med / first, 2),
                "same_forecasts": equal,
            }
        )
    load = os.getloadavg()[0]
    summary = {
        "series": len(series),
        "services": args.services,
        "workers": args.workers,
        "load": round(load, 1),
        "arms": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{len(series)} series ({args.services} services), {args.workers} workers, load {load:.1f}"
    )
    print(f"| arm | median s | runs s | vs {chosen[0]} | same forecasts as pool |")
    print("|---|---|---|---|---|")
    for r in rows:
        same_text = {None: "-", True: "yes", False: "NO"}[r["same_forecasts"]]
        print(
            f"| {r['arm']} | {r['median_s']} | {', '.join(map(str, r['runs_s']))} | "
            f"{r[f'vs_{chosen[0]}']} | {same_text} |"
        )


if __name__ == "__main__":
    main()
