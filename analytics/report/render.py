"""Rendering the report: sections as data, then HTML (a Jinja2 template, autoescaped) and
Markdown (Prefect's artifact; every value escaped the same way).

:func:`sections` turns :class:`~analytics.report.model.ReportData` into a list of
:class:`Section` s made of blocks (paragraphs, headings, tables, figures). Values are
formatted to text here; they are escaped only where they are written out: by Jinja's
autoescape in ``report.html.j2`` and by :func:`md_escape` in Markdown. Charts are SVG
produced by matplotlib (which escapes its text) or by the ``depgraph.svg.j2`` template,
and are the only markup passed through unescaped.

Every section says "Not enough data" and why when its input is missing; none fails on
a service without successful calls, without probes, or on an empty store.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from analytics.forecast import Forecast, NotEnoughData
from analytics.prediction import MIN_EVIDENCE_HOURS, Prediction, worst
from analytics.report.anomalies import anomaly_table, stream_detections
from analytics.report.charts import forecast_chart, overall_chart, trend_chart
from analytics.report.depgraph import layout
from analytics.report.model import ReportData, missing
from junction.markdown import md_escape  # one escape for every markdown artifact

BlockKind = Literal["p", "muted", "h3", "table", "figure", "nodata", "list"]
Format = Literal["", "pct", "chg", "ms", "num"]
Column = tuple[str, str, Format]
"""(frame column, header, format)."""


@dataclass(frozen=True)
class Table:
    """A table of formatted cells; ``row_classes`` style rows (``st-<status>``)."""

    headers: list[str]
    rows: list[list[str]]
    row_classes: list[str]


@dataclass(frozen=True)
class Block:
    """One piece of a section.

    Attributes:
        kind: ``p``, ``muted`` (a side remark), ``h3``, ``table``, ``figure`` (SVG
            with a caption), ``nodata`` ("Not enough data: <text>") or ``list``.
        text: The paragraph, heading, caption or reason.
        table: For ``table``.
        svg: For ``figure``: trusted SVG markup.
        items: For ``list``.
        html: Shown in the HTML report.
        md: Shown in Markdown.
    """

    kind: BlockKind
    text: str = ""
    table: Table | None = None
    svg: Markup | None = None
    items: tuple[str, ...] = ()
    html: bool = True
    md: bool = True


@dataclass
class Section:
    """A report section: anchor key, title, blocks, and how many charts it draws."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    charts: int = 0

    def html_blocks(self) -> list[Block]:
        """The blocks the HTML report shows."""
        return [b for b in self.blocks if b.html]


def fmt(value: Any, kind: Format = "") -> str:
    """A cell's text: ``–`` for a missing value, else formatted by ``kind``."""
    if missing(value):
        return "–"
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "chg":
        return f"{float(value):+.0%}"
    if kind == "ms":
        return f"{float(value):,.0f}"
    if kind == "num":
        if isinstance(value, bool | np.bool_):
            return str(value)
        if isinstance(value, numbers.Integral):
            return f"{int(value):,}"
        return f"{float(value):,.1f}"
    if isinstance(value, pd.Timestamp | datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)


def table(frame: pd.DataFrame, cols: Sequence[Column], *, status: str = "") -> Table:
    """Format ``frame``'s columns into a :class:`Table` (``status``: the column whose
    value styles the row)."""
    rows, classes = [], []
    for rec in frame.to_dict("records"):
        rows.append([fmt(rec.get(c), k) for c, _, k in cols])
        classes.append(f"st-{fmt(rec.get(status))}" if status else "")
    return Table([h for _, h, _ in cols], rows, classes)


def _nodata(why: str) -> Block:
    return Block("nodata", why)


def _empty(key: str, title: str, why: str) -> Section:
    return Section(key, title, [_nodata(why)])


def chart_services(data: ReportData, count: int = 6) -> list[str]:
    """Services for per-service charts: worst health first, then highest risk."""
    health = {}
    if len(data.health):
        health = {
            str(s): float(v)
            for s, v in zip(data.health["service"], data.health["score"], strict=True)
            if not missing(v)
        }
    ranked: list[tuple[float, str]] = []
    for svc in sorted(set(data.hourly["service"]) if len(data.hourly) else set()):
        risk = worst(data.predictions.get(svc, []))
        score = health.get(svc, 100.0) - 100 * (risk.probability if risk else 0.0)
        ranked.append((score, svc))
    return [svc for _, svc in sorted(ranked)[:count]]


