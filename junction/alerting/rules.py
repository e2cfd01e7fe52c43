"""Alerting configuration: rules, channels, routes, escalation, dependencies, maintenance, SLA.

Loaded from a YAML file (``JUNCTION_ALERTING_FILE``; see ``alerting.example.yaml`` at the
repository root) with :func:`load_config`, or built from the settings' thresholds alone
with :func:`default_config` when no file is configured. Every top-level key is optional::

    defaults:            # rule thresholds for every service (default: the settings')
      success_rate:  {warning: 0.95, critical: 0.90}   # alert when BELOW (0-1)
      response_time: {warning: 1000, critical: 5000}   # p95 of successes, ms, ABOVE
      health_score:  {warning: 80, critical: 60}       # alert when BELOW (0-100)
      burn_rate:     {enabled: true}                   # SLA burn-rate alerts
      down:          {enabled: true}                   # the monitor's confirmed outage
    min_observations: 1  # a window needs this many observations before rules judge it
    services:            # per-service overrides (catalog names)
      gitlab:
        success_rate: {warning: 0.9}                   # the other bound is inherited
        health_score: {enabled: false}
        labels: {team: devtools}
        sla_target: 0.995
        routes: {critical: [devtools-chat, oncall]}    # instead of the global routes
    channels:            # name -> {type: webex|slack|email|pagerduty|alertmanager|webhook, ...}
      chat: {type: webex, room_id: ROOM}
      oncall: {type: pagerduty}
    routes: {warning: [chat], critical: [chat, oncall]}
    resolve_after: 0s             # a rule must stay fine this long before its alert resolves
    escalation:
      after: 15m                  # critical and unacknowledged this long -> next level
      levels: [[manager], [director]]
      repeat_interval: 4h         # re-send an unacknowledged group this often
      max_step: 5m                # most engine time one evaluation may add (clock jumps)
    grouping:
      wait: 0s                    # hold every new group's first message this long
      dependency_wait: 5s         # ... and a group of a service WITH dependencies this long
    dependencies: {gitlab: [okta], jira: [okta]}      # service -> what it depends on
    maintenance:
      - {id: okta-upgrade, service: okta, starts_at: 2026-11-28T02:00:00Z,
         ends_at: 2026-11-28T04:00:00Z, comment: vendor upgrade}
    sla:
      target: 0.99
      window: 30d
      burn_rates:                 # Google SRE workbook, multiwindow multi-burn-rate
        - {name: fast, long: 1h, short: 5m, factor: 14.4, severity: critical}
        - {name: slow, long: 6h, short: 30m, factor: 6, severity: warning}

Validation rejects nonsense with one line per problem, ``<file>:<line>: <field>: <problem>``:
a warning looser than its critical threshold, negative or out-of-range values, unknown
keys, unknown services (not in the catalog), unknown channel names in routes or
escalation levels, unknown channel types, dependency cycles.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from junction.alerting.model import Severity
from junction.durations import duration_seconds

if TYPE_CHECKING:
    from junction.alerting.model import Channel
    from junction.settings import Settings

CHANNEL_TYPES = ("webex", "slack", "email", "pagerduty", "alertmanager", "webhook")
"""Channel ``type`` values the configuration accepts."""

RULE_NAMES = ("down", "success_rate", "response_time", "health_score", "burn_rate")
"""Rules evaluated per service; a fingerprint is ``<service>:<rule>``."""

SWITCH_RULES = ("down", "burn_rate")
"""Rules without thresholds, only ``{enabled: true|false}``."""

THRESHOLD_RULES = ("success_rate", "response_time", "health_score")
"""Rules with warning/critical thresholds."""

_DIRECTION = {"success_rate": "below", "response_time": "above", "health_score": "below"}
_UPPER = {"success_rate": 1.0, "health_score": 100.0}
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

Path_ = tuple[str | int, ...]


class AlertConfigError(ValueError):
    """An invalid alerting configuration; ``str()`` has one ``file:line: field: problem`` per line.

    Attributes:
        problems: ``(file, line, field, problem)`` tuples.
    """

    def __init__(self, problems: list[tuple[str, int | None, str, str]]) -> None:
        self.problems = problems
        lines = []
        for file, line, fld, problem in problems:
            where = f"{file}:{line}" if line is not None else file
            lines.append(f"{where}: {fld}: {problem}" if fld else f"{where}: {problem}")
        super().__init__("\n".join(lines))


def parse_duration(value: object) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1w"``, ``"250ms"`` or a number of seconds.

    Raises:
        ValueError: Not a duration, or negative.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return timedelta(seconds=float(value))
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    if value.strip().startswith("-"):
        raise ValueError(f"must not be negative, got {value!r}")
    seconds = duration_seconds(value)
    if seconds is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 2h, 1d)")
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
        return _DIRECTION[self.rule]

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
    """A validated alerting configuration (see the module docstring for the YAML).

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
        dependencies: Service -> services it depends on (direct).
        maintenance: Configured maintenance windows.
        sla: SLA targets and burn-rate windows.
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
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    maintenance: tuple[MaintenanceWindow, ...] = ()
    sla: SlaPolicy = field(default_factory=SlaPolicy)

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
        """Build every configured channel with ``junction.alerting.channels.build_channel``.

        Raises:
            AlertConfigError: A channel's parameters are invalid (message from the
                channel module, prefixed with the file and channel name).
            RuntimeError: The channels module is not available.
        """
        try:
            from junction.alerting import channels as channels_module
        except ImportError as exc:  # pragma: no cover - depends on the tree's state
            raise RuntimeError(f"alert channels are not available: {exc}") from exc
        built: dict[str, Channel] = {}
        problems: list[tuple[str, int | None, str, str]] = []
        for name, spec in self.channels.items():
            try:
                channel: Any = channels_module.build_channel(name, dict(spec), settings)
                built[name] = channel
            except (ValueError, TypeError, KeyError) as exc:
                problems.append((self.source, None, f"channels.{name}", str(exc)))
        if problems:
            raise AlertConfigError(problems)
        return built


