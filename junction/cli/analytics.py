"""``junction analytics``: detect, report, forecast, recommend and apply.

Heavy imports (pandas, Prophet, DuckDB, matplotlib) happen inside the commands so that
``junction --help`` stays fast. Errors are one red line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from junction.cli.common import (
    console,
    err_console,
    fail,
    load_settings,
    print_json,
    print_table,
    table,
    warn,
)

if TYPE_CHECKING:
    from analytics.recommend import Recommendation
    from junction.settings import Settings
    from junction.store import MetricsStore

analytics_app = typer.Typer(
    help="Analytics: anomaly detection, trends, forecasts and the report.",
    no_args_is_help=True,
)

DETECTIONS_SHOWN = 50
"""Detections listed in the text summary (all of them with --points or --json)."""


def register(app: typer.Typer) -> None:
    """Add ``junction analytics`` to the top-level app."""
    app.add_typer(analytics_app, name="analytics")


def _iso(ts: Any) -> str:
    """ISO 8601 text of a ``numpy.datetime64``."""
    import pandas as pd  # function-level: keeps `junction --help` fast

    return pd.Timestamp(ts).isoformat()


class DuplicatePolicy(StrEnum):
    """What ``detect`` keeps of rows sharing a timestamp."""

    keep = "keep"
    first = "first"
    last = "last"
    mean = "mean"


@analytics_app.command("detect")
def detect(
    csv: Annotated[Path, typer.Argument(metavar="CSV", help="A CSV with columns timestamp,value.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary and detections as JSON.")
    ] = False,
    points: Annotated[
        bool, typer.Option("--points", help="Also print every point with its score.")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(help="Score from which a point is a detection (default: the tuned one)."),
    ] = None,
    duplicates: Annotated[
        DuplicatePolicy,
        typer.Option(
            "--duplicates",
            help="Rows sharing a timestamp: keep every row in file order, or keep the "
            "first, the last or the mean.",
        ),
    ] = DuplicatePolicy.keep,
) -> None:
    """Score every point of a timestamp,value CSV with the streaming anomaly detector.

    The detector sees the points in time order, one at a time (no look-ahead); the
    first points only train it. Prints a summary and the detections; --points adds
    every point. Rows out of timestamp order are sorted; duplicated timestamps (a DST
    change, a collector sending twice) are kept in file order or merged with
    --duplicates; empty/NaN values are dropped. Each of these is a warning on stderr.
    """
    # Function-level: pandas and numpy would slow down `junction --help`.
    from analytics.anomaly import DetectorConfig, StreamingDetector
    from analytics.series_csv import SeriesInputError, read_series_csv

    if threshold is not None and not 0.0 < threshold <= 1.0:
        fail(f"--threshold must be in (0, 1], got {threshold}")
    try:
        series = read_series_csv(csv, duplicates=duplicates.value)
    except SeriesInputError as exc:
        fail(str(exc))
    cfg = DetectorConfig()
    thr = cfg.threshold if threshold is None else threshold
    warnings = list(series.warnings)
    n = len(series)
    if n <= cfg.warmup:
        warnings.append(
            f"not enough data to detect: {n} points, the first {cfg.warmup} "
            "only train the detector (every score is 0)"
        )
    elif float(series.values.min()) == float(series.values.max()):
        warnings.append("constant series: nothing to detect")
    for w in warnings:
        warn(w)

    out = sys.stdout
    if as_json:
        out.write(json.dumps({"file": str(csv), "threshold": thr})[:-1])
        if points:
            out.write(', "points": [')
    elif points:
        out.write(f"{'timestamp':<26} {'value':>14} {'score':>7}  anomaly\n")
    det = StreamingDetector(cfg)
    detections: list[dict[str, Any]] = []
    best = (0.0, 0)
    stamps = series.timestamps
    # Numbers, not a Python datetime per point: 5 M rows stay ~80 MB.
    for i, (secs, v) in enumerate(series.points()):
        score = det.update(secs, v)
        flagged = score >= thr
        if flagged:
            row = {"timestamp": _iso(stamps[i]), "value": v, "score": round(score, 6)}
            detections.append(row)
        if score > best[0]:
            best = (score, i)
        if points:
            t = _iso(stamps[i])
            if as_json:
                row = {"timestamp": t, "value": v, "score": round(score, 6)}
                out.write(("," if i else "") + json.dumps({**row, "is_anomaly": flagged}))
            else:
                line = f"{t:<26} {v:>14.6g} {score:>7.4f}  {'ANOMALY' if flagged else ''}"
                out.write(line.rstrip() + "\n")
    first, last = _iso(stamps[0]), _iso(stamps[-1])
    if as_json:
        summary = {
            "count": n,
            "first": first,
            "last": last,
            "max_score": round(best[0], 6),
            "max_score_at": _iso(stamps[best[1]]),
            "detections": detections,
            "warnings": warnings,
        }
        out.write(("], " if points else ", ") + json.dumps(summary)[1:] + "\n")
        return
    out.write(
        f"{chr(10) if points else ''}{csv}: {n} points, {first} .. {last}; threshold {thr:g}: "
        f"{len(detections)} detection(s)\n"
    )
    shown = detections if points else detections[:DETECTIONS_SHOWN]
    for d in shown:
        out.write(f"  {d['timestamp']}  value {d['value']:g}  score {d['score']:.4f}\n")
    if len(shown) < len(detections):
        out.write(f"  ... {len(detections) - len(shown)} more (--json or --points lists all)\n")
    out.write(f"highest score {best[0]:.4f} at {_iso(stamps[best[1]])}\n")


def _store(settings: Settings) -> MetricsStore:
    # Function-level: pandas, DuckDB, Prophet and matplotlib stay out of `junction --help`.
    from junction.store import open_store

    return open_store(settings)


def _spec_dir(specs: Path | None) -> Path:
    # Function-level: pandas, DuckDB, Prophet and matplotlib stay out of `junction --help`.
    from analytics.report.pipeline import default_spec_dir

    folder = specs or load_settings().analytics_spec_dir or default_spec_dir()
    if not folder.is_dir():
        fail(f"workflow spec directory {folder} does not exist")
    return folder


DaysOpt = Annotated[
    int | None,
    typer.Option("--days", min=1, help="Days of history to analyse (default: the setting)."),
]
SpecsOpt = Annotated[
    Path | None,
    typer.Option(
        "--specs",
        help="Workflow spec directory (default: JUNCTION_ANALYTICS_SPEC_DIR, else the "
        "built-in specs).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _recommendations(
    settings: Settings, days: int | None, specs: Path | None
) -> list[Recommendation]:
    # Function-level: the workflow modules stay out of `junction --help`.
    from junction.features import FeatureDisabledError, check_optimization

    try:
        check_optimization(settings)
    except FeatureDisabledError as exc:
        fail(f"{exc}; nothing was computed or written")
    # Function-level: pandas, DuckDB, Prophet and matplotlib stay out of `junction --help`.
    from analytics.report.pipeline import recommendations_for
    from analytics.report.queries import window_end

    store = _store(settings)
    folder = _spec_dir(specs)
    end = window_end(store)
    if end is None:
        return []
    start = end - timedelta(days=days or settings.analytics_report_days)
    return recommendations_for(store, start, end, folder)


@analytics_app.command("report")
def report(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: <JUNCTION_HOME>/reports)."),
    ] = None,
    days: DaysOpt = None,
    specs: SpecsOpt = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Forecast worker processes.")
    ] = None,
    validate: Annotated[
        bool, typer.Option("--validate/--no-validate", help="Validate the data first.")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report's summary (report.json) as JSON.")
    ] = False,
    until: Annotated[
        str | None,
        typer.Option("--until", help="End of the window: an ISO time or a duration back (2d)."),
    ] = None,
    services: Annotated[
        list[str] | None,
        typer.Option("--service", help="Only this integration (repeat for several)."),
    ] = None,
) -> None:
    """Write the self-contained HTML analytics report (report.html + report.json)."""
    # Function-level: pandas, DuckDB, Prophet and matplotlib stay out of `junction --help`.
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from analytics.report.pipeline import collect, report_dir
    from analytics.report.render import report_summary, write_report
    from analytics.report.scope import check_services
    from analytics.validation import DataValidationError
    from junction.durations import parse_since

    settings = load_settings()
    target = report_dir(settings, out)
    folder = _spec_dir(specs)
    try:
        end = None if until is None else parse_since(until)
    except ValueError as exc:
        fail(f"--until: {exc}")
    try:
        chosen = check_services(services or [])
    except ValueError as exc:
        fail(str(exc))  # "services: unknown 'x'; known: ..."
    progress = Progress(
        TextColumn("analytics report: {task.description:<16}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    with progress:
        task = progress.add_task("opening the store", total=None)

        def step(stage: str, index: int, total: int) -> None:
            progress.update(task, description=stage, completed=index, total=total + 1)

        try:
            data = collect(
                _store(settings),
                settings,
                days=days,
                spec_dir=folder,
                workers=workers,
                validate=validate,
                progress=step,
                until=end,
                services=chosen,
            )
            progress.update(task, description="writing", advance=1)
            path = write_report(data, target)
        except DataValidationError as exc:
            fail(str(exc).replace("\n", "; "))
        except OSError as exc:
            fail(f"cannot write or read the report's files: {exc}")
    if as_json:
        print_json({"report": str(path), **report_summary(data)})
        return
    met = sum(1 for k in data.kpis if k.met)
    console.print(
        f"report written to {path} ({len(data.kpis)} KPIs, {met} met; "
        f"{len(data.recommendations)} recommendations)",
        highlight=False,
        soft_wrap=True,
    )
    for note in data.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


@analytics_app.command("forecast")
def forecast(
    service: Annotated[
        list[str] | None,
        typer.Option("--service", "-s", metavar="SERVICE", help="Only these services."),
    ] = None,
    days: DaysOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Forecast volume and p95 latency per service and predict critical crossings."""
    # Function-level: pandas, DuckDB, Prophet and matplotlib stay out of `junction --help`.
    from analytics.forecast import (
        Forecast,
        ForecastConfig,
        forecast_many,
        hourly_series,
        series_from_hourly,
    )
    from analytics.prediction import predict_services
    from analytics.report.artifacts import prediction_rows

    settings = load_settings()
    store = _store(settings)
    window = days or settings.analytics_report_days
    hourly = hourly_series(store, days=window)
    if service:
        unknown = sorted(set(service) - set(hourly["service"]))
        if unknown:
            fail(f"no calls recorded for {', '.join(unknown)}")
        hourly = hourly[hourly["service"].isin(service)]
    if hourly.empty:
        fail("no calls recorded: nothing to forecast")
    config = ForecastConfig(
        horizon=timedelta(days=settings.analytics_forecast_horizon_days),
        uncertainty_samples=settings.analytics_uncertainty_samples,
    )
    forecasts = forecast_many(
        series_from_hourly(hourly), config=config, workers=settings.analytics_forecast_workers
    )
    predictions = predict_services(
        hourly,
        forecasts,
        latency_critical_ms=settings.response_time_critical_ms,
        success_rate_critical=settings.success_rate_critical,
        slo=settings.analytics_slo_target,
        horizon=config.horizon,
        window_days=window,
    )
    rows: list[dict[str, Any]] = []
    for (svc, metric), fc in forecasts.items():
        if isinstance(fc, Forecast):
            h = fc.horizon
            rows.append(
                {
                    "service": svc,
                    "metric": metric,
                    "forecast_mean": round(float(h["yhat"].mean()), 1),
                    "forecast_max": round(float(h["yhat_upper"].max()), 1),
                    "anomalies": int(fc.frame["anomaly"].sum()),
                    "note": "",
                }
            )
        else:
            rows.append({"service": svc, "metric": metric, "note": fc.reason})
    preds = prediction_rows(predictions)
    if as_json:
        print_json({"forecasts": rows, "predictions": preds})
        return
    horizon = f"{settings.analytics_forecast_horizon_days}-day"
    t = table(
        None,
        "service",
        "metric",
        f"{horizon} mean",
        f"{horizon} max (upper)",
        "anomalies",
        "note",
        right=(f"{horizon} mean", f"{horizon} max (upper)", "anomalies"),
    )
    for r in rows:
        t.add_row(
            r["service"],
            r["metric"],
            str(r.get("forecast_mean", "")),
            str(r.get("forecast_max", "")),
            str(r.get("anomalies", "")),
            r["note"],
        )
    print_table(t)
    likely = [p for p in preds if p["probability"] >= 0.05]
    if not likely:
        console.print("no service is likely to cross a critical line within the horizon")
        return
    pt = table(
        None, "service", "risk", "probability", "expected (UTC)", "why", right=("probability",)
    )
    for p in likely:
        pt.add_row(
            p["service"],
            p["risk"],
            f"{p['probability']:.0%}",
            p["expected_at"] or "-",
            p["explanation"],
        )
    print_table(pt)


