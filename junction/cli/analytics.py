"""``junction analytics``: detect, report, forecast, recommend and apply.

Heavy imports (pandas, Prophet, DuckDB, matplotlib) happen inside the commands so that
``junction --help`` stays fast. Errors are one red line on stderr and exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from junction.cli.common import console, err_console, fail, load_settings, print_json, print_table

analytics_app = typer.Typer(
    help="Analytics: anomaly detection, trends, forecasts and the report.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``junction analytics`` to the top-level app."""
    app.add_typer(analytics_app, name="analytics")


def iso(ts: object) -> str:
    """ISO 8601 text of a timestamp."""
    return ts.isoformat() if hasattr(ts, "isoformat") else str(ts)


@analytics_app.command("detect")
def detect(
    csv: Annotated[Path, typer.Argument(help="A CSV with columns timestamp,value.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every point and the detections as JSON.")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(help="Score from which a point is a detection (default: the tuned one)."),
    ] = None,
) -> None:
    """Score every point of a timestamp,value CSV with the streaming anomaly detector.

    The detector sees the points in time order, one at a time (no look-ahead). Rows out
    of timestamp order are sorted (with a warning); duplicated timestamps are an error;
    empty/NaN values are dropped (with a warning). The first points only train it.
    """
    from analytics.anomaly import DetectorConfig, SeriesInputError, load_series_csv, score_series

    if threshold is not None and not 0.0 < threshold <= 1.0:
        fail(f"--threshold must be in (0, 1], got {threshold}")
    try:
        df, warnings = load_series_csv(csv)
    except SeriesInputError as exc:
        fail(str(exc))
    cfg = DetectorConfig()
    thr = cfg.threshold if threshold is None else threshold
    scored = score_series(df, cfg, threshold=thr)
    if len(scored) <= cfg.warmup:
        warnings.append(
            f"not enough data to detect: {len(scored)} points, the first {cfg.warmup} "
            "only train the detector (every score is 0)"
        )
    elif float(scored["value"].min()) == float(scored["value"].max()):
        warnings.append("constant series: nothing to detect")
    rows = list(
        zip(
            [iso(t) for t in scored["timestamp"]],
            [float(v) for v in scored["value"]],
            [float(x) for x in scored["score"]],
            [bool(a) for a in scored["is_anomaly"]],
            strict=True,
        )
    )
    detections = [r for r in rows if r[3]]

    if as_json:
        out = {
            "file": str(csv),
            "threshold": thr,
            "points": [
                {"timestamp": t, "value": v, "score": round(sc, 6), "is_anomaly": a}
                for t, v, sc, a in rows
            ],
            "detections": [
                {"timestamp": t, "value": v, "score": round(sc, 6)} for t, v, sc, _ in detections
            ],
            "warnings": warnings,
        }
        typer.echo(json.dumps(out, indent=1))
        return

    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    lines = [f"{'timestamp':<26} {'value':>14} {'score':>7}  anomaly"]
    for t, v, sc, a in rows:
        lines.append(f"{t:<26} {v:>14.6g} {sc:>7.4f}  {'ANOMALY' if a else ''}")
    typer.echo("\n".join(lines))
    typer.echo(f"\n{len(rows)} points, threshold {thr:g}: {len(detections)} detection(s)")
    for t, v, sc, _ in detections:
        typer.echo(f"  {t}  value {v:g}  score {sc:.4f}")


def _store(settings: Any) -> Any:
    from junction.store import MetricsStore

    return MetricsStore(settings.metrics_dir)


def _spec_dir(specs: Path | None) -> Path:
    from analytics.report import default_spec_dir

    folder = specs or default_spec_dir()
    if not folder.is_dir():
        fail(f"workflow spec directory {folder} does not exist")
    return folder


DaysOpt = Annotated[
    int | None,
    typer.Option("--days", min=1, help="Days of history to analyse (default: the setting)."),
]
SpecsOpt = Annotated[
    Path | None,
    typer.Option("--specs", help="Workflow spec directory (default: the built-in specs)."),
]


