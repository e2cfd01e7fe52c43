"""``junction analytics report|forecast|recommend|apply`` (registered on F's sub-typer).

Heavy imports (pandas, Prophet, DuckDB, matplotlib) happen inside the commands. Errors
are one red line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings() -> Any:
    from pydantic import ValidationError

    from junction.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        _fail(f"invalid configuration: {problems}")


def _store(settings: Any) -> Any:
    from junction.store import MetricsStore

    return MetricsStore(settings.metrics_dir)


def _spec_dir(specs: Path | None) -> Path:
    from analytics.report import default_spec_dir

    folder = specs or default_spec_dir()
    if not folder.is_dir():
        _fail(f"workflow spec directory {folder} does not exist")
    return folder


DaysOpt = Annotated[
    int | None,
    typer.Option("--days", min=1, help="Days of history to analyse (default: the setting)."),
]
SpecsOpt = Annotated[
    Path | None,
    typer.Option("--specs", help="Workflow spec directory (default: flows/specs)."),
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


def register(analytics_app: typer.Typer) -> None:
    """Add ``report``, ``forecast``, ``recommend`` and ``apply`` to ``junction analytics``."""

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

        settings = _settings()
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
                _fail(str(exc).replace("\n", "; "))
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

        settings = _settings()
        store = _store(settings)
        window = days or settings.analytics_report_days
        hourly = hourly_series(store, days=window)
        if service:
            unknown = sorted(set(service) - set(hourly["service"]))
            if unknown:
                _fail(f"no calls recorded for {', '.join(unknown)}")
            hourly = hourly[hourly["service"].isin(service)]
        if hourly.empty:
            _fail("no calls recorded: nothing to forecast")
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
            print(json.dumps({"forecasts": rows, "predictions": preds}, indent=2))
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
        console.print(table)
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
            console.print(ptable)
        else:
            console.print("no service is likely to cross a critical line within the horizon")

    @analytics_app.command("recommend")
    def recommend(
        days: DaysOpt = None,
        specs: SpecsOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List optimization recommendations with their saving and confidence."""
        settings = _settings()
        recs = _recommendations(settings, days, specs)
        if as_json:
            print(json.dumps([r.as_row() for r in recs], indent=2))
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
        console.print(table)
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

        settings = _settings()
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
            console.print(
                f"{verb} {spec.spec_path}: {', '.join(spec.applied)}{kept}", highlight=False
            )
        for rec_id, why in result.skipped:
            console.print(f"skipped {rec_id}: {why}", highlight=False)
        if not result.specs and not result.skipped:
            console.print("nothing to apply")
        if accept and any(why == "unknown recommendation id" for _, why in result.skipped):
            raise typer.Exit(2)
