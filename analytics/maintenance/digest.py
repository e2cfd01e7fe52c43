"""The daily health digest: yesterday's incidents, each service's SLA standing and the
slowest actions, as Markdown (a Prefect artifact) and plain text (the chat channel).

Inputs are plain frames so the digest is testable without the stores:
:func:`incident_frame` (from :class:`~junction.incidents.model.Incident`),
:func:`sla_frame` (from :class:`~junction.alerting.sla.SlaStatus`) and the daily calls
rollup (:meth:`analytics.rollups.Rollups.daily`) for :func:`slowest_actions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd

from analytics.maintenance import md_table, records
from junction.alerting.sla import SlaStatus
from junction.incidents.model import Incident
from junction.markdown import md_escape

SLOWEST = 5
"""How many actions the digest lists."""

INCIDENT_COLUMNS = ["id", "title", "services", "severity", "state", "started_at", "minutes"]
SLA_COLUMNS = ["service", "target", "uptime", "budget_left", "met"]
ACTION_COLUMNS = ["service", "action", "calls", "p95_ms", "success_rate"]


def incident_frame(incidents: Iterable[Incident], end: datetime) -> pd.DataFrame:
    """One row per incident (``minutes`` open, up to ``end`` for open ones)."""
    rows = [
        {
            "id": i.id,
            "title": i.title,
            "services": ", ".join(i.services),
            "severity": i.severity,
            "state": i.state,
            "started_at": i.started_at,
            "minutes": round(i.duration(end).total_seconds() / 60, 1),
        }
        for i in incidents
    ]
    return pd.DataFrame(rows, columns=INCIDENT_COLUMNS)


def sla_frame(statuses: Iterable[SlaStatus]) -> pd.DataFrame:
    """One row per service with data: target, uptime, error budget left, target met."""
    rows = [
        {
            "service": s.service,
            "target": s.target,
            "uptime": s.uptime,
            "budget_left": s.error_budget_remaining,
            "met": s.uptime is not None and s.uptime >= s.target,
        }
        for s in statuses
        if s.uptime is not None
    ]
    return pd.DataFrame(rows, columns=SLA_COLUMNS)


def slowest_actions(daily_calls: pd.DataFrame, top: int = SLOWEST) -> pd.DataFrame:
    """The ``top`` actions by p95 latency in a daily calls rollup (one or more days).

    Args:
        daily_calls: :meth:`~analytics.rollups.Rollups.daily` rows (``service``,
            ``action``, ``calls``, ``ok_calls``, ``p95_ms``).
        top: How many.

    Returns:
        Columns :data:`ACTION_COLUMNS`, slowest first (several days: the worst day's p95).
    """
    if daily_calls.empty:
        return pd.DataFrame(columns=ACTION_COLUMNS)
    grouped = daily_calls.groupby(["service", "action"], as_index=False).agg(
        calls=("calls", "sum"), ok_calls=("ok_calls", "sum"), p95_ms=("p95_ms", "max")
    )
    grouped["success_rate"] = grouped["ok_calls"] / grouped["calls"].where(grouped["calls"] > 0)
    ranked = grouped.sort_values(["p95_ms", "service", "action"], ascending=[False, True, True])
    return ranked.head(top)[ACTION_COLUMNS].reset_index(drop=True)


@dataclass(frozen=True)
class Digest:
    """One day's health digest.

    Attributes:
        day: The UTC day it covers.
        incidents: :data:`INCIDENT_COLUMNS`, incidents open at any time that day.
        sla: :data:`SLA_COLUMNS`, the SLA period ending at the day's end.
        slowest: :data:`ACTION_COLUMNS`.
        delivery: Where the digest went ("sent to chat", "no chat channel configured ...").
    """

    day: date
    incidents: pd.DataFrame
    sla: pd.DataFrame
    slowest: pd.DataFrame
    delivery: str = ""

    @property
    def headline(self) -> str:
        """One line: incident count, SLA breaches, the slowest action."""
        missed = int((~self.sla["met"].astype(bool)).sum()) if len(self.sla) else 0
        parts = [
            f"{len(self.incidents)} incident(s)",
            f"SLA missed by {missed} of {len(self.sla)} service(s)",
        ]
        if len(self.slowest):
            top = self.slowest.iloc[0]
            parts.append(f"slowest {top['service']}.{top['action']} p95 {top['p95_ms']:,.0f} ms")
        return f"Health digest {self.day.isoformat()}: " + "; ".join(parts)

    def text(self) -> str:
        """Plain text for the chat channel (a few lines)."""
        lines = [self.headline]
        for row in records(self.incidents):
            lines.append(f"- {row.severity} {row.title} ({row.state}, {row.minutes:g} min)")
        for row in records(self.sla[~self.sla["met"].astype(bool)]):
            lines.append(f"- SLA {row.service}: {_pct(row.uptime)} < {_pct(row.target)}")
        for row in records(self.slowest):
            lines.append(f"- slow {row.service}.{row.action}: p95 {row.p95_ms:,.0f} ms")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The digest as Markdown, every data value escaped."""
        out = [f"# {md_escape(self.headline)}", ""]
        if self.delivery:
            out += [md_escape(self.delivery), ""]
        out += ["## Incidents", ""]
        out += md_table(
            ["severity", "incident", "services", "state", "minutes"],
            [
                (i.severity, i.title, i.services, i.state, f"{i.minutes:g}")
                for i in records(self.incidents)
            ],
            "No incidents.",
        )
        out += ["", "## SLA", ""]
        out += md_table(
            ["service", "uptime", "target", "budget left", "met"],
            [
                (
                    s.service,
                    _pct(s.uptime),
                    _pct(s.target),
                    _pct(s.budget_left),
                    "yes" if s.met else "NO",
                )
                for s in records(self.sla)
            ],
            "No SLA data.",
        )
        out += ["", "## Slowest actions", ""]
        out += md_table(
            ["service", "action", "calls", "p95", "success"],
            [
                (a.service, a.action, int(a.calls), f"{a.p95_ms:,.0f} ms", _pct(a.success_rate))
                for a in records(self.slowest)
            ],
            "No calls recorded.",
        )
        return "\n".join(out) + "\n"


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{float(value):.2%}"


def build_digest(
    day: date,
    incidents: pd.DataFrame,
    sla: pd.DataFrame,
    daily_calls: pd.DataFrame,
    *,
    delivery: str = "",
    top: int = SLOWEST,
) -> Digest:
    """Assemble a day's digest from its frames (:func:`incident_frame`, :func:`sla_frame`,
    the day's daily calls rollup)."""
    return Digest(day, incidents, sla, slowest_actions(daily_calls, top), delivery)