def _recommendations(settings: Any, days: int | None, specs: Path | None) -> list[Any]:
    from datetime import timedelta

    from analytics.report import recommendations_for, window_end

    store = _store(settings)
    end = window_end(store)
    if end is None:
        return []
    start = end - timedelta(days=days or settings.analytics_report_days)
    return recommendations_for(store, start, end, _spec_dir(specs))


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
) -> None:
    """Write the self-contained HTML analytics report (report.html + report.json)."""
    from analytics.report import collect, write_report

    settings = load_settings()
    target = out or settings.analytics_report_dir or Path(settings.home) / "reports"
    try:
        data = collect(
            _store(settings),
            settings,
            days=days,
            spec_dir=_spec_dir(specs),
            workers=workers,
            validate=validate,
        )
    except Exception as exc:  # DataValidationError and friends: say what, not where
        if type(exc).__name__ == "DataValidationError":
            fail(str(exc).replace("\n", "; "))
        raise
    path = write_report(data, target)
    met = sum(1 for k in data.kpis if k.met)
    console.print(
        f"report written to {path} ({len(data.kpis)} KPIs, {met} met; "
        f"{len(data.recommendations)} recommendations)",
        highlight=False,
    )
    for note in data.notes:
        console.print(f"note: {note}", highlight=False)


@analytics_app.command("forecast")
def forecast(
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Only these services.")
    ] = None,
    days: DaysOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Forecast volume and p95 latency per service and predict critical crossings."""
    from datetime import timedelta

    from analytics.forecast import (
        Forecast,
        ForecastConfig,
        forecast_many,
        hourly_series,
        series_from_hourly,
    )
    from analytics.prediction import Prediction, predict_services

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
    preds: list[dict[str, Any]] = [
        {
            "service": svc,
            "risk": p.kind,
            "probability": round(p.probability, 3),
            "expected_at": p.expected_at.isoformat() if p.expected_at else None,
            "explanation": p.explanation,
        }
        for svc, outcomes in predictions.items()
        for p in outcomes
        if isinstance(p, Prediction)
    ]
    if as_json:
        print_json({"forecasts": rows, "predictions": preds})
        return
    from rich.table import Table

    table = Table("service", "metric", "7-day mean", "7-day max (upper)", "anomalies", "note")
    for r in rows:
        table.add_row(
            r["service"],
            r["metric"],
            str(r.get("forecast_mean", "")),
            str(r.get("forecast_max", "")),
            str(r.get("anomalies", "")),
            r["note"],
        )
    print_table(table)
    risky = sorted(preds, key=lambda p: -float(p["probability"]))
    ptable = Table("service", "risk", "probability", "expected (UTC)", "why")
    for p in risky:
        if p["probability"] >= 0.05:
            ptable.add_row(
                p["service"],
                p["risk"],
                f"{p['probability']:.0%}",
                str(p["expected_at"] or "-"),
                p["explanation"],
            )
    if ptable.row_count:
        print_table(ptable)
    else:
        console.print("no service is likely to cross a critical line within the horizon")


@analytics_app.command("recommend")
def recommend(
    days: DaysOpt = None,
    specs: SpecsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List optimization recommendations with their saving and confidence."""
    settings = load_settings()
    recs = _recommendations(settings, days, specs)
    if as_json:
        print_json([r.as_row() for r in recs])
        return
    if not recs:
        console.print("no recommendations: no workflow runs with calls, or nothing to improve")
        return
    from rich.table import Table

    table = Table("id", "kind", "recommendation", "saves/day", "confidence")
    for r in recs:
        saves = []
        if r.saving_ms_per_day:
            saves.append(f"{r.saving_ms_per_day / 1000:,.1f} s")
        if r.saving_calls_per_day:
            saves.append(f"{r.saving_calls_per_day:,.1f} calls")
        table.add_row(r.id, r.kind, r.title, ", ".join(saves) or "-", f"{r.confidence:.2f}")
    print_table(table)
    console.print(
        f"`junction analytics apply` writes those with confidence >= "
        f"{settings.analytics_auto_apply_confidence:.2f}; `--accept ID` applies others."
    )


@analytics_app.command("apply")
def apply(
    accept: Annotated[
        list[str] | None,
        typer.Option("--accept", help="Apply this recommendation id (repeatable)."),
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
) -> None:
    """Write recommended changes into the workflow specs (previous revision kept)."""
    from analytics.recommend import apply_recommendations

    settings = load_settings()
    recs = _recommendations(settings, days, specs)
    result = apply_recommendations(
        recs,
        threshold=settings.analytics_auto_apply_confidence if threshold is None else threshold,
        accept=accept,
        dry_run=dry_run,
    )
    if result.diff:
        print(result.diff, end="")
    for spec in result.specs:
        kept = f", previous revision kept as {spec.revision_path}" if spec.revision_path else ""
        verb = "would change" if dry_run else "changed"
        console.print(f"{verb} {spec.spec_path}: {', '.join(spec.applied)}{kept}", highlight=False)
    for rec_id, why in result.skipped:
        console.print(f"skipped {rec_id}: {why}", highlight=False)
    if not result.specs and not result.skipped:
        console.print("nothing to apply")
    if accept and any(why == "unknown recommendation id" for _, why in result.skipped):
        raise typer.Exit(2)
