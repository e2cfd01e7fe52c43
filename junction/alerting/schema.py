"""The alerting file's shape: pydantic models of every section, every value bounded.

:class:`AlertingFile` is validated by the one YAML loader
(:func:`integrations.yamlconfig.validate_document`) with the context
``{"services": <known service names>}``; what the values mean together (channel names in
routes, inherited thresholds, cycles...) is checked afterwards by
:func:`junction.alerting.config.resolve`. The format is described in
:mod:`junction.alerting.config` and ``alerting.example.yaml``.

Every number is finite and in range (``.inf``/``.nan`` are refused by
:class:`~integrations.yamlconfig.ConfigModel`, the bounds below by the value types):
a threshold that compares false with everything would silently disable its rule.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, model_validator

from integrations.yamlconfig import ConfigModel, did_you_mean
from junction.alerting.model import Severity
from junction.alerting.rules import MAX_DURATION, SILENCEABLE_RULES, parse_duration
from junction.alerting.rules import short_repr as _shown
from junction.alerting.sla import MAX_BURN_WINDOW

MAX_RESPONSE_TIME_MS = 3_600_000.0
"""Largest response-time threshold (one hour, in ms)."""

MAX_MIN_OBSERVATIONS = 1_000_000
"""Largest ``min_observations``."""

MAX_BURN_FACTOR = 1_000_000.0
"""Largest burn-rate factor accepted at all (the target bounds it further)."""


# --- value types ------------------------------------------------------------------------


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise ValueError("must be a finite number, got a number too large") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number (not .inf or .nan), got {value}")
    return number


def _bounded(high: float | None = None, *, positive: bool = False) -> BeforeValidator:
    """A non-negative (or positive) finite number, at most ``high``."""

    def check(value: object) -> float:
        number = _finite(value)
        if positive and number <= 0:
            raise ValueError(f"must be positive, got {_shown(value)}")
        if number < 0:
            raise ValueError(f"must not be negative, got {_shown(value)}")
        if high is not None and number > high:
            raise ValueError(f"must be <= {high:g}, got {_shown(value)}")
        return number

    return BeforeValidator(check)


def _target(value: object) -> float:
    number = _finite(value)
    if number >= 1:
        raise ValueError(
            f"must be below 1 (a 100% target leaves no error budget), got {_shown(value)}"
        )
    if number <= 0:
        raise ValueError(f"must be above 0, got {_shown(value)}")
    return number


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be an integer >= 1, got {_shown(value)}")
    if value > MAX_MIN_OBSERVATIONS:
        raise ValueError(f"must be <= {MAX_MIN_OBSERVATIONS}, got {_shown(value)}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_shown(value)}")
    return value


def _duration(*, positive: bool = False, maximum: timedelta = MAX_DURATION) -> BeforeValidator:
    def check(value: object) -> timedelta:
        delta = parse_duration(value, maximum=maximum)
        if positive and delta <= timedelta(0):
            raise ValueError("must be positive")
        return delta

    return BeforeValidator(check)


def _timestamp(value: object) -> datetime:
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    if parsed is None:
        raise ValueError(f"must be an ISO-8601 timestamp, got {_shown(value)}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _service(value: object, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a service name, got {_shown(value)}")
    services = (info.context or {}).get("services")
    if services is not None and value not in services:
        raise ValueError(f"unknown service {value!r}{did_you_mean(value, services)}")
    return value


def _rule(value: object) -> str:
    if value not in SILENCEABLE_RULES:
        raise ValueError(
            f"unknown rule {_shown(value)} (expected one of: {', '.join(SILENCEABLE_RULES)})"
        )
    return str(value)


def _channel_name(value: object) -> str:
    if not isinstance(value, str) or not _CHANNEL_NAME.match(value):
        raise ValueError("channel names may use letters, digits, '_', '.', '-'")
    return value


_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _scalar_text(value: object) -> str:
    if isinstance(value, dict | list) or value is None:
        raise ValueError("must be a scalar (text, number, true/false)")
    return str(value).lower() if isinstance(value, bool) else str(value)


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _mapping_with_type(value: object) -> object:
    if not isinstance(value, dict):
        raise ValueError("must be a mapping with a 'type'")
    return value


Rate = Annotated[float, _bounded(1.0)]
Score = Annotated[float, _bounded(100.0)]
Millis = Annotated[float, _bounded(MAX_RESPONSE_TIME_MS)]
Factor = Annotated[float, _bounded(MAX_BURN_FACTOR, positive=True)]
Target = Annotated[float, BeforeValidator(_target)]
Count = Annotated[int, BeforeValidator(_count)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Duration = Annotated[timedelta, _duration()]
PositiveDuration = Annotated[timedelta, _duration(positive=True)]
BurnWindow = Annotated[timedelta, _duration(positive=True, maximum=MAX_BURN_WINDOW)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
Service = Annotated[str, BeforeValidator(_service)]
ServiceList = Annotated[list[Service], BeforeValidator(_one_or_many)]
RuleName = Annotated[str, BeforeValidator(_rule)]
RuleList = Annotated[list[RuleName], BeforeValidator(_one_or_many)]
ChannelName = Annotated[str, BeforeValidator(_channel_name)]
NameList = Annotated[list[str], BeforeValidator(_one_or_many)]
Labels = dict[str, Annotated[str, BeforeValidator(_scalar_text)]]
Routes = dict[Severity, NameList]
ChannelSpec = Annotated[dict[str, Any], BeforeValidator(_mapping_with_type)]


# --- the file's shape -------------------------------------------------------------------


class _Section(ConfigModel):
    """A mapping that may be left empty in the file (``escalation:`` with nothing under)."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict | BaseModel):
            raise ValueError(f"must be a mapping, got {_shown(data)}")
        return data