def _horizon_text(data: ReportData) -> str:
    for v in data.forecasts.values():
        if isinstance(v, Forecast) and len(v.horizon):
            hours = (v.horizon["ds"].iloc[-1] - v.history["ds"].iloc[-1]).total_seconds() / 3600
            return f"{hours / 24:.0f} days"
    return "the horizon"


def _kpis(data: ReportData) -> Section | None:
    if not data.kpis:
        return None
    rows = pd.DataFrame(
        [
            {
                "name": k.name,
                "target": k.target,
                "value": k.value,
                "baseline": k.baseline,
                "source": k.baseline_source,
                "met": k.status,
                "note": k.note,
            }
            for k in data.kpis
        ]
    )
    cols: list[Column] = [
        ("name", "KPI", ""),
        ("target", "Target", ""),
        ("value", "Measured", ""),
        ("baseline", "Baseline", ""),
        ("source", "Baseline source", ""),
        ("met", "Status", ""),
        ("note", "How measured", ""),
    ]
    return Section("kpis", "KPI scorecard", [Block("table", table=table(rows, cols, status="met"))])


def _health(data: ReportData) -> Section:
    title = "Service health (last 24 h)"
    if not len(data.health):
        return _empty("health", title, "no calls or probes in the last 24 hours")
    cols: list[Column] = [
        ("service", "Service", ""),
        ("status", "Status", ""),
        ("score", "Score", "num"),
        ("calls", "Obs. 24 h", "num"),
        ("success_rate", "Success", "pct"),
        ("p50_ms", "p50 ms", "ms"),
        ("p95_ms", "p95 ms", "ms"),
        ("uptime", "Uptime", "pct"),
        ("reasons", "Why", ""),
    ]
    counts = data.health["status"].astype(str).value_counts().to_dict()
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return Section(
        "health",
        title,
        [Block("p", summary), Block("table", table=table(data.health, cols, status="status"))],
    )


def _performance(data: ReportData) -> Section:
    title = "Performance metrics"
    if not len(data.performance):
        return _empty("performance", title, "no calls in the window")
    cols: list[Column] = [
        ("service", "Service", ""),
        ("calls_per_day", "Calls/day", "num"),
        ("success_rate", "Success", "pct"),
        ("mean_ms", "Mean ms", "ms"),
        ("p50_ms", "p50 ms", "ms"),
        ("p95_ms", "p95 ms", "ms"),
        ("p99_ms", "p99 ms", "ms"),
        ("wow_volume", "Volume WoW", "chg"),
        ("wow_p95", "p95 WoW", "chg"),
    ]
    blocks = [Block("table", table=table(data.performance, cols))]
    wow = data.week_over_week
    if wow is not None and len(wow) and "p95_change" in wow.columns:
        change = pd.to_numeric(wow["p95_change"], errors="coerce").astype("float64")
        moved = wow.assign(_abs=change.abs()).dropna(subset=["_abs"])
        moved = moved.sort_values("_abs", ascending=False).head(10)
        if len(moved):
            wcols: list[Column] = [
                ("service", "Service", ""),
                ("action", "Action", ""),
                ("calls", "Calls (7 d)", "num"),
                ("calls_change", "Volume WoW", "chg"),
                ("p95_ms", "p95 ms", "ms"),
                ("prev_p95_ms", "p95 ms, week before", "ms"),
                ("p95_change", "p95 WoW", "chg"),
                ("success_rate_change", "Success change", "chg"),
            ]
            blocks.append(Block("h3", "Biggest week-over-week latency moves, by action"))
            blocks.append(Block("table", table=table(moved, wcols)))
    return Section("performance", title, blocks)


