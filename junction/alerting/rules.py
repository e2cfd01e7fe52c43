"""Alert rules as the engine uses them: thresholds, SLA, escalation, maintenance, routes.

:class:`AlertingConfig` is what :mod:`junction.alerting.engine` evaluates against. It is
built from an alerting file by :func:`junction.alerting.config.load_config` (the file's
format is documented there and in ``alerting.example.yaml``), or from the settings'
thresholds alone by :func:`default_config` when no file is configured.

Per service the engine judges :data:`RULE_NAMES`; a fingerprint is ``<service>:<rule>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from junction.alerting.channels import build_channels
from junction.alerting.inhibition import DEFAULT_INHIBIT_RULES, InhibitRule
from junction.alerting.model import Channel, Severity
from junction.durations import duration_seconds
from junction.settings import Settings, get_settings

RULE_NAMES = ("down", "success_rate", "response_time", "health_score", "burn_rate")
"""Rules evaluated per service; a fingerprint is ``<service>:<rule>``."""

COMPONENT_RULES = ("success_model", "capacity", "anomaly")
"""Rules Junction's own components judge and hand the engine as
``ServiceSnapshot.conditions``: for service ``junction`` the success model's load and the
capacity watch; per service ``anomaly`` (the monitor's anomaly alerts)."""

SILENCEABLE_RULES = RULE_NAMES + COMPONENT_RULES
"""Every rule an alert can carry: what silences and maintenance windows may name."""

SWITCH_RULES = ("down", "burn_rate")
"""Rules without thresholds, only ``{enabled: true|false}``."""

THRESHOLD_RULES = ("success_rate", "response_time", "health_score")
"""Rules with warning/critical thresholds."""

DIRECTION = {"success_rate": "below", "response_time": "above", "health_score": "below"}
"""Threshold rule -> whether it alerts when the value drops ``below`` or rises ``above``."""

MAX_DURATION = timedelta(days=366)
"""Longest duration an alerting setting or a silence may have."""


def short_repr(value: object) -> str:
    """``repr(value)``, cut short for messages: a 400-digit number is not worth repeating."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(value: object, *, maximum: timedelta = MAX_DURATION) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1w"``, ``"250ms"`` or a number of seconds.

    Args:
        value: The duration as written.
        maximum: Longest accepted (a longer one would overflow date arithmetic).

    Raises:
        ValueError: Not a duration, negative, not finite, or longer than ``maximum``.
    """
    if isinstance(value, timedelta):
        seconds: float | None = value.total_seconds()
    elif isinstance(value, bool):
        seconds = None
    elif isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"must be a finite duration, got {short_repr(value)}")
    elif isinstance(value, str):
        if value.strip().startswith("-"):
            raise ValueError(f"must not be negative, got {short_repr(value)}")
        seconds = duration_seconds(value)
        if seconds is None:
            raise ValueError(f"not a duration: {short_repr(value)} (use e.g. 30s, 15m, 2h, 1d)")
    else:
        seconds = None
    if seconds is None:
        raise ValueError(f"not a duration: {short_repr(value)}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {short_repr(value)}")
    if seconds > maximum.total_seconds():
        raise ValueError(f"must be at most {format_duration(maximum)}, got {short_repr(value)}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Compact form of a duration: ``2h``, ``15m``, ``1h30m``, ``45s``."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


@dataclass(frozen=True)
class Threshold:
    """Warning/critical bounds of one rule.

    Attributes:
        rule: ``success_rate``, ``response_time`` or ``health_score``.
        warning: Warning bound (``None``: no warning level).
        critical: Critical bound (``None``: no critical level).
        enabled: False disables the rule.
    """

    rule: str
    warning: float | None
    critical: float | None
    enabled: bool = True

    @property
    def direction(self) -> str:
        """``below`` (alert when the value drops under a bound) or ``above``."""
        return DIRECTION[self.rule]

    def judge(self, value: float | None) -> Severity | None:
        """Severity of ``value`` against the bounds; ``None`` when fine or unmeasured."""
        if value is None or not self.enabled:
            return None
        below = self.direction == "below"
        if self.critical is not None and (
            value < self.critical if below else value > self.critical
        ):
            return Severity.CRITICAL
        if self.warning is not None and (value < self.warning if below else value > self.warning):
            return Severity.WARNING
        return None


@dataclass(frozen=True)
class BurnRateWindow:
    """One multiwindow burn-rate alert: both windows must burn faster than ``factor``.

    Attributes:
        name: ``fast`` / ``slow``.
        long: The long window (1h for fast burn in the SRE workbook).
        short: The short window (5m), which makes the alert reset quickly.
        factor: Burn-rate threshold (14.4 = 2% of a 30-day budget in one hour).
        severity: Severity of the alert.
    """

    name: str
    long: timedelta
    short: timedelta
    factor: float
    severity: Severity


DEFAULT_BURN_RATES = (
    BurnRateWindow("fast", timedelta(hours=1), timedelta(minutes=5), 14.4, Severity.CRITICAL),
    BurnRateWindow("slow", timedelta(hours=6), timedelta(minutes=30), 6.0, Severity.WARNING),
)


@dataclass(frozen=True)
class SlaPolicy:
    """SLA target and burn-rate windows.

    Attributes:
        target: Default availability target (0.99).
        window: SLA period the error budget covers (30 days).
        burn_rates: Burn-rate alerts, evaluated in order; the most severe firing one wins.
        targets: Per-service targets overriding ``target``.
    """

    target: float = 0.99
    window: timedelta = timedelta(days=30)
    burn_rates: tuple[BurnRateWindow, ...] = DEFAULT_BURN_RATES
    targets: Mapping[str, float] = field(default_factory=dict)

    def target_for(self, service: str) -> float:
        """The availability target of ``service``."""
        return self.targets.get(service, self.target)


@dataclass(frozen=True)
class EscalationPolicy:
    """When unacknowledged critical alerts escalate and groups are re-sent.

    Attributes:
        after: Engine time a critical group may stay unacknowledged before the next level
            (``None``: never escalate).
        levels: Channels added at level 1, 2, ...
        repeat_interval: Re-send an unacknowledged firing group this often (``None``: never).
        max_step: Most engine time one evaluation may add, whatever the wall clock says: a
            clock that jumps hours forward must not escalate everything at once.
    """

    after: timedelta | None = None
    levels: tuple[tuple[str, ...], ...] = ()
    repeat_interval: timedelta | None = None
    max_step: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Matcher:
    """Which alerts a silence or maintenance window covers (all given fields must match).

    Attributes:
        service: Service name, or ``None`` for any.
        rule: Rule name, or ``None`` for any.
        labels: Labels that must all be present with these values.
    """

    service: str | None = None
    rule: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, service: str, rule: str, labels: Mapping[str, str]) -> bool:
        """True if an alert with these attributes is covered."""
        if self.service is not None and self.service != service:
            return False
        if self.rule is not None and self.rule != rule:
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True)
class MaintenanceWindow:
    """A silence from the configuration file, active between ``starts_at`` and ``ends_at``.

    Attributes:
        id: Name shown on silenced alerts (``maintenance:<id>``).
        matcher: What it silences.
        starts_at: Start (``None``: already started).
        ends_at: End; required, so nothing is silenced forever by accident.
        comment: Why.
    """

    id: str
    matcher: Matcher
    starts_at: datetime | None
    ends_at: datetime
    comment: str = ""

    def active(self, now: datetime) -> bool:
        """True while ``starts_at <= now < ends_at``."""
        return (self.starts_at is None or self.starts_at <= now) and now < self.ends_at