class SwitchSpec(_Section):
    """A rule without thresholds (``down``, ``burn_rate``)."""

    enabled: Flag = True


class _ThresholdSpec(_Section):
    enabled: Flag = True


class SuccessRateSpec(_ThresholdSpec):
    """``success_rate``: alert when the share of successful calls drops below (0-1)."""

    warning: Rate | None = None
    critical: Rate | None = None


class ResponseTimeSpec(_ThresholdSpec):
    """``response_time``: alert when the p95 of successful calls rises above (ms)."""

    warning: Millis | None = None
    critical: Millis | None = None


class HealthScoreSpec(_ThresholdSpec):
    """``health_score``: alert when the 0-100 health score drops below."""

    warning: Score | None = None
    critical: Score | None = None


class RuleSpecs(_Section):
    """The rules of ``defaults:`` (and of each service)."""

    success_rate: SuccessRateSpec | None = None
    response_time: ResponseTimeSpec | None = None
    health_score: HealthScoreSpec | None = None
    burn_rate: SwitchSpec | None = None
    down: SwitchSpec | None = None


class ServiceSpec(RuleSpecs):
    """One entry of ``services:``: rule overrides, labels, SLA target, own routes."""

    labels: Labels = Field(default_factory=dict)
    sla_target: Target | None = None
    routes: Routes | None = None


class EscalationSpec(_Section):
    """``escalation:``."""

    after: PositiveDuration | None = None
    levels: list[NameList] = Field(default_factory=list)
    repeat_interval: PositiveDuration | None = None
    max_step: PositiveDuration = timedelta(minutes=5)


class GroupingSpec(_Section):
    """``grouping:``."""

    wait: Duration = timedelta(0)
    dependency_wait: Duration = timedelta(seconds=5)
    resolve_wait: Duration = timedelta(0)


class MaintenanceSpec(_Section):
    """One ``maintenance:`` window."""

    id: Annotated[str, BeforeValidator(_scalar_text)] | None = None
    service: Service | None = None
    rule: RuleName | None = None
    labels: Labels = Field(default_factory=dict)
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    comment: Annotated[str, BeforeValidator(_scalar_text)] = ""


class BurnRateSpec(ConfigModel):
    """One ``sla.burn_rates`` entry."""

    name: Annotated[str, BeforeValidator(_scalar_text)] | None = None
    long: BurnWindow
    short: BurnWindow
    factor: Factor
    severity: Severity


class SlaSpec(_Section):
    """``sla:``."""

    target: Target = 0.99
    window: PositiveDuration = timedelta(days=30)
    burn_rates: list[BurnRateSpec] | None = None


class InhibitSpec(ConfigModel):
    """One ``inhibit:`` entry (:mod:`junction.alerting.inhibition`)."""

    name: Annotated[str, BeforeValidator(_scalar_text)] | None = None
    source: RuleList
    target: RuleList
    equal: NameList = Field(default_factory=lambda: ["service"])


class AlertingFile(ConfigModel):
    """An alerting file as written (see the module docstring); :func:`resolve` checks its
    meaning and builds the :class:`AlertingConfig`."""

    version: int | str | None = None
    defaults: RuleSpecs = Field(default_factory=RuleSpecs)
    min_observations: Count = 1
    services: dict[Service, ServiceSpec] = Field(default_factory=dict)
    channels: dict[ChannelName, ChannelSpec] = Field(default_factory=dict)
    routes: Routes = Field(default_factory=dict)
    resolve_after: Duration = timedelta(0)
    escalation: EscalationSpec = Field(default_factory=EscalationSpec)
    grouping: GroupingSpec = Field(default_factory=GroupingSpec)
    dependencies: dict[Service, ServiceList] = Field(default_factory=dict)
    maintenance: list[MaintenanceSpec] = Field(default_factory=list)
    sla: SlaSpec = Field(default_factory=SlaSpec)
    inhibit: list[InhibitSpec] | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # `services:` with nothing under it means "none", as if the key were absent.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data