def _alerts(data: ReportData) -> Section:
    blocks = [Block("h3", "Active")]
    if len(data.alerts_active):
        cols: list[Column] = [
            ("service", "Service", ""),
            ("rule", "Rule", ""),
            ("severity", "Severity", ""),
            ("since", "Firing since", ""),
            ("message", "Message", ""),
        ]
        blocks.append(Block("table", table=table(data.alerts_active, cols)))
    else:
        blocks.append(Block("p", "No active alerts."))
    blocks.append(Block("h3", "Recent transitions"))
    if len(data.alerts_recent):
        rcols: list[Column] = [
            ("ts", "Time", ""),
            ("service", "Service", ""),
            ("rule", "Rule", ""),
            ("state", "State", ""),
            ("severity", "Severity", ""),
            ("message", "Message", ""),
        ]
        blocks.append(Block("table", table=table(data.alerts_recent, rcols)))
    else:
        blocks.append(Block("muted", "No alert transitions in the window.", md=False))
    return Section("alerts", "Alerts", blocks)


def _trends(data: ReportData, picked: list[str], draw: bool) -> Section:
    blocks: list[Block] = []
    if draw and len(data.hourly):
        overall = overall_chart(data.hourly)
        if overall:
            blocks.append(Block("figure", "All services", svg=Markup(overall), md=False))
        per = trend_chart(data.hourly, picked) if picked else None
        if per:
            caption = f"Services to watch: {', '.join(picked)}"
            blocks.append(Block("figure", caption, svg=Markup(per), md=False))
    if not len(data.hourly):
        return _empty("trends", "Trends", "no hourly data")
    text = f"Hourly volume and p95 latency; services to watch: {', '.join(picked) or 'none'}"
    blocks.append(Block("p", text, html=False))
    return Section("trends", "Trends", blocks, charts=sum(b.kind == "figure" for b in blocks))


def _forecasts(data: ReportData, picked: list[str], draw: bool) -> Section:
    title = "Forecasts and anomalies"
    if not data.forecasts:
        return _empty("forecasts", title, "no series to forecast")
    anomalies = anomaly_table(data.forecasts, data.stream_scores)
    figures: list[Block] = []
    for svc in picked if draw else []:
        hits = anomalies[(anomalies["service"] == svc) & anomalies["confirmed"]]
        svg = forecast_chart(
            data.forecasts.get((svc, "volume")),
            data.forecasts.get((svc, "latency")),
            {m: hits[hits["metric"] == m] for m in ("volume", "latency")},
        )
        if svg is None:
            reasons = [
                f"{m}: {fo.reason}"
                for m in ("volume", "latency")
                if isinstance(fo := data.forecasts.get((svc, m)), NotEnoughData)
            ]
            figures.append(Block("h3", svc, md=False))
            figures.append(Block("nodata", "; ".join(reasons) or "no forecast", md=False))
        else:
            figures.append(Block("figure", svc, svg=Markup(svg), md=False))
    fitted = sum(isinstance(v, Forecast) for v in data.forecasts.values())
    skipped = [v for v in data.forecasts.values() if isinstance(v, NotEnoughData)]
    summary = (
        f"{fitted} series forecast {_horizon_text(data)} ahead, {len(skipped)} without enough "
        f"data; {len(anomalies)} points outside the interval"
    )
    if data.stream_scores and len(anomalies):
        summary += f", {int(anomalies['confirmed'].sum())} confirmed by the streaming detector"
    tail: list[Block] = []
    if skipped:
        text = "; ".join(f"{s.service}/{s.metric}: {s.reason}" for s in skipped[:10])
        tail.append(Block("muted", f"Not fitted: {text}", md=False))
    if len(anomalies):
        # Confirmed by both detectors first, then the biggest departures.
        top = anomalies.sort_values(["confirmed", "severity"], ascending=False).head(15)
        cols: list[Column] = [
            ("service", "Service", ""),
            ("metric", "Metric", ""),
            ("ds", "Hour", ""),
            ("y", "Actual", "num"),
            ("yhat_lower", "Low", "num"),
            ("yhat_upper", "High", "num"),
            ("severity", "Severity", "num"),
            ("stream_score", "Stream score", "num"),
            ("confirmed", "Confirmed", ""),
        ]
        tail.append(Block("h3", "Latest anomalies", md=False))
        tail.append(Block("table", table=table(top, cols)))
    detections = stream_detections(data.stream_scores)
    if len(detections):
        per_metric = detections["metric"].value_counts().to_dict()
        by_metric = ", ".join(
            f"{n} {m}" for m, n in sorted(per_metric.items(), key=lambda kv: str(kv[0]))
        )
        summary += f"; streaming detector: {len(detections)} detections ({by_metric})"
        dcols: list[Column] = [
            ("service", "Service", ""),
            ("metric", "Series", ""),
            ("timestamp", "Hour", ""),
            ("value", "Value", "num"),
            ("score", "Score", "num"),
        ]
        top_d = detections.sort_values(["timestamp", "score"], ascending=False).head(15)
        tail.append(Block("h3", "Streaming detector: latest detections", md=False))
        tail.append(Block("table", table=table(top_d, dcols)))
    charts = sum(b.kind == "figure" for b in figures)
    return Section("forecasts", title, [Block("p", summary), *figures, *tail], charts=charts)