@analytics_app.command("recommend")
def recommend(days: DaysOpt = None, specs: SpecsOpt = None, as_json: JsonOpt = False) -> None:
    """List optimization recommendations with their saving and confidence.

    The ids are what `junction analytics apply --accept ID` takes.
    """
    settings = load_settings()
    recs = _recommendations(settings, days, specs)
    if as_json:
        print_json([r.as_row() for r in recs])
        return
    if not recs:
        console.print("no recommendations: no workflow runs with calls, or nothing to improve")
        return
    t = table(
        None, "id", "kind", "recommendation", "saves/day", "confidence", right=("confidence",)
    )
    # Ids are what `apply --accept` takes: never fold or truncate them.
    t.columns[0].no_wrap = True
    t.columns[0].min_width = max(len(r.id) for r in recs)
    for r in recs:
        saves = []
        if r.saving_ms_per_day:
            saves.append(f"{r.saving_ms_per_day / 1000:,.1f} s")
        if r.saving_calls_per_day:
            saves.append(f"{r.saving_calls_per_day:,.1f} calls")
        t.add_row(r.id, r.kind, r.title, ", ".join(saves) or "-", f"{r.confidence:.2f}")
    print_table(t)
    console.print(
        f"`junction analytics apply` writes those with confidence >= "
        f"{settings.analytics_auto_apply_confidence:.2f}; `--accept ID` applies others.",
        highlight=False,
        soft_wrap=True,
    )


