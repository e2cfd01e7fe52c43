"""What each rule says about one service's snapshot (the engine's input).

:func:`judge` gives every rule's verdict (:class:`Condition`) on a
:class:`ServiceSnapshot`: the ``down`` rule on the monitor's confirmed outage, the
threshold rules (``success_rate``, ``response_time``, ``health_score``) against the
configured bounds once the window holds ``min_observations``, and ``burn_rate`` from the
SLA tracker. Rules without data are left out, so their alerts stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from junction.alerting.model import Severity
from junction.alerting.rules import AlertingConfig
from junction.alerting.sla import SlaStatus
from junction.scoring import ScoreBreakdown, WindowStats, health_score

if TYPE_CHECKING:
    from junction.scoring import ServiceWindow, Thresholds


@dataclass(frozen=True)
class ServiceSnapshot:
    """One service's current health, the engine's input.

    Attributes:
        service: Catalog name.
        stats: The service's window summary.
        score: Its health score.
        source: ``probe`` (a sweep) or ``passive`` (live calls); informational.
        annotation: Vendor status note to put on its alerts ("GitLab reports: degraded").
        labels: Extra labels for its alerts (the configured ones are added).
        down: The monitor's verdict that the service is down (its last N observations
            failed, confirmed); ``None``: no verdict, the ``down`` rule is left unchanged.
        consecutive_failures: Failures in a row behind that verdict (for the message).
        conditions: Verdicts of rules judged outside the engine, by rule name (Junction's
            own components, e.g. service ``junction``, rule ``success_model``).
    """

    service: str
    stats: WindowStats
    score: ScoreBreakdown
    source: str = "probe"
    annotation: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    down: bool | None = None
    consecutive_failures: int = 0
    conditions: Mapping[str, Condition] = field(default_factory=dict)

    @classmethod
    def from_window(
        cls,
        service: str,
        window: ServiceWindow,
        thresholds: Thresholds,
        now: datetime,
        *,
        source: str = "probe",
        annotation: str | None = None,
    ) -> ServiceSnapshot:
        """Summarise ``window`` at ``now`` and score it with ``thresholds`` (the settings)."""
        stats = window.stats(now)
        return cls(service, stats, health_score(stats, thresholds, now=now), source, annotation)


@dataclass(frozen=True)
class Condition:
    """A rule's verdict on one snapshot (``severity`` None: fine)."""

    rule: str
    severity: Severity | None
    value: float | None
    message: str


def judge(
    snapshot: ServiceSnapshot, config: AlertingConfig, sla: SlaStatus | None
) -> dict[str, Condition]:
    """Every rule's verdict on ``snapshot``; rules without data are left out (unchanged).

    Args:
        snapshot: The service's health.
        config: Thresholds.
        sla: The service's SLA status (``None``: burn-rate rule left out).
    """
    out: dict[str, Condition] = {}
    stats = snapshot.stats
    if not config.rule_on("down", snapshot.service):
        out["down"] = Condition("down", None, None, "disabled")
    elif snapshot.down is not None:
        failures = snapshot.consecutive_failures
        if not snapshot.down:
            message = "up"
        elif failures == 0:  # junction.recovery: answering again, but flapping
            message = "down: flapping (repeated outages, up again but not yet stable)"
        else:
            message = f"down: {failures} consecutive failures" + (
                f" ({stats.last_error_class})" if stats.last_error_class else ""
            )
        out["down"] = Condition(
            "down", Severity.CRITICAL if snapshot.down else None, float(failures), message
        )
    thresholds = config.thresholds(snapshot.service)
    enough = stats.count >= config.min_observations
    n = f"n={stats.count}"

    sr = thresholds["success_rate"]
    if not sr.enabled:
        out["success_rate"] = Condition("success_rate", None, stats.success_rate, "disabled")
    elif enough and stats.success_rate is not None:
        sev = sr.judge(stats.success_rate)
        bound = sr.critical if sev is Severity.CRITICAL else sr.warning
        msg = (
            f"success rate {stats.success_rate:.1%} < {bound:.1%} ({n})"
            if sev is not None and bound is not None
            else f"success rate {stats.success_rate:.1%} ({n})"
        )
        out["success_rate"] = Condition("success_rate", sev, stats.success_rate, msg)

    rt = thresholds["response_time"]
    if not rt.enabled:
        out["response_time"] = Condition("response_time", None, stats.p95_latency_ms, "disabled")
    elif enough and stats.p95_latency_ms is not None:
        p95 = stats.p95_latency_ms
        sev = rt.judge(p95)
        bound = rt.critical if sev is Severity.CRITICAL else rt.warning
        msg = (
            f"p95 response time {p95:.0f} ms > {bound:g} ms ({n})"
            if sev is not None and bound is not None
            else f"p95 response time {p95:.0f} ms ({n})"
        )
        out["response_time"] = Condition("response_time", sev, p95, msg)

    hs = thresholds["health_score"]
    score = snapshot.score.score
    if not hs.enabled:
        out["health_score"] = Condition("health_score", None, score, "disabled")
    elif enough and score is not None:
        sev = hs.judge(score)
        bound = hs.critical if sev is Severity.CRITICAL else hs.warning
        reasons = "; ".join(snapshot.score.reasons)
        msg = (
            f"health score {score:.0f} < {bound:g}" + (f" ({reasons})" if reasons else "")
            if sev is not None and bound is not None
            else f"health score {score:.0f}"
        )
        out["health_score"] = Condition("health_score", sev, score, msg)

    if not config.rule_on("burn_rate", snapshot.service):
        out["burn_rate"] = Condition("burn_rate", None, None, "disabled")
    elif sla is not None and sla.total > 0:
        sev = sla.burn_severity
        worst = max((b.long_rate for b in sla.burn_rates), default=0.0)
        out["burn_rate"] = Condition("burn_rate", sev, worst, sla.describe())
    out.update(snapshot.conditions)
    return out