def _predictions(data: ReportData) -> Section:
    title = "Failure prediction"
    pred_rows = []
    for svc, outcomes in sorted(data.predictions.items()):
        for o in outcomes:
            if isinstance(o, Prediction):
                pred_rows.append(
                    {
                        "service": svc,
                        "risk": o.kind,
                        "probability": o.probability,
                        "eta": o.expected_at,
                        "explanation": o.explanation,
                    }
                )
            else:
                pred_rows.append(
                    {
                        "service": svc,
                        "risk": o.metric,
                        "probability": float("nan"),
                        "eta": None,
                        "explanation": f"not enough data: {o.reason}",
                    }
                )
    if not pred_rows:
        return _empty("predictions", title, "no services with data")
    frame = pd.DataFrame(pred_rows)
    frame["probability"] = frame["probability"].astype("float64")
    frame = frame.sort_values(
        ["probability", "service"], ascending=[False, True], na_position="last"
    )
    likely = frame["probability"].fillna(0.0) >= 0.5
    shown = pd.concat([frame[likely], frame[~likely].head(10)])
    cols: list[Column] = [
        ("service", "Service", ""),
        ("risk", "Risk", ""),
        ("probability", "Probability", "pct"),
        ("eta", "Expected (UTC)", ""),
        ("explanation", "Why", ""),
    ]
    text = f"{int(likely.sum())} risks at >= 50% within {_horizon_text(data)}"
    unproven = sorted(
        svc
        for svc, outcomes in data.predictions.items()
        if outcomes and not any(isinstance(o, Prediction) for o in outcomes)
    )
    if unproven:  # minimum evidence (analytics.prediction): say so, predict nothing
        text += (
            f"; {len(unproven)} of {len(data.predictions)} services have too little history "
            f"to predict ({MIN_EVIDENCE_HOURS:.0f} h of calls needed)"
        )
    return Section(
        "predictions", title, [Block("p", text), Block("table", table=table(shown, cols))]
    )


def _dependencies(data: ReportData, draw: bool) -> Section:
    title = "Dependency graph"
    graph = layout(data.dependency)
    if graph is None:
        return _empty("dependencies", title, "no workflow specs found")
    blocks = [
        Block(
            "p",
            "Workflows (bands) and their steps, the services they call (right; dashed: "
            "fallback), co-failures (red dotted).",
            md=False,
        ),
        Block(
            "p", "Workflows -> steps -> services (see the HTML report for the drawing)", html=False
        ),
    ]
    if draw:
        svg = _env().get_template("depgraph.svg.j2").render(g=graph)
        blocks.append(Block("figure", svg=Markup(svg), md=False))
    return Section("dependencies", title, blocks, charts=int(draw))


def _recommendations(data: ReportData) -> Section:
    title = "Recommendations"
    if not data.recommendations:
        return _empty(
            "recommendations",
            title,
            "no workflow runs with calls in the window, or nothing to improve",
        )
    frame = pd.DataFrame([r.as_row() for r in data.recommendations])
    cols: list[Column] = [
        ("id", "Id", ""),
        ("kind", "Kind", ""),
        ("title", "Recommendation", ""),
        ("saving_ms_per_day", "Saves ms/day", "ms"),
        ("saving_calls_per_day", "Saves calls/day", "num"),
        ("confidence", "Confidence", "pct"),
        ("rationale", "Evidence", ""),
    ]
    return Section("recommendations", title, [Block("table", table=table(frame, cols))])


