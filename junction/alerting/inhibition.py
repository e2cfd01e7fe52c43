"""Inhibition: one cause pages once; its symptoms are recorded, not sent.

Like Alertmanager's ``inhibit_rules``: while a *source* alert is unresolved, alerts whose
rule is one of the *targets* and whose ``equal`` labels have the same values are
*inhibited*. An inhibited alert is still an alert (recorded in the history, listed by
``junction alerts list`` and the API with ``inhibited_by``: the source's fingerprint) but
sends nothing on its own: no firing, escalation or repeat message.

The default rule (used when the alerting file has no ``inhibit:`` key)::

    inhibit:
      - name: down-inhibits-symptoms
        source: down                                   # the monitor's confirmed outage
        target: [success_rate, health_score, burn_rate]
        equal: [service]                               # ... of the same service

A one-minute outage makes the window averages (success rate, health score) and the SLA
burn rate cross their lines too; they are symptoms of the outage, not four incidents.
They share the outage's incident (one group per service), so when the outage ends a
symptom still firing is part of an incident already told: it sends nothing new and keeps
the incident open until it clears. The monitor's recovery rule (:mod:`junction.recovery`)
takes an ended outage's failures out of the window averages, so on a service that is
otherwise clean they clear at once; on a degraded one they stay, rightly. ``inhibit: []``
turns inhibition off.

``equal`` names alert labels; ``service`` and ``rule`` are always present. An empty
``equal`` is refused: one service's outage would inhibit every other service's alerts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from junction.alerting.alerts import Alert


@dataclass(frozen=True)
class InhibitRule:
    """One inhibition rule (see the module docstring).

    Attributes:
        name: Shown in messages and errors.
        source: Rules whose unresolved alerts inhibit.
        target: Rules whose alerts are inhibited.
        equal: Labels that must have the same value on source and target.
    """

    name: str
    source: tuple[str, ...]
    target: tuple[str, ...]
    equal: tuple[str, ...] = ("service",)

    def inhibits(self, source: Alert, target: Alert) -> bool:
        """True if ``source`` inhibits ``target`` under this rule."""
        if source.id == target.id or source.rule not in self.source:
            return False
        if target.rule not in self.target:
            return False
        return all(_label(source, k) == _label(target, k) for k in self.equal)


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        name="down-inhibits-symptoms",
        source=("down",),
        target=("success_rate", "health_score", "burn_rate"),
        equal=("service",),
    ),
)
"""Shipped rules: a service's confirmed outage inhibits its own lagging symptoms."""


def _label(alert: Alert, key: str) -> str | None:
    if key == "service":
        return alert.service
    if key == "rule":
        return alert.rule
    return alert.labels.get(key)


def inhibitor(
    alert: Alert, active: Mapping[str, Alert], rules: Iterable[InhibitRule]
) -> str | None:
    """Fingerprint of the alert inhibiting ``alert`` now, or ``None``.

    Args:
        alert: An unresolved alert.
        active: Every unresolved alert by fingerprint.
        rules: The inhibition rules.
    """
    rules = tuple(rules)
    for source in sorted(active.values(), key=lambda a: a.id):
        if any(rule.inhibits(source, alert) for rule in rules):
            return source.fingerprint
    return None


def apply_inhibition(active: Mapping[str, Alert], rules: Iterable[InhibitRule]) -> list[Alert]:
    """Refresh ``inhibited_by`` on every unresolved alert.

    Returns:
        The alerts whose ``inhibited_by`` changed (to be saved).
    """
    rules = tuple(rules)
    changed = []
    for alert in active.values():
        value = inhibitor(alert, active, rules) if rules else None
        if value != alert.inhibited_by:
            alert.inhibited_by = value
            changed.append(alert)
    return changed


def holds_incident(alert: Alert, active: Mapping[str, Alert]) -> bool:
    """Whether ``alert`` keeps its incident open: not inhibited, or its source unresolved."""
    return alert.inhibited_by is None or alert.inhibited_by in active


__all__ = [
    "DEFAULT_INHIBIT_RULES",
    "InhibitRule",
    "apply_inhibition",
    "holds_incident",
    "inhibitor",
]