def default_config(settings: Settings | None = None) -> AlertingConfig:
    """The configuration used without a file: the settings' thresholds, no channels."""
    if settings is None:
        from junction.settings import get_settings

        settings = get_settings()
    return AlertingConfig(defaults=_settings_defaults(settings))


def _settings_defaults(settings: Settings) -> dict[str, Threshold]:
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


def load_settings_config(settings: Settings | None = None) -> AlertingConfig:
    """The configuration ``settings.alerting_file`` names, or the defaults without one."""
    if settings is None:
        from junction.settings import get_settings

        settings = get_settings()
    if settings.alerting_file is None:
        return default_config(settings)
    return load_config(settings.alerting_file, settings=settings)


def load_config(
    path: str | Path,
    *,
    settings: Settings | None = None,
    known_services: Collection[str] | None = None,
) -> AlertingConfig:
    """Read and validate an alerting YAML file.

    Args:
        path: The file.
        settings: Source of the default thresholds (default: the process's settings).
        known_services: Valid service names (default: the integration catalog's).

    Raises:
        AlertConfigError: Unreadable file, bad YAML, or invalid content (every problem,
            one per line, with file, line and field).
    """
    file = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise AlertConfigError([(file, None, "", f"cannot read: {exc.strerror or exc}")]) from None
    return parse_config(text, source=file, settings=settings, known_services=known_services)


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    settings: Settings | None = None,
    known_services: Collection[str] | None = None,
) -> AlertingConfig:
    """Validate alerting YAML given as text (see :func:`load_config`)."""
    if settings is None:
        from junction.settings import get_settings

        settings = get_settings()
    if known_services is None:
        from integrations.catalog import load_catalog

        known_services = load_catalog().names
    parser = _Parser(source, set(known_services), settings)
    return parser.parse(text)


def _validate_channel_params(name: str, spec: Mapping[str, Any]) -> str | None:
    """Per-type parameter check by the channels module, if it is there (no clients built)."""
    try:
        from junction.alerting.channels import validate_channel
    except ImportError:  # pragma: no cover - the channels module is optional here
        return None
    try:
        validate_channel(name, spec)
    except ValueError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------- parsing


