"""Analytics at scale: 10 M call rows across 1,000 services, DuckDB vs pandas, rollups.

The data: ``analytics.synthetic.generate_history`` writes ~10 M ``calls`` rows (1,000
services, 5-minute steps, 13.5 days ending at noon UTC) into a store under
``/tmp/junction-bench-analytics/<rows>-<services>/`` once; later runs reuse it.

The job both engines do: per (hour, service, action): calls, success rate, p50 and p95
latency, straight from the stored Parquet files. Arms, each in a fresh process (so its
peak RSS, ``ru_maxrss``, is its own), run one after another:

* ``pandas``: ``pd.read_parquet`` of the table (only the 5 needed columns), ``groupby``,
  ``quantile([0.5, 0.95])``;
* ``duckdb``: one SQL query over all files (``quantile_cont(x, [0.5, 0.95])``), with
  ``threads``/``memory_limit`` set and insertion order off;
* ``duckdb-by-day``: the production path, ``analytics.partitions.aggregate_by_partition``:
  the same SQL once per day partition (one day's groups at a time: bounded memory, small
  hash tables), Arrow results concatenated, one final projection;
* ``incremental``: on a hard-linked copy of the store, build the rollups
  (:class:`analytics.rollups.Rollups`, hourly + exact daily), append one new hour, time
  ``refresh(daily=False)``; append another hour, time ``refresh()`` (hourly + that day's
  exact daily); then time the full hourly recompute (:func:`hourly_from_raw`) and check
  the refreshed rollups equal it exactly (hourly and daily).

Run: ``nice .venv/bin/python bench/analytics.py [--quick] [--json]`` (``--quick``: 1 M rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Libraries are imported inside each arm: every arm runs in a fresh process whose peak
# RSS is its own, so the pandas arm must not pay for DuckDB's imports (and vice versa).

CACHE = Path("/tmp/junction-bench-analytics")
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
SPAN = timedelta(days=13, hours=12)  # ends at noon: the next hour lands in an existing day
STEP = timedelta(minutes=5)
COLUMNS = ["ts", "service", "action", "ok", "latency_ms"]

# The job, as a per-partition aggregate and a final projection (``{source}``/``{agg}``).
JOB_AGG = """
    SELECT date_trunc('hour', ts) AS bucket, service, action,
           count(*) AS n, count(*) FILTER (WHERE ok) AS ok_n,
           quantile_cont(latency_ms, [0.5, 0.95]) AS q
    FROM {source}
    GROUP BY ALL
"""
JOB_FINISH = """
    SELECT bucket, service, action, n AS calls, ok_n / n AS success_rate,
           q[1] AS p50_ms, q[2] AS p95_ms
    FROM {agg}
