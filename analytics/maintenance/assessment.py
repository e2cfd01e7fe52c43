"""The quarterly system health assessment: trends over the quarter, a capacity forecast
and the SLA history, from the daily rollups (:meth:`analytics.rollups.Rollups.daily`).

- :func:`weekly_trends`: per ISO week, calls, success rate and the calls-weighted p95;
- :func:`sla_history`: per service and month, probe uptime against the SLA target;
- :func:`capacity_forecast`: the daily call volume forecast over the next quarter
  (:func:`analytics.forecast.forecast_series`, daily steps), with the growth it implies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from analytics.forecast import ForecastConfig, NotEnoughData, forecast_series
from analytics.maintenance import md_table, records
from junction.markdown import md_escape

HORIZON = timedelta(days=90)
"""How far the capacity forecast looks."""

TREND_COLUMNS = ["week", "calls", "success_rate", "p95_ms"]
SLA_COLUMNS = ["month", "service", "probes", "uptime", "target", "met"]


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def weekly_trends(daily_calls: pd.DataFrame) -> pd.DataFrame:
    """Per ISO week (its Monday): calls, success rate, p95 weighted by calls."""
    if daily_calls.empty:
        return pd.DataFrame(columns=TREND_COLUMNS)
    frame = daily_calls.assign(bucket=_utc(daily_calls["bucket"]))
    frame["week"] = (
        frame["bucket"] - pd.to_timedelta(frame["bucket"].dt.weekday, unit="D")
    ).dt.date
    frame["p95_x_calls"] = frame["p95_ms"] * frame["calls"]
    weekly = frame.groupby("week", as_index=False).agg(
        calls=("calls", "sum"), ok_calls=("ok_calls", "sum"), p95_x_calls=("p95_x_calls", "sum")
    )
    weekly["success_rate"] = weekly["ok_calls"] / weekly["calls"]
    weekly["p95_ms"] = weekly["p95_x_calls"] / weekly["calls"]
    return weekly[TREND_COLUMNS].sort_values("week").reset_index(drop=True)


def sla_history(daily_probes: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per month and service: probes, uptime, whether ``target`` was met."""
    if daily_probes.empty:
        return pd.DataFrame(columns=SLA_COLUMNS)
    frame = daily_probes.assign(bucket=_utc(daily_probes["bucket"]))
    frame["month"] = frame["bucket"].dt.strftime("%Y-%m")
    monthly = frame.groupby(["month", "service"], as_index=False).agg(
        probes=("probes", "sum"), ok=("ok_probes", "sum")
    )
    monthly["uptime"] = monthly["ok"] / monthly["probes"]
    monthly["target"] = target
    monthly["met"] = monthly["uptime"] >= target
    return monthly[SLA_COLUMNS].sort_values(["month", "service"]).reset_index(drop=True)


@dataclass(frozen=True)
class Capacity:
    """The call volume now and forecast ``HORIZON`` ahead.

    Attributes:
        current_per_day: Mean daily calls over the last 7 days of history.
        forecast_per_day: Forecast mean daily calls over the horizon's last 7 days
            (``None`` when there was too little history: ``reason`` says why).
        upper_per_day: The forecast interval's upper bound there (plan capacity for it).
        reason: Why there is no forecast ("" when there is one).
    """

    current_per_day: float
    forecast_per_day: float | None
    upper_per_day: float | None
    reason: str = ""

    @property
    def growth(self) -> float | None:
        """Forecast change relative to now (0.25 = +25 %)."""
        if self.forecast_per_day is None or not self.current_per_day:
            return None
        return self.forecast_per_day / self.current_per_day - 1


def capacity_forecast(daily_calls: pd.DataFrame, horizon: timedelta = HORIZON) -> Capacity:
    """Forecast the total daily call volume ``horizon`` ahead (Prophet, daily steps)."""
    if daily_calls.empty:
        return Capacity(0.0, None, None, "no calls recorded")
    totals = (
        daily_calls.assign(ds=_utc(daily_calls["bucket"]).dt.tz_localize(None))
        .groupby("ds", as_index=False)["calls"]
        .sum()
        .rename(columns={"calls": "y"})  # type: ignore[call-overload]
    )
    current = float(totals["y"].tail(7).mean())
    config = ForecastConfig(horizon=horizon, freq="D", interval_width=0.9, uncertainty_samples=50)
    result = forecast_series(totals, service="*", metric="volume", config=config)
    if isinstance(result, NotEnoughData):
        return Capacity(current, None, None, result.reason)
    tail = result.horizon.tail(7)
    return Capacity(current, float(tail["yhat"].mean()), float(tail["yhat_upper"].mean()))


@dataclass(frozen=True)
class Assessment:
    """A quarter's system health assessment.

    Attributes:
        start: First day covered (ISO).
        end: Last day covered (ISO).
        trends: :data:`TREND_COLUMNS`.
        sla: :data:`SLA_COLUMNS`.
        capacity: The capacity forecast.
    """

    start: str
    end: str
    trends: pd.DataFrame
    sla: pd.DataFrame
    capacity: Capacity

    def markdown(self) -> str:
        """The assessment as Markdown (data escaped)."""
        out = [f"# System health assessment {self.start} .. {self.end}", ""]
        out += ["## Trends (weekly)", ""]
        out += md_table(
            ["week", "calls", "success", "p95"],
            [
                (t.week, f"{int(t.calls):,}", f"{t.success_rate:.2%}", f"{t.p95_ms:,.0f} ms")
                for t in records(self.trends)
            ],
            "No calls recorded.",
        )
        out += ["", "## Capacity forecast", ""]
        c = self.capacity
        if c.forecast_per_day is None:
            out.append(f"No forecast: {md_escape(c.reason)}.")
        else:
            growth = c.growth
            out.append(
                f"Calls per day now {c.current_per_day:,.0f}; in {HORIZON.days} days "
                f"{c.forecast_per_day:,.0f} (upper bound {c.upper_per_day or 0:,.0f})"
                + (f", {growth:+.0%}." if growth is not None else ".")
            )
        out += ["", "## SLA history (monthly)", ""]
        if self.sla.empty:
            out.append("No probes recorded.")
        else:
            missed = self.sla[~self.sla["met"].astype(bool)]
            out.append(
                f"{len(self.sla) - len(missed)} of {len(self.sla)} service-months met the "
                f"target ({self.sla['target'].iloc[0]:.2%})."
            )
            if len(missed):
                rows = [(m.month, m.service, f"{m.uptime:.3%}") for m in records(missed)]
                out += ["", *md_table(["month", "service", "uptime"], rows, "")]
        return "\n".join(out) + "\n"


def assess(daily_calls: pd.DataFrame, daily_probes: pd.DataFrame, target: float) -> Assessment:
    """The assessment over the frames' span (a quarter of daily rollups)."""
    days = pd.concat([_utc(daily_calls["bucket"]), _utc(daily_probes["bucket"])])
    start = days.min().date().isoformat() if len(days) else "-"
    end = days.max().date().isoformat() if len(days) else "-"
    return Assessment(
        start,
        end,
        weekly_trends(daily_calls),
        sla_history(daily_probes, target),
        capacity_forecast(daily_calls),
    )
