"""Fault profiles: what may go wrong in the sandbox, as configuration.

A *profile* (``profiles/default.yaml``) holds a ``seed``, a ``services`` map of
per-service :class:`ServiceFaults` (``"*"`` applies to every service; a service's own
entry overrides it field by field) and an optional ``synthetic`` block for the
benchmark endpoints. Example::

    seed: 42
    services:
      "*": {latency_ms: {min: 20, max: 150}}
      okta:
        error_rate: 0.05            # 5xx with Okta's error body
        rate_limit: {requests_per_second: 10, burst: 20}
        outages: [{start: 30, end: 60, mode: "503"}]   # seconds after load
    synthetic: {count: 1000, latency_ms: {min: 20, max: 200}, seed: 1}

Files load through the one YAML loader (:mod:`integrations.yamlconfig`: size, alias and
depth limits; errors as ``file:line: field: problem``). Every number is finite and
bounded (an hour of latency, a day of hang, ten years of outage), so a profile cannot
ask for ``.inf`` or ``.nan``. The runtime that applies a profile is
:mod:`integrations.sandbox.faults`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from integrations.catalog import load_catalog
from integrations.yamlconfig import ConfigModel, did_you_mean, load_model

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
"""Where the packaged profiles (``default.yaml``, ``flaky.yaml``) live."""

DEFAULT_LOST_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_Z95 = 1.6448536269514722  # standard normal quantile of 0.95

MAX_LATENCY_MS = 3_600_000.0  # one hour
MAX_HANG_SECONDS = 86_400.0  # one day
MAX_SECONDS = 315_360_000.0  # ten years: outage offsets and lengths, token lifetimes
MAX_COUNT = 1_000_000_000
SEED = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class ProfileError(ValueError):
    """A fault profile or a fault update is invalid; the message names each bad field."""


# --- config models ----------------------------------------------------------------------


class UniformLatency(ConfigModel):
    """Latency drawn uniformly from ``[min, max]`` milliseconds."""

    model_config = ConfigDict(frozen=True)

    min: float = Field(ge=0, le=MAX_LATENCY_MS)
    max: float = Field(ge=0, le=MAX_LATENCY_MS)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class LognormalLatency(ConfigModel):
    """Log-normal latency with the given median and 95th percentile (ms), optionally capped."""

    model_config = ConfigDict(frozen=True)

    p50: float = Field(gt=0, le=MAX_LATENCY_MS)
    p95: float = Field(gt=0, le=MAX_LATENCY_MS)
    max: float | None = Field(None, gt=0, le=MAX_LATENCY_MS, description="Cap on one draw (ms).")

    @model_validator(mode="after")
    def _ordered(self) -> LognormalLatency:
        if self.p95 < self.p50:
            raise ValueError(f"p95 ({self.p95}) must be >= p50 ({self.p50})")
        return self


def _latency_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return "fixed"
    if isinstance(value, UniformLatency):
        return "uniform"
    if isinstance(value, LognormalLatency):
        return "lognormal"
    if isinstance(value, Mapping):
        return "lognormal" if ("p50" in value or "p95" in value) else "uniform"
    return None


Latency = Annotated[
    Annotated[float, Tag("fixed"), Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)]
    | Annotated[UniformLatency, Tag("uniform")]
    | Annotated[LognormalLatency, Tag("lognormal")],
    Discriminator(
        _latency_kind,
        custom_error_type="latency",
        custom_error_message="must be a number of ms, {min, max} or {p50, p95}",
    ),
]
"""A latency: fixed ms, ``{min, max}`` uniform, or ``{p50, p95}`` log-normal."""

Rate = Annotated[float, Field(ge=0, le=1)]


def _moment_kind(value: Any) -> str:
    if isinstance(value, bool | datetime):
        return "at"
    if isinstance(value, int | float):
        return "seconds"
    try:  # YAML 1.1 reads `1e3` (no dot) as text: still a number of seconds
        float(value)
    except (TypeError, ValueError):
        return "at"
    return "seconds"


Moment = Annotated[
    Annotated[float, Tag("seconds"), Field(ge=0, le=MAX_SECONDS)] | Annotated[datetime, Tag("at")],
    Discriminator(_moment_kind),
]
"""Seconds after the profile was loaded, or an ISO-8601 timestamp (naive = UTC)."""


def sample_latency_ms(
    spec: float | UniformLatency | LognormalLatency | None, rng: random.Random
) -> float:
    """Draw one latency in milliseconds from ``spec`` (``None`` = 0)."""
    if spec is None:
        return 0.0
    if isinstance(spec, UniformLatency):
        return rng.uniform(spec.min, spec.max)
    if isinstance(spec, LognormalLatency):
        sigma = (math.log(spec.p95) - math.log(spec.p50)) / _Z95
        value = rng.lognormvariate(math.log(spec.p50), sigma)
        return min(value, spec.max) if spec.max is not None else value
    return float(spec)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class OutageWindow(ConfigModel):
    """A window during which the service is down.

    ``start``/``end`` are seconds relative to when the profile (or the fault update) was
    loaded, or absolute ISO-8601 timestamps (naive ones are UTC); ``end`` omitted means
    "until cleared". ``mode``: ``"503"`` (vendor-shaped 503), ``"hang"`` (no answer) or
    ``"reset"`` (connection dropped mid-response).
    """

    model_config = ConfigDict(frozen=True)

    start: Moment = 0.0
    end: Moment | None = None
    mode: Literal["503", "hang", "reset"] = "503"

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @model_validator(mode="after")
    def _ordered(self) -> OutageWindow:
        if isinstance(self.start, datetime) != isinstance(self.end, datetime) and (
            self.end is not None
        ):
            raise ValueError("start and end must both be seconds or both be timestamps")
        if self.end is not None:
            if isinstance(self.start, datetime) and isinstance(self.end, datetime):
                later = _as_utc(self.end) > _as_utc(self.start)
            else:
                later = float(self.end) > float(self.start)  # type: ignore[arg-type]
            if not later:
                raise ValueError("end must be after start")
        return self

    def absolute(self, t0: float) -> tuple[float, float]:
        """The window as wall-clock ``(start, end)`` epoch seconds, ``t0`` = load time."""

        def at(value: float | datetime | None, default: float) -> float:
            if value is None:
                return default
            if isinstance(value, datetime):
                return _as_utc(value).timestamp()
            return t0 + float(value)

        return at(self.start, t0), at(self.end, math.inf)


class RateLimitSpec(ConfigModel):
    """A hidden rate limit; the models are :mod:`integrations.sandbox.ratelimit`'s.

    ``token_bucket`` (default): ``requests_per_second`` refill, ``burst`` capacity, a
    rejected request costs nothing. ``sliding_log``: at most ``requests_per_second x
    window_seconds`` requests in any ``window_seconds``, rejected ones included.
    ``penalty_after`` 429s within ``window_seconds`` put the service in a penalty box.
    """

    model_config = ConfigDict(frozen=True)

    requests_per_second: float = Field(gt=0, le=1_000_000)
    burst: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="Bucket size; default ceil(rate)."
    )
    mode: Literal["token_bucket", "sliding_log"] = "token_bucket"
    window_seconds: float = Field(
        1.0, gt=0, le=MAX_HANG_SECONDS, description="Sliding log and penalty window."
    )
    penalty_after: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="429s in one window that open a penalty box."
    )
    penalty_seconds: float = Field(1.0, gt=0, le=MAX_HANG_SECONDS, description="First box.")
    penalty_max_seconds: float = Field(
        60.0, gt=0, le=MAX_HANG_SECONDS, description="Longest box (each doubles)."
    )

    @property
    def capacity(self) -> int:
        """The bucket size."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.requests_per_second))


