"""The report's charts: matplotlib figures written as inline SVG.

Text stays text (``svg.fonttype = none``; matplotlib escapes it as XML), there is no
XML prolog and no fixed size: the SVG scales with the page. Each function returns
``None`` when it has nothing to draw.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analytics.forecast import Forecast, ForecastOutcome

COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"]


def _pyplot() -> Any:
    # Function-level: matplotlib costs ~1 s to import, and only rendering needs it.
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: smaller files, crisp in any size
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    return plt


def _svg(fig: Any) -> str:
    """A matplotlib figure as an inline ``<svg>`` element (no XML prolog), then closed."""
    plt = _pyplot()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    svg = text[text.find("<svg") :]
    # Scale with the page: drop the fixed pt size, keep the viewBox.
    return re.sub(
        r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r'<svg\1 class="chart"', svg, count=1
    )


def trend_chart(hourly: pd.DataFrame, services: Sequence[str]) -> str | None:
    """Hourly volume and p95 latency of ``services``, two stacked panels (SVG)."""
    rows = hourly[hourly["service"].isin(services)] if len(hourly) else hourly
    if rows.empty:
        return None
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True)
    for i, svc in enumerate(services):
        r = rows[rows["service"] == svc]
        if r.empty:
            continue
        color = COLORS[i % len(COLORS)]
        ax1.plot(r["ds"], r["calls"].astype(float), lw=0.9, color=color, label=svc)
        ax2.plot(r["ds"], r["p95_latency_ms"].astype(float), lw=0.9, color=color, label=svc)
    ax1.set_ylabel("calls / hour")
    ax2.set_ylabel("p95 latency (ms)")
    ax1.legend(loc="upper left", fontsize=7, ncol=min(len(services), 6), frameon=False)
    fig.autofmt_xdate()
    return _svg(fig)


def overall_chart(hourly: pd.DataFrame) -> str | None:
    """All services together: calls per hour and the success rate per hour (SVG)."""
    if hourly.empty:
        return None
    total = hourly.groupby("ds")[["calls", "failures"]].sum().astype(float)
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 3.6), sharex=True)
    ax1.fill_between(total.index, total["calls"], color="#93c5fd", lw=0)
    ax1.plot(total.index, total["calls"], color="#2563eb", lw=0.8)
    ax1.set_ylabel("calls / hour")
    rate = 1 - total["failures"] / total["calls"].replace(0, np.nan)
    ax2.plot(total.index, rate * 100, color="#059669", lw=0.8)
    ax2.set_ylabel("success %")
    fig.autofmt_xdate()
    return _svg(fig)


def forecast_chart(
    volume: ForecastOutcome | None,
    latency: ForecastOutcome | None,
    confirmations: Mapping[str, pd.DataFrame] | None = None,
) -> str | None:
    """Forecast bands of one service (SVG).

    History, yhat, the interval, points outside it (orange) and those the streaming
    detector flagged too (``confirmations`` by metric: ds/y rows; red).
    """
    panels = ((volume, "calls / hour"), (latency, "p95 latency (ms)"))
    fitted = [(fc, label) for fc, label in panels if isinstance(fc, Forecast)]
    if not fitted:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(fitted), 1, figsize=(10, 2.3 * len(fitted)), squeeze=False)
    for ax, (fc, label) in zip(axes[:, 0], fitted, strict=True):
        f = fc.frame
        ax.fill_between(
            f["ds"],
            f["yhat_lower"],
            f["yhat_upper"],
            color="#bfdbfe",
            lw=0,
            label=f"{fc.interval_width:.0%} interval",
        )
        ax.plot(f["ds"], f["yhat"], color="#1d4ed8", lw=0.9, label="forecast")
        hist = fc.history
        ax.plot(hist["ds"], hist["y"], color="#111827", lw=0.6, alpha=0.8, label="actual")
        an = fc.anomalies
        if len(an):
            ax.scatter(an["ds"], an["y"], color="#f59e0b", s=8, zorder=3, label="outside interval")
        confirmed = (confirmations or {}).get(fc.metric)
        if confirmed is not None and len(confirmed):
            ax.scatter(
                confirmed["ds"],
                confirmed["y"],
                color="#dc2626",
                s=26,
                zorder=4,
                label="confirmed by streaming detector",
            )
        ax.axvline(hist["ds"].iloc[-1], color="#6b7280", lw=0.8, ls="--")
        ax.set_ylabel(label)
        ax.legend(loc="upper left", fontsize=7, ncol=4, frameon=False)
    fig.autofmt_xdate()
    return _svg(fig)


__all__ = ["COLORS", "forecast_chart", "overall_chart", "trend_chart"]