@dataclass(frozen=True)
class AlertingConfig:
    """A validated alerting configuration (the file format: :mod:`junction.alerting.config`).

    Attributes:
        source: File it came from, or ``<defaults>``.
        defaults: Rule -> default thresholds.
        overrides: Service -> rule -> thresholds overriding the defaults.
        switches: ``(rule, service)`` -> enabled, for the rules without thresholds
            (``down``, ``burn_rate``); service ``None`` holds the default (on).
        service_labels: Service -> extra labels put on its alerts.
        min_observations: Observations a window needs before threshold rules judge it.
        channels: Channel name -> raw spec dict (``type`` plus per-type parameters).
        routes: Severity -> channels notified when a group reaches it.
        service_routes: Service -> its own routes (replacing ``routes`` for the groups
            whose root cause is that service; severities it omits use ``routes``).
        resolve_after: How long (engine time) a rule must stay fine before its alert
            resolves; damps flapping (0: resolve on the first good evaluation).
        escalation: Escalation and repeat policy.
        group_wait: How long a new group waits before its first notification.
        dependency_wait: How long a new group whose root service has declared
            dependencies waits (at least) for one of them to start failing, so the
            dependents of an outage detected before their dependency fold into its
            group instead of notifying on their own.
        resolve_wait: How long (engine time) a notified group whose alerts have all
            cleared stays open before its resolved message; a new alert of its root
            service meanwhile rejoins it without a new page (flapping, a relapse).
        dependencies: Service -> services it depends on (direct).
        maintenance: Configured maintenance windows.
        sla: SLA targets and burn-rate windows.
        inhibit: Inhibition rules (:mod:`junction.alerting.inhibition`; default: a
            service's ``down`` inhibits its ``success_rate``, ``health_score`` and
            ``burn_rate``).
    """

    source: str = "<defaults>"
    defaults: Mapping[str, Threshold] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, Threshold]] = field(default_factory=dict)
    switches: Mapping[tuple[str, str | None], bool] = field(default_factory=dict)
    service_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    min_observations: int = 1
    channels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    routes: Mapping[Severity, tuple[str, ...]] = field(default_factory=dict)
    service_routes: Mapping[str, Mapping[Severity, tuple[str, ...]]] = field(default_factory=dict)
    resolve_after: timedelta = timedelta(0)
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    group_wait: timedelta = timedelta(0)
    dependency_wait: timedelta = timedelta(seconds=5)
    resolve_wait: timedelta = timedelta(0)
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    maintenance: tuple[MaintenanceWindow, ...] = ()
    sla: SlaPolicy = field(default_factory=SlaPolicy)
    inhibit: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES

    def thresholds(self, service: str) -> dict[str, Threshold]:
        """Effective thresholds of ``service`` (defaults merged with its overrides)."""
        merged = dict(self.defaults)
        merged.update(self.overrides.get(service, {}))
        return merged

    def rule_on(self, rule: str, service: str) -> bool:
        """Whether switch rule ``rule`` (``down``, ``burn_rate``) is on for ``service``."""
        return self.switches.get((rule, service), self.switches.get((rule, None), True))

    def labels(self, service: str) -> dict[str, str]:
        """Configured labels of ``service``."""
        return dict(self.service_labels.get(service, {}))

    def route(self, severity: Severity, service: str | None = None) -> tuple[str, ...]:
        """Channels a group of ``severity`` (root cause ``service``) is sent to."""
        own = self.service_routes.get(service, {}) if service is not None else {}
        if severity in own:
            return own[severity]
        return self.routes.get(severity, ())

    def upstream(self, service: str) -> list[str]:
        """Every service ``service`` depends on, directly or not, nearest first."""
        seen: list[str] = []
        queue = list(self.dependencies.get(service, ()))
        while queue:
            current = queue.pop(0)
            if current in seen or current == service:
                continue
            seen.append(current)
            queue.extend(self.dependencies.get(current, ()))
        return seen

    def build_channels(self, settings: Settings) -> dict[str, Channel]:
        """Build every configured channel (:func:`junction.alerting.channels.build_channel`).

        Raises:
            ChannelConfigError: A channel cannot be built (an unset secret variable, no
                routing key); one line per channel, naming it and the field.
        """
        return dict(build_channels(self.channels, settings))