"""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _duck(memory_limit: str, threads: int) -> Any:
    # Function-level: each arm runs in its own process; its peak RSS counts only what it imports.
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {threads}")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    return con


# --------------------------------------------------------------------------- data


def ensure_data(rows: int, services: int, seed: int = 42) -> Path:
    """Generate (once) and return the store root holding ~``rows`` calls."""
    root = CACHE / f"{rows}-{services}-{seed}" / "store"
    marker = root.parent / "truth.json"
    if marker.exists():
        return root
    # Function-level: each arm runs in its own process; its peak RSS counts only what it imports.
    from analytics.synthetic import generate_history

    shutil.rmtree(root.parent, ignore_errors=True)
    steps = SPAN / STEP
    # Traffic averages ~0.87 of the base rate (weekends at 55 %), growth ~+2.5 % on average.
    per_step = rows / (services * steps * 0.871 * 1.025)
    t0 = time.perf_counter()
    truth = generate_history(
        root,
        services=services,
        start=START,
        duration=SPAN,
        step=STEP,
        seed=seed,
        calls_per_step=per_step,
        tables=("calls",),
    )
    seconds = time.perf_counter() - t0
    marker.write_text(json.dumps({"rows": truth.rows, "seconds": seconds}))
    print(f"generated {truth.rows['calls']:,} call rows in {seconds:.1f} s", file=sys.stderr)
    return root


def link_copy(src: Path, dst: Path) -> None:
    """A working copy of a store: hard links to the (immutable) Parquet files."""
    shutil.rmtree(dst, ignore_errors=True)
    for path in src.rglob("*.parquet"):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)


# --------------------------------------------------------------------------- arms


def arm_pandas(root: Path, **_: Any) -> dict[str, Any]:
    # Function-level: each arm runs in its own process; its peak RSS counts only what it imports.
    import numpy as np
    import pandas as pd

    base = _peak_mb()
    t0 = time.perf_counter()
    df = pd.read_parquet(root / "calls", columns=COLUMNS)
    df["bucket"] = df["ts"].dt.floor("h")
    groups = df.groupby(["bucket", "service", "action"], observed=True, sort=False)
    q = groups["latency_ms"].quantile(np.array([0.5, 0.95])).unstack()
    out = pd.DataFrame(
        {
            "calls": groups.size(),
            "success_rate": groups["ok"].mean(),
            "p50_ms": q[0.5],
            "p95_ms": q[0.95],
        }
    ).reset_index()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "groups": len(out), "rows": len(df), "base_mb": base, "out": out}


def arm_duckdb(root: Path, memory_limit: str, threads: int, **_: Any) -> dict[str, Any]:
    con = _duck(memory_limit, threads)
    base = _peak_mb()
    t0 = time.perf_counter()
    glob = "'" + str(root / "calls" / "*" / "*.parquet") + "'"
    source = f"read_parquet({glob}, hive_partitioning = false)"
    out = con.sql(JOB_FINISH.format(agg=f"({JOB_AGG.format(source=source)})")).df()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "groups": len(out), "base_mb": base, "out": out}


def arm_duckdb_by_day(root: Path, memory_limit: str, threads: int, **_: Any) -> dict[str, Any]:
    """The production path: :func:`analytics.partitions.aggregate_by_partition`."""
    # Function-level: each arm runs in its own process; its peak RSS counts only what it imports.
    from analytics.partitions import aggregate_by_partition, store_connection
    from junction.store import MetricsStore

    store = MetricsStore(root)
    with store_connection(store, memory_limit=memory_limit, threads=threads) as con:
        base = _peak_mb()
        t0 = time.perf_counter()
        out = aggregate_by_partition(con, store, "calls", JOB_AGG, JOB_FINISH)
        seconds = time.perf_counter() - t0
    store.close()
    return {"seconds": seconds, "groups": len(out), "base_mb": base, "out": out}


def arm_incremental(root: Path, memory_limit: str, threads: int, **_: Any) -> dict[str, Any]:
    # Function-level: each arm runs in its own process; its peak RSS counts only what it imports.
    import pandas as pd

    # Function-level: each arm runs in its own process; its peak RSS counts only what it imports.
    from analytics.rollups import Rollups, daily_from_raw, hourly_from_raw
    from analytics.synthetic import generate_history
    from junction.store import MetricsStore

    work = CACHE / f"work-{os.getpid()}"
    link_copy(root, work)
    try:
        truth = json.loads((root.parent / "truth.json").read_text())
        n_services = int(truth.get("services", 0)) or None
        store = MetricsStore(work)
        rollups = Rollups(store, tables=["calls"], memory_limit=memory_limit, threads=threads)
        t0 = time.perf_counter()
        rollups.refresh()
        build = time.perf_counter() - t0
        per_step = float(truth["per_step"])
        end = START + SPAN

        def add_hour(at: datetime, seed: int) -> None:
            generate_history(
                work,
                services=n_services or 1000,
                start=at,
                duration=timedelta(hours=1),
                step=STEP,
                seed=seed,
                calls_per_step=per_step,
                tables=("calls",),
                if_exists="append",
            )

        add_hour(end, 1)
        t0 = time.perf_counter()
        hourly_only = rollups.refresh(daily=False)
        refresh_hourly = time.perf_counter() - t0
        add_hour(end + timedelta(hours=1), 2)
        t0 = time.perf_counter()
        with_daily = rollups.refresh()
        refresh_daily = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = hourly_from_raw(store, "calls", memory_limit=memory_limit, threads=threads)
        full_seconds = time.perf_counter() - t0
        incremental = rollups.hourly()
        identical = True
        try:
            pd.testing.assert_frame_equal(incremental, full, check_exact=True)
            pd.testing.assert_frame_equal(rollups.daily(), daily_from_raw(store), check_exact=True)
        except AssertionError as exc:
            identical = False
            print(f"MISMATCH: {exc}", file=sys.stderr)
        store.close()
        return {
            "build_seconds": build,
            "refresh_hourly_seconds": refresh_hourly,
            "refresh_daily_seconds": refresh_daily,
            "full_seconds": full_seconds,
            "hours_recomputed": hourly_only.hours_recomputed["calls"],
            "days_recomputed": with_daily.days_recomputed["calls"],
            "identical": identical,
            "groups": len(full),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


ARMS: dict[str, Callable[..., dict[str, Any]]] = {
    "pandas": arm_pandas,
    "duckdb": arm_duckdb,
    "duckdb-by-day": arm_duckdb_by_day,
    "incremental": arm_incremental,
}


def run_arm(name: str, root: Path, memory_limit: str, threads: int, out: Path | None) -> None:
    """Child process: run one arm, print its JSON result (with peak RSS) on stdout."""
    result = ARMS[name](root, memory_limit=memory_limit, threads=threads)
    frame = result.pop("out", None)
    if frame is not None and out is not None:
        frame.sort_values(["bucket", "service", "action"]).to_parquet(out)
    result["peak_mb"] = _peak_mb()
    print(json.dumps(result))


def spawn(name: str, root: Path, args: argparse.Namespace, out: Path | None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--arm",
        name,
        "--root",
        str(root),
        "--memory-limit",
        args.memory_limit,
        "--threads",
        str(args.threads),
    ]
    if out is not None:
        cmd += ["--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"arm {name} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def compare(a: Path, b: Path) -> float:
    """Largest relative difference between the two engines' numbers (same groups)."""
    # Function-level: each arm runs in its own process; its peak RSS counts only what it imports.
    import numpy as np
    import pandas as pd

    x = pd.read_parquet(a).reset_index(drop=True)
    y = pd.read_parquet(b).reset_index(drop=True)
    if len(x) != len(y):
        return float("inf")
    worst = 0.0
    for col in ("calls", "success_rate", "p50_ms", "p95_ms"):
        xv, yv = x[col].to_numpy(float), y[col].to_numpy(float)
        worst = max(worst, float(np.max(np.abs(xv - yv) / np.maximum(np.abs(yv), 1e-9))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 M rows instead of 10 M")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", default="pandas,duckdb,duckdb-by-day,incremental")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        run_arm(
            args.arm,
            Path(args.root),
            args.memory_limit,
            args.threads,
            Path(args.out) if args.out else None,
        )
        return
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    root = ensure_data(rows, args.services)
    truth = json.loads((root.parent / "truth.json").read_text())
    if "per_step" not in truth:  # remembered so the appended hours match the history's rate
        truth["per_step"] = rows / (args.services * (SPAN / STEP) * 0.871 * 1.025)
        truth["services"] = args.services
        (root.parent / "truth.json").write_text(json.dumps(truth))
    results: dict[str, dict[str, Any]] = {}
    outs: dict[str, Path] = {}
    for name in args.arms.split(","):
        out = CACHE / f"out-{name}.parquet" if name != "incremental" else None
        results[name] = spawn(name, root, args, out)
        if out is not None:
            outs[name] = out
        print(f"  {name}: {json.dumps(results[name])}", file=sys.stderr)
    summary: dict[str, Any] = {
        "rows": truth["rows"]["calls"],
        "services": args.services,
        "memory_limit": args.memory_limit,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "arms": results,
    }
    if "pandas" in outs:
        summary["max_rel_diff_vs_pandas"] = {
            n: compare(p, outs["pandas"]) for n, p in outs.items() if n != "pandas"
        }
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
        return
    print_table(summary)


def print_table(summary: dict[str, Any]) -> None:
    arms = summary["arms"]
    print(
        f"{summary['rows']:,} call rows, {summary['services']} services; DuckDB threads="
        f"{summary['threads']} memory_limit={summary['memory_limit']}; "
        f"load {summary['load_avg_1m']:.1f}"
    )
    print(
        "job: per (hour, service, action): calls, success rate, p50, p95 (from the Parquet files)\n"
    )
    print(f"{'arm':<22} | {'seconds':>8} | {'peak RSS MB':>11} | {'groups':>9}")
    print(f"{'-' * 22} | {'-' * 8} | {'-' * 11} | {'-' * 9}")
    for name in ("pandas", "duckdb", "duckdb-by-day"):
        if name in arms:
            a = arms[name]
            print(f"{name:<22} | {a['seconds']:>8.2f} | {a['peak_mb']:>11.0f} | {a['groups']:>9,}")
    if "pandas" in arms:
        p = arms["pandas"]
        for name in ("duckdb", "duckdb-by-day"):
            if name in arms:
                a = arms[name]
                print(
                    f"\n{name} vs pandas: {p['seconds'] / a['seconds']:.2f}x faster, "
                    f"peak memory {a['peak_mb'] / p['peak_mb']:.2f} of pandas' "
                    f"(goal: faster and <= 0.25)"
                )
        for name, diff in summary.get("max_rel_diff_vs_pandas", {}).items():
            print(f"{name}: max relative difference from pandas' numbers {diff:.1e}")
    if "incremental" in arms:
        i = arms["incremental"]
        print("\nrollups (hourly p50/p95/p99/mean/min/max + success, exact daily):")
        print(f"  build from scratch (hourly + daily)   {i['build_seconds']:.2f} s")
        print(f"  full hourly recompute from raw        {i['full_seconds']:.2f} s")
        print(
            f"  refresh after one new hour (hourly)   {i['refresh_hourly_seconds']:.3f} s "
            f"({i['hours_recomputed']} hour recomputed): "
            f"{i['full_seconds'] / i['refresh_hourly_seconds']:.1f}x faster (goal >= 10x)"
        )
        print(
            f"  ... with that day's exact daily       {i['refresh_daily_seconds']:.3f} s: "
            f"{i['full_seconds'] / i['refresh_daily_seconds']:.1f}x faster"
        )
        print(f"  incremental == full recompute (hourly and daily, exact): {i['identical']}")
        print(f"  peak RSS of the rollup process: {i['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
