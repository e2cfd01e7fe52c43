"""The alerting file: its schema and how it becomes an :class:`AlertingConfig`.

Loaded from a YAML file (``JUNCTION_ALERTING_FILE``; see ``alerting.example.yaml`` at the
repository root) with :func:`load_config`; without a file the engine uses
:func:`junction.alerting.rules.default_config`. Every top-level key is optional::

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
    channels:            # name -> {type: <a channel type>, ...its fields}
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
      resolve_wait: 0s            # a told incident whose alerts cleared stays open this long:
                                  # its service failing again rejoins it (no new page)
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
    inhibit:             # one cause pages once (junction.alerting.inhibition); [] = off
      - {name: down-inhibits-symptoms, source: down,
         target: [success_rate, health_score, burn_rate], equal: [service]}

The file's shape is :mod:`junction.alerting.schema`. Channel types and their fields come
from the channel registry
(:data:`junction.alerting.channels.CHANNELS`; ``junction alerts channel-types`` lists them).

The file goes through the one YAML loader (:mod:`integrations.yamlconfig`: size, node and
depth limits, invalid UTF-8, duplicate keys), then two passes, each reporting every
problem it finds as ``<file>:<line>: <field>: <problem>``:

1. its shape, :class:`~junction.alerting.schema.AlertingFile`: types, unknown keys (with
   "did you mean"), numbers finite and in range, durations (at most
   :data:`~junction.alerting.rules.MAX_DURATION`), timestamps, services in the catalog;
2. its meaning, :func:`resolve`: each channel's fields for its type, channel names in
   routes and escalation levels, a warning looser than its critical threshold (inherited
   bounds included), dependency cycles, maintenance windows that never expire or silence
   everything, burn-rate windows and factors that can never fire, inhibition rules
   that inhibit their own source, have no ``equal`` label or repeat a name.

The second pass runs once the first finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from integrations.catalog import load_catalog
from integrations.yamlconfig import (
    ConfigError,
    ConfigProblem,
    DataPath,
    YamlDocument,
    did_you_mean,
    parse_yaml,
    problems_from_validation,
    read_yaml,
    validate_document,
)
from junction.alerting.channels import CHANNELS, unknown_type_message
from junction.alerting.inhibition import DEFAULT_INHIBIT_RULES, InhibitRule
from junction.alerting.model import Severity
from junction.alerting.rules import (
    DEFAULT_BURN_RATES,
    DIRECTION,
    RULE_NAMES,
    AlertingConfig,
    BurnRateWindow,
    EscalationPolicy,
    MaintenanceWindow,
    Matcher,
    SlaPolicy,
    Threshold,
    default_config,
    settings_thresholds,
)
from junction.alerting.schema import (
    AlertingFile,
    BurnRateSpec,
    SwitchSpec,
)
from junction.settings import Settings, get_settings


class AlertConfigError(ConfigError):
    """An invalid alerting file; ``str()`` has one ``file:line: field: problem`` per line."""


# --- the file's meaning -----------------------------------------------------------------


class _Resolver:
    """Second pass: cross-references and cross-field rules, every problem located."""

    def __init__(self, file: AlertingFile, doc: YamlDocument, settings: Settings) -> None:
        self.file = file
        self.doc = doc
        self.settings = settings
        self.problems: list[ConfigProblem] = []

    def err(self, path: DataPath, message: str) -> None:
        self.problems.append(self.doc.problem(path, message))

    def run(self) -> AlertingConfig:
        f = self.file
        defaults = settings_thresholds(self.settings)
        switches: dict[tuple[str, str | None], bool] = {}
        for rule in RULE_NAMES:
            spec = getattr(f.defaults, rule)
            if isinstance(spec, SwitchSpec):
                switches[(rule, None)] = spec.enabled
            elif spec is not None:
                defaults[rule] = self.threshold(rule, spec, ("defaults", rule), defaults[rule])

        channels = {name: dict(spec) for name, spec in f.channels.items()}
        for name, spec in channels.items():
            self.channel(name, spec)

        overrides: dict[str, dict[str, Threshold]] = {}
        labels: dict[str, dict[str, str]] = {}
        targets: dict[str, float] = {}
        service_routes: dict[str, dict[Severity, tuple[str, ...]]] = {}
        for name, svc in f.services.items():
            path: DataPath = ("services", name)
            for rule in RULE_NAMES:
                spec = getattr(svc, rule)
                if isinstance(spec, SwitchSpec):
                    switches[(rule, name)] = spec.enabled
                elif spec is not None:
                    overrides.setdefault(name, {})[rule] = self.threshold(
                        rule, spec, (*path, rule), defaults[rule]
                    )
            if svc.labels:
                labels[name] = dict(svc.labels)
            if svc.sla_target is not None:
                targets[name] = svc.sla_target
            if svc.routes is not None:
                service_routes[name] = self.routes(svc.routes, (*path, "routes"))

        dependencies: dict[str, tuple[str, ...]] = {}
        for name, deps in f.dependencies.items():
            for index, dep in enumerate(deps):
                if dep == name:
                    self.err(("dependencies", name, index), "a service cannot depend on itself")
            dependencies[name] = tuple(d for d in deps if d != name)
        self.check_cycles(dependencies)

        config = AlertingConfig(
            source=self.doc.source,
            defaults=defaults,
            overrides=overrides,
            switches=switches,
            service_labels=labels,
            min_observations=f.min_observations,
            channels=channels,
            routes=self.routes(f.routes, ("routes",)),
            service_routes=service_routes,
            resolve_after=f.resolve_after,
            escalation=self.escalation(),
            group_wait=f.grouping.wait,
            dependency_wait=f.grouping.dependency_wait,
            resolve_wait=f.grouping.resolve_wait,
            dependencies=dependencies,
            maintenance=self.maintenance(),
            sla=self.sla(targets),
            inhibit=self.inhibit(),
        )
        if self.problems:
            raise AlertConfigError(sorted(self.problems, key=lambda p: p.line or 0))
        return config

    def inhibit(self) -> tuple[InhibitRule, ...]:
        if self.file.inhibit is None:
            return DEFAULT_INHIBIT_RULES
        rules: list[InhibitRule] = []
        names: set[str] = set()
        for index, spec in enumerate(self.file.inhibit):
            path: DataPath = ("inhibit", index)
            name = spec.name or f"inhibit-{index + 1}"
            if name in names:
                self.err((*path, "name"), f"duplicate inhibition rule name {name!r}")
            names.add(name)
            for key in ("source", "target"):
                if not getattr(spec, key):
                    self.err((*path, key), "must name at least one rule")
            both = sorted(set(spec.source) & set(spec.target))
            if both:
                self.err(
                    (*path, "target"),
                    f"{', '.join(both)} is both source and target: a rule cannot inhibit "
                    "its own source",
                )
            if not spec.equal:
                self.err(
                    (*path, "equal"),
                    "must name at least one label (e.g. [service]): without one, one "
                    "service's alert would inhibit every service's",
                )
            rules.append(
                InhibitRule(name, tuple(spec.source), tuple(spec.target), tuple(spec.equal))
            )
        return tuple(rules)

    def threshold(self, rule: str, spec: Any, path: DataPath, base: Threshold) -> Threshold:
        warning = base.warning if spec.warning is None else spec.warning
        critical = base.critical if spec.critical is None else spec.critical
        if warning is not None and critical is not None:
            below = DIRECTION[rule] == "below"
            if warning < critical if below else warning > critical:
                where = (*path, "warning") if spec.warning is not None else (*path, "critical")
                moves = "drops below" if below else "rises above"
                must = ">=" if below else "<="
                self.err(
                    where,
                    f"warning ({warning:g}) is looser than critical ({critical:g}): "
                    f"{rule} alerts when the value {moves}, so warning must be {must} critical",
                )
        return Threshold(rule, warning, critical, spec.enabled)

    def channel(self, name: str, spec: dict[str, Any]) -> None:
        path: DataPath = ("channels", name)
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in CHANNELS:
            where = (*path, "type") if "type" in spec else path
            self.err(where, unknown_type_message(kind))
            return
        try:
            CHANNELS[kind].Params.model_validate(spec)
        except ValidationError as exc:
            sub = _subdocument(self.doc, path, spec)
            prefix = ".".join(str(part) for part in path)
            for p in problems_from_validation(exc, sub, CHANNELS[kind].Params):
                fld = f"{prefix}.{p.field}" if p.field else prefix
                self.problems.append(ConfigProblem(p.source, p.line, fld, p.message))

    def names(self, names: list[str], path: DataPath) -> tuple[str, ...]:
        known = self.file.channels
        for index, name in enumerate(names):
            if name not in known:
                self.err((*path, index), f"unknown channel {name!r}{did_you_mean(name, known)}")
        return tuple(n for n in names if n in known)

    def routes(self, routes: Mapping[Severity, list[str]], path: DataPath) -> dict[Severity, Any]:
        return {sev: self.names(names, (*path, sev.value)) for sev, names in routes.items()}

    def escalation(self) -> EscalationPolicy:
        spec = self.file.escalation
        levels = tuple(
            self.names(level, ("escalation", "levels", index))
            for index, level in enumerate(spec.levels)
        )
        if levels and spec.after is None:
            self.err(("escalation", "levels"), "levels need 'after' (how long before escalating)")
        return EscalationPolicy(spec.after, levels, spec.repeat_interval, spec.max_step)

    def check_cycles(self, deps: dict[str, tuple[str, ...]]) -> None:
        state: dict[str, int] = {}

        def visit(node: str, trail: list[str]) -> bool:
            if state.get(node) == 1:
                cycle = [*trail[trail.index(node) :], node]
                self.err(("dependencies", cycle[0]), f"dependency cycle: {' -> '.join(cycle)}")
                return True
            if state.get(node) == 2:
                return False
            state[node] = 1
            if any(visit(dep, [*trail, node]) for dep in deps.get(node, ())):
                return True
            state[node] = 2
            return False

        for node in list(deps):
            if visit(node, []):
                return

    def maintenance(self) -> tuple[MaintenanceWindow, ...]:
        windows = []
        ids: set[str] = set()
        for index, spec in enumerate(self.file.maintenance):
            path: DataPath = ("maintenance", index)
            ident = spec.id if spec.id is not None else str(index)
            if ident in ids:
                self.err((*path, "id"), f"duplicate maintenance id {ident!r}")
            ids.add(ident)
            if spec.service is None and spec.rule is None and not spec.labels:
                self.err(path, "needs a service, rule or labels (it would silence everything)")
            if spec.ends_at is None:
                self.err(path, "missing 'ends_at' (maintenance windows must expire)")
                continue
            if spec.starts_at is not None and spec.ends_at <= spec.starts_at:
                self.err((*path, "ends_at"), "must be after starts_at")
                continue
            windows.append(
                MaintenanceWindow(
                    id=ident,
                    matcher=Matcher(spec.service, spec.rule, dict(spec.labels)),
                    starts_at=spec.starts_at,
                    ends_at=spec.ends_at,
                    comment=spec.comment,
                )
            )
        return tuple(windows)

    def sla(self, targets: dict[str, float]) -> SlaPolicy:
        spec = self.file.sla
        if spec.burn_rates is None:
            rates: tuple[BurnRateWindow, ...] = DEFAULT_BURN_RATES
        else:
            every = [spec.target, *targets.values()]
            rates = tuple(self.burn_rates(spec.burn_rates, spec.window, every))
        return SlaPolicy(target=spec.target, window=spec.window, burn_rates=rates, targets=targets)

    def burn_rates(
        self, specs: list[BurnRateSpec], window: timedelta, targets: list[float]
    ) -> list[BurnRateWindow]:
        # The fastest possible burn (every call failing) is 1 / (1 - target): a factor
        # above it for every target can never fire, a silently disabled alert.
        fastest = max(1 / (1 - t) for t in targets)
        out = []
        names: set[str] = set()
        for index, rb in enumerate(specs):
            path: DataPath = ("sla", "burn_rates", index)
            name = rb.name if rb.name is not None else f"burn{index}"
            if name in names:
                self.err((*path, "name"), f"duplicate burn-rate name {name!r}")
            names.add(name)
            if rb.short > rb.long:
                self.err((*path, "short"), "short window must not be longer than the long one")
            elif rb.long > window:
                self.err((*path, "long"), "long window must not exceed the SLA window")
            elif rb.factor > fastest * (1 + 1e-9):
                self.err(
                    (*path, "factor"),
                    f"can never fire: with target {max(targets):g} the burn rate is at most "
                    f"{fastest:g} (every call failing)",
                )
            else:
                out.append(BurnRateWindow(name, rb.long, rb.short, rb.factor, rb.severity))
        return out


def _subdocument(doc: YamlDocument, prefix: DataPath, data: Any) -> YamlDocument:
    """The part of ``doc`` under ``prefix``, as a document of its own (for its lines)."""
    n = len(prefix)

    def under(lines: dict[DataPath, int]) -> dict[DataPath, int]:
        return {path[n:]: line for path, line in lines.items() if path[:n] == prefix}

    return YamlDocument(data, doc.source, under(doc.value_lines), under(doc.key_lines))


# --- entry points -----------------------------------------------------------------------


def resolve(file: AlertingFile, doc: YamlDocument, settings: Settings) -> AlertingConfig:
    """Check what ``file`` means and build the engine's configuration.

    Args:
        file: The validated shape of the file.
        doc: The parsed document (for lines in messages).
        settings: Source of the default thresholds.

    Raises:
        AlertConfigError: Every problem found (see the module docstring, pass 2).
    """
    return _Resolver(file, doc, settings).run()


def _load(
    read: Callable[[], YamlDocument],
    settings: Settings | None,
    known_services: Collection[str] | None,
) -> AlertingConfig:
    settings = settings or get_settings()
    services = set(load_catalog().names if known_services is None else known_services)
    try:
        doc = read()
        file = validate_document(AlertingFile, doc, context={"services": services}, empty={})
    except ConfigError as exc:
        # In file order: pydantic reports by model field, not by line.
        raise AlertConfigError(sorted(exc.problems, key=lambda p: p.line or 0)) from None
    return resolve(file, doc, settings)


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
        AlertConfigError: Unreadable, too large, invalid YAML, or invalid content (every
            problem, one per line, with file, line and field).
    """
    return _load(lambda: read_yaml(path), settings, known_services)


def parse_config(
    text: str | bytes,
    *,
    source: str = "<string>",
    settings: Settings | None = None,
    known_services: Collection[str] | None = None,
) -> AlertingConfig:
    """Validate alerting YAML given as text (see :func:`load_config`)."""
    return _load(lambda: parse_yaml(text, source=source), settings, known_services)


def load_settings_config(settings: Settings | None = None) -> AlertingConfig:
    """The configuration ``settings.alerting_file`` names, or the defaults without one.

    Raises:
        AlertConfigError: The file is invalid.
    """
    settings = settings or get_settings()
    if settings.alerting_file is None:
        return default_config(settings)
    return load_config(settings.alerting_file, settings=settings)