def settings_thresholds(settings: Settings) -> dict[str, Threshold]:
    """The threshold rules as the settings define them (the defaults of every file)."""
    return {
        "success_rate": Threshold(
            "success_rate", settings.success_rate_warning, settings.success_rate_critical
        ),
        "response_time": Threshold(
            "response_time", settings.response_time_warning_ms, settings.response_time_critical_ms
        ),
        "health_score": Threshold(
            "health_score", settings.health_score_warning, settings.health_score_critical
        ),
    }


def default_config(settings: Settings | None = None) -> AlertingConfig:
    """The configuration used without a file: the settings' thresholds, no channels, the
    default inhibition rules."""
    return AlertingConfig(defaults=settings_thresholds(settings or get_settings()))


NO_CHANNEL_HINT = (
    "to be notified, name channels and routes in an alerting file (channels:, routes:; "
    "see alerting.example.yaml, `junction alerts channel-types`) and point "
    "JUNCTION_ALERTING_FILE at it"
)


def delivery_warning(config: AlertingConfig) -> str | None:
    """One line when no alert can reach anybody (no channel, or no route to one), else None.

    Alerts are then only recorded (``junction alerts list``, the dashboard); the monitor,
    ``junction serve --monitor``, the monitor flow and ``junction alerts list`` say so once.
    """
    if not config.channels:
        return f"no alert channel configured: alerts are only recorded; {NO_CHANNEL_HINT}"
    routed = any(config.routes.values()) or any(
        any(r.values()) for r in config.service_routes.values()
    )
    if not routed:
        first = next(iter(config.channels))
        return (
            f"alert channels configured in {config.source} but no route sends to them: "
            f"alerts are only recorded; add routes: (e.g. routes: {{critical: [{first}]}})"
        )
    return None
