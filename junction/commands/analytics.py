"""`junction analytics` commands: ``detect`` here; ``report``/``forecast`` are added by
``analytics.cli_report`` when that module exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

analytics_app = typer.Typer(
    help="Analytics: anomaly detection, trends, forecasts and the report.",
    no_args_is_help=True,
)

err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the ``analytics`` sub-command group to the top-level app."""
    try:
        from analytics import cli_report  # type: ignore[attr-defined,unused-ignore]

        cli_report.register(analytics_app)
    except ImportError:
        pass
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
        _fail(f"--threshold must be in (0, 1], got {threshold}")
    try:
        df, warnings = load_series_csv(csv)
    except SeriesInputError as exc:
        _fail(str(exc))
        return
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