def _validation(data: ReportData) -> Section | None:
    v = data.validation
    if v is None:
        return None
    text = f"{len(v.checks)} checks, {len(v.warnings)} warnings"
    frame = v.to_frame()
    frame["passed"] = frame["passed"].map(lambda p: "pass" if p else "FAIL")
    cols: list[Column] = [
        ("table", "Table", ""),
        ("name", "Check", ""),
        ("severity", "Severity", ""),
        ("passed", "Result", ""),
        ("observed", "Observed", ""),
    ]
    blocks = [Block("p", text)]
    if len(frame):
        blocks.append(Block("table", table=table(frame, cols)))
    return Section("validation", "Data validation", blocks)


def sections(data: ReportData, *, chart_count: int = 6) -> list[Section]:
    """The report's sections in display order (KPI scorecard first: it is what people
    look for). ``chart_count`` = 0 draws no chart (Markdown)."""
    draw = chart_count > 0
    picked = chart_services(data, chart_count) if draw else chart_services(data)
    out = [
        _kpis(data),
        _health(data),
        _performance(data),
        _alerts(data),
        _trends(data, picked, draw),
        _forecasts(data, picked, draw),
        _predictions(data),
        _dependencies(data, draw),
        _recommendations(data),
        _validation(data),
    ]
    if data.notes:
        out.append(Section("notes", "Notes", [Block("list", items=tuple(data.notes))]))
    return [s for s in out if s is not None]


# ------------------------------------------------------------------ HTML


@cache
def _env() -> jinja2.Environment:
    # Autoescape everything, SVG included: only charts are marked safe (Markup).
    return jinja2.Environment(
        loader=jinja2.PackageLoader("analytics.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _window(data: ReportData) -> str:
    return f"{data.start:%Y-%m-%d %H:%M} – {data.end:%Y-%m-%d %H:%M} UTC"


def render_html(data: ReportData, *, chart_count: int = 6) -> str:
    """The self-contained HTML report (no script, no external resource)."""
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            data=data,
            sections=sections(data, chart_count=chart_count),
            window=_window(data),
            generated=f"{data.generated_at:%Y-%m-%d %H:%M:%S} UTC",
        )
    )


# ------------------------------------------------------------------ Markdown


def _md_table(t: Table) -> str:
    lines = [
        "| " + " | ".join(md_escape(h) for h in t.headers) + " |",
        "|" + "---|" * len(t.headers),
    ]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _md_block(b: Block) -> str:
    if b.kind == "table" and b.table is not None:
        return _md_table(b.table)
    if b.kind == "h3":
        return f"**{md_escape(b.text)}**"
    if b.kind == "nodata":
        return f"_Not enough data: {md_escape(b.text)}_"
    if b.kind == "list":
        return "\n".join(f"- {md_escape(i)}" for i in b.items)
    return md_escape(b.text)


def render_markdown(data: ReportData) -> str:
    """The report as Markdown (Prefect's markdown artifact); charts are left out.

    Every value from the data (service names, alert messages, notes) is escaped with
    :func:`md_escape`: the artifact never carries raw HTML or links from the data.
    """
    parts = [
        "# Junction analytics report",
        f"Window {_window(data)}, generated {data.generated_at:%Y-%m-%d %H:%M} UTC.",
    ]
    for s in sections(data, chart_count=0):
        body = "\n\n".join(_md_block(b) for b in s.blocks if b.md)
        parts.append(f"## {md_escape(s.title)}\n\n{body}")
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------ files


def report_summary(data: ReportData) -> dict[str, Any]:
    """The JSON summary written beside the HTML (window, KPIs, recommendations, notes)."""
    return {
        "generated_at": data.generated_at.isoformat(),
        "window": [data.start.isoformat(), data.end.isoformat()],
        "kpis": [asdict(k) for k in data.kpis],
        "recommendations": [r.as_row() for r in data.recommendations],
        "notes": list(data.notes),
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # readers see the old or the new file, never half of one


def write_report(data: ReportData, out_dir: Path) -> Path:
    """Write ``report.html`` and ``report.json`` (KPIs, recommendations, notes).

    Returns:
        The HTML file's path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "report.html"
    _write_atomic(target, render_html(data))
    _write_atomic(out_dir / "report.json", json.dumps(report_summary(data), indent=2, default=str))
    return target


__all__ = [
    "Block",
    "Section",
    "Table",
    "chart_services",
    "fmt",
    "md_escape",
    "render_html",
    "render_markdown",
    "report_summary",
    "sections",
    "table",
    "write_report",
]
