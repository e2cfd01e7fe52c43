"""Bench: the whole analytics report for 33 services x 30 days at 5-minute resolution.

Usage::

    .venv/bin/python bench/report.py [--services 33] [--days 30] [--workers 2]
        [--samples 100] [--store DIR] [--out DIR]

Generates the history once with ``analytics.synthetic.generate_history`` (seed 5, alerts
on) into ``--store`` (default ``/tmp/junction-bench-report/store``; reused when it
already holds data), then times ``analytics.report.pipeline.collect`` +
``analytics.report.render.write_report`` (the ``junction analytics report`` path:
validation, health, trends, streaming anomalies, forecasts, predictions,
recommendations, dependency map, KPIs, HTML). Prints the stage
times, wall and CPU seconds (this process and its workers) and peak RSS. Goal: <= 60 s
wall on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cpu(*, main_only: bool = False) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    if main_only:
        return own.ru_utime + own.ru_stime
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    """Run the bench and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=33)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=100, help="Prophet uncertainty samples")
    parser.add_argument("--store", type=Path, default=Path("/tmp/junction-bench-report/store"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/junction-bench-report/out"))
    parser.add_argument("--no-validate", action="store_true", help="skip the GX validation")
    args = parser.parse_args()

    # Imported here, after ROOT is on sys.path: the bench runs as a script.
    from analytics.report.pipeline import collect
    from analytics.report.render import write_report
    from analytics.synthetic import generate_history
    from analytics.workers import close_shared_pool
    from junction.settings import Settings
    from junction.store import MetricsStore

    started = time.perf_counter()
    if not any(args.store.glob("calls/*/*.parquet")):
        truth = generate_history(
            args.store, services=args.services, days=args.days, seed=5, alerts=True
        )
        print(f"generated {truth.rows} in {time.perf_counter() - started:.1f} s")
    store = MetricsStore(args.store)
    settings = Settings(analytics_uncertainty_samples=args.samples)

    cpu0, main0, wall0 = _cpu(), _cpu(main_only=True), time.perf_counter()
    data = collect(
        store,
        settings,
        days=args.days,
        workers=args.workers,
        validate=not args.no_validate,
    )
    render0, render_cpu0 = time.perf_counter(), _cpu()
    path = write_report(data, args.out)
    data.timings["render html"] = time.perf_counter() - render0
    render_cpu = _cpu() - render_cpu0
    wall = time.perf_counter() - wall0
    close_shared_pool()  # workers exit: their CPU time shows in RUSAGE_CHILDREN
    cpu = _cpu() - cpu0
    main_cpu = _cpu(main_only=True) - main0
    # On an otherwise idle 2-core machine the run cannot be faster than its busiest
    # process, nor than all its CPU time spread over both cores.
    floor = max(main_cpu, cpu / 2)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    fitted = sum(1 for v in data.forecasts.values() if hasattr(v, "frame"))
    print(
        f"{args.services} services x {args.days} days, workers={args.workers}, "
        f"uncertainty_samples={args.samples}: {fitted}/{len(data.forecasts)} series fitted"
    )
    print()
    print("stage                      | seconds")
    print("-------------------------- | -------")
    for stage, seconds in data.timings.items():
        print(f"{stage:<26} | {seconds:7.2f}")
    print(f"{'TOTAL wall':<26} | {wall:7.2f}")
    print(f"{'TOTAL cpu (all processes)':<26} | {cpu:7.2f}")
    print(f"{'  of which main process':<26} | {main_cpu:7.2f}")
    print(f"{'render html cpu':<26} | {render_cpu:7.2f}")
    print(f"{'CPU floor, 2 idle cores':<26} | {floor:7.2f}")
    print()
    print(f"peak RSS: main {peak_mb:.0f} MB, largest worker {kids_mb:.0f} MB")
    print(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"goal <= 60 s wall: {'met' if wall <= 60 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