class ServiceFaults(ConfigModel):
    """Faults of one service. Every field is optional; unset fields inherit ``"*"``.

    Per request, in this order: an active outage window wins; then the token bucket
    (429); then ``error_next``; then one random draw picks at most one of ``burst_429``,
    ``hang_rate``, ``reset_rate``, ``error_rate``, ``malformed_rate`` (so their sum must
    be <= 1 and each is exactly its own probability). ``latency_ms`` delays every answer
    that is not a hang. ``lost_after_commit`` is drawn after the handler ran (and
    committed) for ``lost_methods``.
    """

    latency_ms: Latency | None = None
    error_rate: Rate = 0.0
    error_status: int | list[int] = Field(503, description="5xx status(es) of injected errors.")
    error_retry_after_seconds: int | None = Field(
        None, ge=0, le=int(MAX_HANG_SECONDS), description="Send Retry-After with injected 5xx."
    )
    error_next: int = Field(0, ge=0, le=MAX_COUNT, description="The next N requests get an error.")
    rate_limit: RateLimitSpec | None = None
    capacity: int | None = Field(
        None,
        ge=1,
        le=MAX_COUNT,
        description="Requests served at once at latency_ms; past it the service queues.",
    )
    contention: float = Field(
        1.0, ge=1, le=4, description="Past capacity: latency x (in flight / capacity) ** this."
    )
    burst_429: Rate = 0.0
    retry_after_seconds: int = Field(
        1, ge=0, le=int(MAX_HANG_SECONDS), description="Retry-After of burst_429 answers."
    )
    hang_rate: Rate = 0.0
    hang_seconds: float = Field(3600.0, gt=0, le=MAX_HANG_SECONDS)
    reset_rate: Rate = 0.0
    malformed_rate: Rate = 0.0
    malformed: Literal["json", "html"] = "json"
    malformed_status: int = Field(200, description="Status of malformed answers (200 or 5xx).")
    outages: list[OutageWindow] = Field(default_factory=list, max_length=1000)
    lost_after_commit: Rate = 0.0
    lost_mode: Literal["reset", "504"] = "504"
    lost_methods: list[str] = Field(default_factory=lambda: list(DEFAULT_LOST_METHODS))
    token_ttl_seconds: float = Field(3600.0, gt=0, le=MAX_SECONDS)
    include_token_endpoint: bool = False

    @field_validator("lost_mode", mode="before")
    @classmethod
    def _lost_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("lost_methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @field_validator("error_status")
    @classmethod
    def _five_hundreds(cls, value: int | list[int]) -> int | list[int]:
        codes = value if isinstance(value, list) else [value]
        if not codes:
            raise ValueError("needs at least one status")
        bad = [c for c in codes if not 500 <= c <= 599]
        if bad:
            raise ValueError(f"must be 5xx statuses, got {bad}")
        return value

    @field_validator("malformed_status")
    @classmethod
    def _malformed_status(cls, value: int) -> int:
        if value != 200 and not 500 <= value <= 599:
            raise ValueError("must be 200 or a 5xx status")
        return value

    @model_validator(mode="after")
    def _rates_fit(self) -> ServiceFaults:
        total = self.random_rate
        if total > 1.0 + 1e-9:
            raise ValueError(
                "burst_429 + hang_rate + reset_rate + error_rate + malformed_rate must be "
                f"<= 1 (one draw picks at most one fault), got {total:g}"
            )
        return self

    @property
    def statuses(self) -> list[int]:
        """``error_status`` as a list."""
        return self.error_status if isinstance(self.error_status, list) else [self.error_status]

    @property
    def random_rate(self) -> float:
        """Probability that the per-request draw injects a fault."""
        return (
            self.burst_429
            + self.hang_rate
            + self.reset_rate
            + self.error_rate
            + self.malformed_rate
        )

    @property
    def active(self) -> bool:
        """Whether any fault (or latency) can touch a request."""
        return bool(
            self.latency_ms
            or self.random_rate
            or self.rate_limit
            or self.outages
            or self.lost_after_commit
            or self.error_next
        )


class SyntheticConfig(ConfigModel):
    """Benchmark endpoints ``GET /_synthetic/{i}/health`` for ``i`` in ``[0, count)``.

    Each endpoint's latency (and whether it fails, with ``error_rate``) is drawn once from
    ``seed``, so endpoint ``i`` behaves the same on every request and every run.
    """

    count: int = Field(0, ge=0, le=1_000_000)
    latency_ms: Latency = 0.0
    seed: SEED = 0
    error_rate: Rate = Field(0.0, description="Share of endpoints that answer 503.")


def check_service_name(name: str) -> str:
    """Return ``name`` if it is ``"*"`` or a catalog name, else raise :class:`ProfileError`."""
    names = load_catalog().names
    if name == "*" or name in names:
        return name
    hint = did_you_mean(name, names, n=3)
    raise ProfileError(f"unknown service {name!r}{hint}; use '*' or a catalog name")


def _service_name(name: str) -> str:
    try:
        return check_service_name(name)
    except ProfileError as exc:
        raise ValueError(str(exc)) from None


ServiceName = Annotated[str, AfterValidator(_service_name)]
"""``"*"`` or a catalog name (checked key by key, so every bad one is reported)."""


def merge_faults(*layers: ServiceFaults | None) -> ServiceFaults:
    """Merge entries field by field: later layers' *explicitly set* fields win."""
    data: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            data.update(layer.model_dump(exclude_unset=True))
    return ServiceFaults.model_validate(data)


class FaultProfile(ConfigModel):
    """A whole fault profile (see the module docstring for the YAML shape)."""

    name: str | None = None
    description: str | None = None
    seed: SEED = 0
    services: dict[ServiceName, ServiceFaults] = Field(default_factory=dict)
    synthetic: SyntheticConfig | None = None

    @field_validator("services", mode="before")
    @classmethod
    def _empty_entries(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            # `okta:` with nothing under it means "no faults", not an error.
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("services", mode="after")
    @classmethod
    def _merges_valid(cls, value: dict[str, ServiceFaults]) -> dict[str, ServiceFaults]:
        base = value.get("*")
        for name, entry in value.items():
            if name != "*" and base is not None:
                try:
                    merge_faults(base, entry)
                except ValidationError as exc:
                    raise ValueError(f"{name} merged with '*': {describe_errors(exc)}") from None
        return value

    def for_service(self, service: str) -> ServiceFaults:
        """The effective faults of ``service``: ``"*"`` overridden by its own entry."""
        return merge_faults(self.services.get("*"), self.services.get(service))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "profile") -> FaultProfile:
        """Validate a profile from parsed JSON (the admin API's ``POST /_admin/profile``).

        Raises:
            ProfileError: Naming the source and every bad field (``services.okta.error_rate``).
        """
        try:
            return cls.model_validate({} if data is None else data)
        except ValidationError as exc:
            raise ProfileError(f"invalid fault profile {source}: {describe_errors(exc)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, *, text: str | bytes | None = None) -> FaultProfile:
        """Load a profile from a YAML file (or ``text`` named ``path``); empty = no faults.

        Raises:
            integrations.yamlconfig.ConfigError: Unreadable, too big, invalid YAML or
                invalid fields, each problem as ``file:line: field: problem``.
        """
        return load_model(cls, path, text=text, empty={})

    @classmethod
    def packaged(cls, name: str) -> FaultProfile:
        """A profile shipped in ``integrations/sandbox/profiles`` (``default``, ``flaky``)."""
        return cls.from_yaml(PROFILES_DIR / f"{name}.yaml")


def load_profile(faults_file: str | Path | None) -> tuple[FaultProfile, str]:
    """A fault profile from a YAML path or a packaged name (``flaky``); default ``default``.

    Returns:
        The profile and where it came from (for messages).

    Raises:
        integrations.yamlconfig.ConfigError: The file is missing or invalid.
    """
    if faults_file is None:
        path = PROFILES_DIR / "default.yaml"
    else:
        path = Path(faults_file)
        packaged = PROFILES_DIR / f"{faults_file}.yaml"
        if not path.exists() and packaged.exists():
            path = packaged
    return FaultProfile.from_yaml(path), str(path)


def describe_errors(exc: ValidationError) -> str:
    """``field: problem; field: problem`` for a validation error of JSON input."""
    lines = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "finite_number":
            msg = "must be a finite number"
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def validate_fields(fields: Mapping[str, Any], *, where: str) -> ServiceFaults:
    """Validate a partial fault entry (the body of ``POST /_admin/faults/<service>``).

    Raises:
        ProfileError: Naming each bad field.
    """
    try:
        return ServiceFaults.model_validate(dict(fields))
    except ValidationError as exc:
        raise ProfileError(f"invalid faults for {where}: {describe_errors(exc)}") from None


class OutageRequest(ConfigModel):
    """The body of ``POST /_admin/outage/<service>``."""

    seconds: float = Field(30.0, gt=0, le=MAX_SECONDS)
    mode: Literal["503", "hang", "reset"] = "503"

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @classmethod
    def from_json(cls, data: Any) -> OutageRequest:
        """Validate a parsed body; raises :class:`ProfileError` naming each bad field."""
        try:
            return cls.model_validate({} if data is None else data)
        except ValidationError as exc:
            raise ProfileError(f"invalid outage: {describe_errors(exc)}") from None