@analytics_app.command("apply")
def apply(
    accept: Annotated[
        list[str] | None,
        typer.Option("--accept", metavar="ID", help="Apply this recommendation id (repeatable)."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", min=0.0, max=1.0, help="Confidence for automatic apply."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the diff, write nothing.")
    ] = False,
    days: DaysOpt = None,
    specs: SpecsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write recommended changes into the workflow specs (previous revision kept).

    Every edited spec is validated before it is written; an edit that would make a spec
    invalid is skipped with the reason.
    """
    # Function-level: pandas, DuckDB, Prophet and matplotlib stay out of `junction --help`.
    from analytics.apply import apply_recommendations

    settings = load_settings()
    recs = _recommendations(settings, days, specs)
    result = apply_recommendations(
        recs,
        threshold=settings.analytics_auto_apply_confidence if threshold is None else threshold,
        accept=accept,
        dry_run=dry_run,
    )
    unknown = accept and any(why == "unknown recommendation id" for _, why in result.skipped)
    if as_json:
        print_json(result.as_dict())
    else:
        if result.diff:
            typer.echo(result.diff, nl=False)
        for spec in result.specs:
            kept = f", previous revision kept as {spec.revision_path}" if spec.revision_path else ""
            verb = "would change" if dry_run else "changed"
            console.print(
                f"{verb} {spec.spec_path}: {', '.join(spec.applied)}{kept}",
                highlight=False,
                soft_wrap=True,
            )
        for rec_id, why in result.skipped:
            console.print(f"skipped {rec_id}: {why}", highlight=False, soft_wrap=True)
        if not result.specs and not result.skipped:
            console.print("nothing to apply")
    if unknown:
        raise typer.Exit(2)