class _Parser:
    """Walks the YAML node tree (for line numbers) and the constructed data together."""

    def __init__(self, source: str, services: set[str], settings: Settings) -> None:
        self.source = source
        self.services = services
        self.settings = settings
        self.lines: dict[Path_, int] = {}
        self.problems: list[tuple[str, int | None, str, str]] = []

    # -- helpers
    def err(self, path: Path_, problem: str) -> None:
        line = None
        probe = path
        while True:
            if probe in self.lines:
                line = self.lines[probe]
                break
            if not probe:
                break
            probe = probe[:-1]
        fld = ""
        for part in path:
            fld += f"[{part}]" if isinstance(part, int) else (f".{part}" if fld else part)
        self.problems.append((self.source, line, fld, problem))

    def _mark(self, node: yaml.Node, path: Path_) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.lines[(*path, key)] = key_node.start_mark.line + 1
                    self.err((*path, key), "duplicate key")
                seen.add(key)
                self._mark(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._mark(item, (*path, index))

    def mapping(self, value: object, path: Path_, allowed: Iterable[str] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        out: dict[str, Any] = {}
        allowed_set = set(allowed) if allowed is not None else None
        for key, item in value.items():
            if not isinstance(key, str):
                self.err(path, f"keys must be strings, got {key!r}")
                continue
            if allowed_set is not None and key not in allowed_set:
                self.err(
                    (*path, key), f"unknown key (expected one of: {', '.join(sorted(allowed_set))})"
                )
                continue
            out[key] = item
        return out

    def number(
        self, value: object, path: Path_, *, low: float = 0.0, high: float | None = None
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.err(path, f"must be a number, got {value!r}")
            return None
        if value < low:
            self.err(
                path, f"must not be negative, got {value}" if low == 0 else f"must be >= {low}"
            )
            return None
        if high is not None and value > high:
            self.err(path, f"must be <= {high:g}, got {value}")
            return None
        return float(value)

    def duration(self, value: object, path: Path_) -> timedelta | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.err(path, str(exc))
            return None

    def service(self, value: object, path: Path_) -> str | None:
        if not isinstance(value, str):
            self.err(path, f"must be a service name, got {value!r}")
            return None
        if value not in self.services:
            self.err(path, f"unknown service {value!r}")
            return None
        return value

    def str_list(self, value: object, path: Path_) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.err(path, f"must be a list of names, got {value!r}")
            return []
        out = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.err((*path, index), f"must be a name, got {item!r}")
            else:
                out.append(item)
        return out

    def labels(self, value: object, path: Path_) -> dict[str, str]:
        raw = self.mapping(value, path, None)
        out = {}
        for key, item in raw.items():
            if isinstance(item, dict | list) or item is None:
                self.err((*path, key), "label values must be scalars")
            else:
                out[key] = str(item).lower() if isinstance(item, bool) else str(item)
        return out

    def timestamp(self, value: object, path: Path_) -> datetime | None:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        self.err(path, f"must be an ISO-8601 timestamp, got {value!r}")
        return None

    # -- sections
    def parse(self, text: str) -> AlertingConfig:
        try:
            loader = yaml.SafeLoader(text)
            try:
                node = loader.get_single_node()
                data = loader.construct_document(node) if node is not None else {}
            finally:
                loader.dispose()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise AlertConfigError([(self.source, line, "", f"invalid YAML: {problem}")]) from None
        if node is not None:
            self._mark(node, ())
        top = self.mapping(
            data,
            (),
            (
                "version",
                "defaults",
                "min_observations",
                "services",
                "channels",
                "routes",
                "resolve_after",
                "escalation",
                "grouping",
                "dependencies",
                "maintenance",
                "sla",
            ),
        )
        defaults = _settings_defaults(self.settings)
        switches: dict[tuple[str, str | None], bool] = {}
        for rule, spec in self.mapping(top.get("defaults"), ("defaults",), RULE_NAMES).items():
            path: Path_ = ("defaults", rule)
            if rule in SWITCH_RULES:
                switches[(rule, None)] = self._enabled(spec, path)
            else:
                defaults[rule] = self._threshold(rule, spec, path, defaults[rule])
        min_obs = 1
        if "min_observations" in top:
            value = top["min_observations"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self.err(("min_observations",), f"must be an integer >= 1, got {value!r}")
            else:
                min_obs = value

        overrides: dict[str, dict[str, Threshold]] = {}
        raw_service_routes: dict[str, tuple[object, Path_]] = {}
        labels: dict[str, dict[str, str]] = {}
        targets: dict[str, float] = {}
        services = self.mapping(top.get("services"), ("services",), None)
        for name, spec in services.items():
            path = ("services", name)
            if self.service(name, path) is None:
                continue
            body = self.mapping(spec, path, (*RULE_NAMES, "labels", "sla_target", "routes"))
            if "routes" in body:
                raw_service_routes[name] = (body["routes"], (*path, "routes"))
            for rule in THRESHOLD_RULES:
                if rule in body:
                    overrides.setdefault(name, {})[rule] = self._threshold(
                        rule, body[rule], (*path, rule), defaults[rule]
                    )
            for rule in SWITCH_RULES:
                if rule in body:
                    switches[(rule, name)] = self._enabled(body[rule], (*path, rule))
            if "labels" in body:
                labels[name] = self.labels(body["labels"], (*path, "labels"))
            if "sla_target" in body:
                target = self._target(body["sla_target"], (*path, "sla_target"))
                if target is not None:
                    targets[name] = target

        channels: dict[str, dict[str, Any]] = {}
        for name, spec in self.mapping(top.get("channels"), ("channels",), None).items():
            path = ("channels", name)
            if not _NAME_RE.match(name):
                self.err(path, "channel names may use letters, digits, '_', '.', '-'")
                continue
            if not isinstance(spec, dict):
                self.err(path, "must be a mapping with a 'type'")
                continue
            kind = spec.get("type")
            if kind not in CHANNEL_TYPES:
                self.err(
                    (*path, "type") if "type" in spec else path,
                    f"unknown channel type {kind!r} (expected one of: {', '.join(CHANNEL_TYPES)})"
                    if kind is not None
                    else "missing 'type'",
                )
                continue
            problem = _validate_channel_params(name, spec)
            if problem is not None:
                self.err(path, problem)
                continue
            channels[name] = dict(spec)

        def known_channels(names: list[str], path: Path_) -> tuple[str, ...]:
            good = []
            for index, name in enumerate(names):
                if name not in channels:
                    self.err((*path, index), f"unknown channel {name!r}")
                else:
                    good.append(name)
            return tuple(good)

        def parse_routes(spec: object, path: Path_) -> dict[Severity, tuple[str, ...]]:
            out: dict[Severity, tuple[str, ...]] = {}
            raw = self.mapping(spec, path, [s.value for s in Severity])
            for sev_name, names in raw.items():
                out[Severity(sev_name)] = known_channels(
                    self.str_list(names, (*path, sev_name)), (*path, sev_name)
                )
            return out

        routes = parse_routes(top.get("routes"), ("routes",))
        service_routes = {
            name: parse_routes(spec, path) for name, (spec, path) in raw_service_routes.items()
        }
        resolve_after = timedelta(0)
        if "resolve_after" in top:
            resolve_after = self.duration(top["resolve_after"], ("resolve_after",)) or timedelta(0)

        escalation = self._escalation(top.get("escalation"), known_channels)
        group_wait = timedelta(0)
        dependency_wait = timedelta(seconds=5)
        grouping = self.mapping(top.get("grouping"), ("grouping",), ("wait", "dependency_wait"))
        if "wait" in grouping:
            group_wait = self.duration(grouping["wait"], ("grouping", "wait")) or timedelta(0)
        if "dependency_wait" in grouping:
            parsed_wait = self.duration(
                grouping["dependency_wait"], ("grouping", "dependency_wait")
            )
            if parsed_wait is not None:
                dependency_wait = parsed_wait

        dependencies: dict[str, tuple[str, ...]] = {}
        for name, deps in self.mapping(top.get("dependencies"), ("dependencies",), None).items():
            path = ("dependencies", name)
            if self.service(name, path) is None:
                continue
            good = []
            for index, dep in enumerate(self.str_list(deps, path)):
                if self.service(dep, (*path, index)) is None:
                    continue
                if dep == name:
                    self.err((*path, index), "a service cannot depend on itself")
                    continue
                good.append(dep)
            dependencies[name] = tuple(good)
        self._check_cycles(dependencies)

        maintenance = self._maintenance(top.get("maintenance"))
        sla = self._sla(top.get("sla"), targets)

        if self.problems:
            raise AlertConfigError(self.problems)
        return AlertingConfig(
            source=self.source,
            defaults=defaults,
            overrides=overrides,
            switches=switches,
            service_labels=labels,
            min_observations=min_obs,
            channels=channels,
            routes=routes,
            service_routes=service_routes,
            resolve_after=resolve_after,
            escalation=escalation,
            group_wait=group_wait,
            dependency_wait=dependency_wait,
            dependencies=dependencies,
            maintenance=maintenance,
            sla=sla,
        )

    def _enabled(self, spec: object, path: Path_) -> bool:
        body = self.mapping(spec, path, ("enabled",))
        value = body.get("enabled", True)
        if not isinstance(value, bool):
            self.err((*path, "enabled"), f"must be true or false, got {value!r}")
            return True
        return value

    def _threshold(self, rule: str, spec: object, path: Path_, base: Threshold) -> Threshold:
        body = self.mapping(spec, path, ("warning", "critical", "enabled"))
        high = _UPPER.get(rule)
        warning, critical = base.warning, base.critical
        ok = True
        for key in ("warning", "critical"):
            if key not in body:
                continue
            value = self.number(body[key], (*path, key), high=high)
            if value is None:
                ok = False
            elif key == "warning":
                warning = value
            else:
                critical = value
        enabled = True
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                self.err((*path, "enabled"), f"must be true or false, got {body['enabled']!r}")
            else:
                enabled = body["enabled"]
        if ok and warning is not None and critical is not None:
            where = (*path, "warning") if "warning" in body else (*path, "critical")
            if _DIRECTION[rule] == "below" and warning < critical:
                self.err(
                    where,
                    f"warning ({warning:g}) is looser than critical ({critical:g}): "
                    f"{rule} alerts when the value drops below, so warning must be >= critical",
                )
            elif _DIRECTION[rule] == "above" and warning > critical:
                self.err(
                    where,
                    f"warning ({warning:g}) is looser than critical ({critical:g}): "
                    f"{rule} alerts when the value rises above, so warning must be <= critical",
                )
        return Threshold(rule, warning, critical, enabled)

    def _target(self, value: object, path: Path_) -> float | None:
        target = self.number(value, path, high=1.0)
        if target is not None and target >= 1.0:
            self.err(path, "must be below 1 (a 100% target leaves no error budget)")
            return None
        if target is not None and target <= 0:
            self.err(path, "must be above 0")
            return None
        return target

    def _escalation(self, spec: object, known_channels: Any) -> EscalationPolicy:
        body = self.mapping(
            spec, ("escalation",), ("after", "levels", "repeat_interval", "max_step")
        )
        after = repeat = None
        max_step = timedelta(minutes=5)
        if "after" in body:
            after = self.duration(body["after"], ("escalation", "after"))
            if after is not None and after <= timedelta(0):
                self.err(("escalation", "after"), "must be positive")
                after = None
        if "repeat_interval" in body:
            repeat = self.duration(body["repeat_interval"], ("escalation", "repeat_interval"))
            if repeat is not None and repeat <= timedelta(0):
                self.err(("escalation", "repeat_interval"), "must be positive")
                repeat = None
        if "max_step" in body:
            step = self.duration(body["max_step"], ("escalation", "max_step"))
            if step is not None and step <= timedelta(0):
                self.err(("escalation", "max_step"), "must be positive")
            elif step is not None:
                max_step = step
        levels: list[tuple[str, ...]] = []
        raw_levels = body.get("levels", [])
        if not isinstance(raw_levels, list):
            self.err(("escalation", "levels"), "must be a list of channel lists")
            raw_levels = []
        for index, level in enumerate(raw_levels):
            path: Path_ = ("escalation", "levels", index)
            levels.append(known_channels(self.str_list(level, path), path))
        if levels and after is None and "after" not in body:
            self.err(("escalation", "levels"), "levels need 'after' (how long before escalating)")
        return EscalationPolicy(after, tuple(levels), repeat, max_step)

    def _check_cycles(self, deps: dict[str, tuple[str, ...]]) -> None:
        state: dict[str, int] = {}

        def visit(node: str, trail: list[str]) -> bool:
            if state.get(node) == 1:
                cycle = [*trail[trail.index(node) :], node]
                self.err(("dependencies", cycle[0]), f"dependency cycle: {' -> '.join(cycle)}")
                return True
            if state.get(node) == 2:
                return False
            state[node] = 1
            for dep in deps.get(node, ()):
                if visit(dep, [*trail, node]):
                    return True
            state[node] = 2
            return False

        for node in list(deps):
            if visit(node, []):
                return

    def _maintenance(self, spec: object) -> tuple[MaintenanceWindow, ...]:
        if spec is None:
            return ()
        if not isinstance(spec, list):
            self.err(("maintenance",), "must be a list of windows")
            return ()
        windows = []
        ids: set[str] = set()
        for index, item in enumerate(spec):
            path: Path_ = ("maintenance", index)
            body = self.mapping(
                item,
                path,
                ("id", "service", "rule", "labels", "starts_at", "ends_at", "comment"),
            )
            if not body:
                continue
            ident = str(body.get("id", index))
            if ident in ids:
                self.err((*path, "id"), f"duplicate maintenance id {ident!r}")
            ids.add(ident)
            service = None
            if "service" in body:
                service = self.service(body["service"], (*path, "service"))
            rule = body.get("rule")
            if rule is not None and rule not in RULE_NAMES:
                self.err(
                    (*path, "rule"),
                    f"unknown rule {rule!r} (expected one of: {', '.join(RULE_NAMES)})",
                )
                rule = None
            labels = self.labels(body.get("labels"), (*path, "labels"))
            if "service" not in body and rule is None and not labels:
                self.err(
                    path,
                    "needs at least one of service, rule, labels (it would silence everything)",
                )
            starts = (
                self.timestamp(body["starts_at"], (*path, "starts_at"))
                if "starts_at" in body
                else None
            )
            if "ends_at" not in body:
                self.err(path, "missing 'ends_at' (maintenance windows must expire)")
                continue
            ends = self.timestamp(body["ends_at"], (*path, "ends_at"))
            if ends is None:
                continue
            if starts is not None and ends <= starts:
                self.err((*path, "ends_at"), "must be after starts_at")
                continue
            windows.append(
                MaintenanceWindow(
                    id=ident,
                    matcher=Matcher(service, rule, labels),
                    starts_at=starts,
                    ends_at=ends,
                    comment=str(body.get("comment", "")),
                )
            )
        return tuple(windows)

    def _sla(self, spec: object, targets: dict[str, float]) -> SlaPolicy:
        body = self.mapping(spec, ("sla",), ("target", "window", "burn_rates"))
        target = 0.99
        if "target" in body:
            target = self._target(body["target"], ("sla", "target")) or target
        window = timedelta(days=30)
        if "window" in body:
            parsed = self.duration(body["window"], ("sla", "window"))
            if parsed is not None and parsed <= timedelta(0):
                self.err(("sla", "window"), "must be positive")
            elif parsed is not None:
                window = parsed
        burn_rates: tuple[BurnRateWindow, ...] = DEFAULT_BURN_RATES
        if "burn_rates" in body:
            raw = body["burn_rates"]
            if not isinstance(raw, list):
                self.err(("sla", "burn_rates"), "must be a list")
                raw = []
            parsed_rates = []
            names: set[str] = set()
            for index, item in enumerate(raw):
                path: Path_ = ("sla", "burn_rates", index)
                rb = self.mapping(item, path, ("name", "long", "short", "factor", "severity"))
                missing = [k for k in ("long", "short", "factor", "severity") if k not in rb]
                if missing:
                    self.err(path, f"missing {', '.join(missing)}")
                    continue
                name = str(rb.get("name", f"burn{index}"))
                if name in names:
                    self.err((*path, "name"), f"duplicate burn-rate name {name!r}")
                names.add(name)
                long = self.duration(rb["long"], (*path, "long"))
                short = self.duration(rb["short"], (*path, "short"))
                factor = self.number(rb["factor"], (*path, "factor"))
                if factor is not None and factor <= 0:
                    self.err((*path, "factor"), "must be positive")
                    factor = None
                try:
                    severity = Severity(rb["severity"])
                except ValueError:
                    self.err(
                        (*path, "severity"), f"must be warning or critical, got {rb['severity']!r}"
                    )
                    continue
                if long is None or short is None or factor is None:
                    continue
                if short <= timedelta(0) or long <= timedelta(0):
                    self.err(path, "windows must be positive")
                    continue
                if short > long:
                    self.err((*path, "short"), "short window must not be longer than the long one")
                    continue
                if long > window:
                    self.err((*path, "long"), "long window must not exceed the SLA window")
                    continue
                parsed_rates.append(BurnRateWindow(name, long, short, factor, severity))
            burn_rates = tuple(parsed_rates)
        return SlaPolicy(target=target, window=window, burn_rates=burn_rates, targets=targets)
