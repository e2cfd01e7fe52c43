"""Fault injection for the sandbox: the config models, the YAML profile loader, and the
runtime controller that decides, request by request, what goes wrong.

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

Randomness is reproducible: each service has its own ``random.Random`` seeded from the
profile seed and the service name, so the same request sequence meets the same faults.
"""

from __future__ import annotations

import difflib
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
"""Where the packaged profiles (``default.yaml``, ``flaky.yaml``) live."""

DEFAULT_LOST_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_Z95 = 1.6448536269514722  # standard normal quantile of 0.95


class ProfileError(ValueError):
    """A fault profile or a fault update is invalid; the message names each bad field."""


# --- config models ----------------------------------------------------------------------


class UniformLatency(BaseModel):
    """Latency drawn uniformly from ``[min, max]`` milliseconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float = Field(ge=0)
    max: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class LognormalLatency(BaseModel):
    """Log-normal latency with the given median and 95th percentile (ms), optionally capped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p50: float = Field(gt=0)
    p95: float = Field(gt=0)
    max: float | None = Field(None, gt=0, description="Cap on one draw (ms).")

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
    Annotated[float, Tag("fixed"), Field(ge=0)]
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


class OutageWindow(BaseModel):
    """A window during which the service is down.

    ``start``/``end`` are seconds relative to when the profile (or the fault update) was
    loaded, or absolute ISO-8601 timestamps (naive ones are UTC); ``end`` omitted means
    "until cleared". ``mode``: ``"503"`` (vendor-shaped 503), ``"hang"`` (no answer) or
    ``"reset"`` (connection dropped mid-response).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float | datetime = 0.0
    end: float | datetime | None = None
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
        if isinstance(self.start, float) and self.start < 0:
            raise ValueError("start must be >= 0 seconds")
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


class RateLimitSpec(BaseModel):
    """A token bucket: ``requests_per_second`` refill, ``burst`` capacity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_second: float = Field(gt=0)
    burst: int | None = Field(None, ge=1, description="Bucket size; default ceil(rate).")

    @property
    def capacity(self) -> int:
        """The bucket size."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.requests_per_second))


class ServiceFaults(BaseModel):
    """Faults of one service. Every field is optional; unset fields inherit ``"*"``.

    Per request, in this order: an active outage window wins; then the token bucket
    (429); then ``error_next``; then one random draw picks at most one of ``burst_429``,
    ``hang_rate``, ``reset_rate``, ``error_rate``, ``malformed_rate`` (so their sum must
    be <= 1 and each is exactly its own probability). ``latency_ms`` delays every answer
    that is not a hang. ``lost_after_commit`` is drawn after the handler ran (and
    committed) for ``lost_methods``.
    """

    model_config = ConfigDict(extra="forbid")

    latency_ms: Latency | None = None
    error_rate: Rate = 0.0
    error_status: int | list[int] = Field(503, description="5xx status(es) of injected errors.")
    error_retry_after_seconds: int | None = Field(
        None, ge=0, description="Send Retry-After with injected 5xx errors."
    )
    error_next: int = Field(0, ge=0, description="The next N requests get an error.")
    rate_limit: RateLimitSpec | None = None
    burst_429: Rate = 0.0
    retry_after_seconds: int = Field(1, ge=0, description="Retry-After of burst_429 answers.")
    hang_rate: Rate = 0.0
    hang_seconds: float = Field(3600.0, gt=0)
    reset_rate: Rate = 0.0
    malformed_rate: Rate = 0.0
    malformed: Literal["json", "html"] = "json"
    malformed_status: int = Field(200, description="Status of malformed answers (200 or 5xx).")
    outages: list[OutageWindow] = Field(default_factory=list)
    lost_after_commit: Rate = 0.0
    lost_mode: Literal["reset", "504"] = "504"
    lost_methods: list[str] = Field(default_factory=lambda: list(DEFAULT_LOST_METHODS))
    token_ttl_seconds: float = Field(3600.0, gt=0)
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
        total = (
            self.burst_429
            + self.hang_rate
            + self.reset_rate
            + self.error_rate
            + self.malformed_rate
        )
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


class SyntheticConfig(BaseModel):
    """Benchmark endpoints ``GET /_synthetic/{i}/health`` for ``i`` in ``[0, count)``.

    Each endpoint's latency (and whether it fails, with ``error_rate``) is drawn once from
    ``seed``, so endpoint ``i`` behaves the same on every request and every run.
    """

    model_config = ConfigDict(extra="forbid")

    count: int = Field(0, ge=0, le=1_000_000)
    latency_ms: Latency = 0.0
    seed: int = 0
    error_rate: Rate = Field(0.0, description="Share of endpoints that answer 503.")


def _catalog_names() -> list[str]:
    from integrations.catalog import load_catalog

    return load_catalog().names


def check_service_name(name: str) -> str:
    """Return ``name`` if it is ``"*"`` or a catalog name, else raise :class:`ProfileError`."""
    names = _catalog_names()
    if name == "*" or name in names:
        return name
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ProfileError(f"unknown service {name!r}{hint}; use '*' or a catalog name")


def merge_faults(*layers: ServiceFaults | None) -> ServiceFaults:
    """Merge entries field by field: later layers' *explicitly set* fields win."""
    data: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            data.update(layer.model_dump(exclude_unset=True))
    return ServiceFaults.model_validate(data)


class FaultProfile(BaseModel):
    """A whole fault profile (see the module docstring for the YAML shape)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    seed: int = 0
    services: dict[str, ServiceFaults] = Field(default_factory=dict)
    synthetic: SyntheticConfig | None = None

    @field_validator("services", mode="before")
    @classmethod
    def _known_services(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for name in value:
                try:
                    check_service_name(str(name))
                except ProfileError as exc:
                    raise ValueError(str(exc)) from None
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
                    raise ValueError(f"{name} merged with '*': {_describe(exc, '')}") from None
        return value

    def for_service(self, service: str) -> ServiceFaults:
        """The effective faults of ``service``: ``"*"`` overridden by its own entry."""
        return merge_faults(self.services.get("*"), self.services.get(service))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "profile") -> FaultProfile:
        """Validate a profile from parsed YAML/JSON.

        Raises:
            ProfileError: Naming the source and every bad field (``services.okta.error_rate``).
        """
        if data is None:
            data = {}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ProfileError(_describe(exc, f"invalid fault profile {source}")) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> FaultProfile:
        """Load a profile from a YAML file.

        Raises:
            ProfileError: Unreadable file, bad YAML, or invalid fields (each named).
        """
        path = Path(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ProfileError(f"cannot read fault profile {path}: {exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProfileError(f"fault profile {path} is not valid YAML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def packaged(cls, name: str) -> FaultProfile:
        """A profile shipped in ``integrations/sandbox/profiles`` (``default``, ``flaky``)."""
        return cls.from_yaml(PROFILES_DIR / f"{name}.yaml")


def _describe(exc: ValidationError, title: str) -> str:
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"{loc}: {msg}" if loc else msg)
    body = "; ".join(lines)
    return f"{title}: {body}" if title else body


def validate_fields(fields: Mapping[str, Any], *, where: str) -> ServiceFaults:
    """Validate a partial fault entry (the body of ``POST /_admin/faults/<service>``).

    Raises:
        ProfileError: Naming each bad field.
    """
    try:
        return ServiceFaults.model_validate(dict(fields))
    except ValidationError as exc:
        raise ProfileError(_describe(exc, f"invalid faults for {where}")) from None


# --- runtime ------------------------------------------------------------------------------


class TokenBucket:
    """A token bucket (``rate`` tokens/s, ``capacity`` tokens), monotonic clock."""

    def __init__(self, rate: float, capacity: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = float(capacity)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self) -> float:
        """Take one token: 0.0 if granted, else the seconds until one is available."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def remaining(self) -> int:
        """Whole tokens left."""
        self._refill()
        return int(self._tokens)

    def full_in(self) -> float:
        """Seconds until the bucket is full again."""
        self._refill()
        return (self.capacity - self._tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Fault:
    """What the app must do instead of (or besides) answering normally.

    Attributes:
        kind: Recorded in the request log: ``outage``, ``rate_limit``, ``burst_429``,
            ``hang``, ``reset``, ``error``, ``malformed``, ``lost_after_commit``.
        action: ``status`` (answer ``status``), ``hang``, ``reset``, ``malformed``.
    """

    kind: str
    action: str
    status: int = 503
    retry_after: int | None = None
    hang_seconds: float = 0.0
    malformed: str = "json"


@dataclass
class _Runtime:
    faults: ServiceFaults
    bucket: TokenBucket | None
    outages: list[tuple[float, float, str]]
    window_start: float = 0.0
    window_count: int = 0


@dataclass
class RateLimitState:
    """What the rate-limit headers say: limit, remaining, seconds to reset, used."""

    limit: int
    remaining: int
    reset_in: float
    used: int


_DEFAULTS = ServiceFaults().model_dump(mode="json")
NOMINAL_LIMIT = 5000  # advertised per minute when no bucket is configured; never exhausted
_WINDOW = 60.0


@dataclass
class SyntheticTable:
    """Per-endpoint latency (seconds) and failure flags, drawn once from the config."""

    config: SyntheticConfig | None
    delays: list[float] = field(default_factory=list)
    failing: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        cfg = self.config
        if cfg is None or cfg.count == 0:
            return
        rng = random.Random(cfg.seed)
        self.delays = [sample_latency_ms(cfg.latency_ms, rng) / 1000.0 for _ in range(cfg.count)]
        if cfg.error_rate:
            self.failing = bytearray(rng.random() < cfg.error_rate for _ in range(cfg.count))

    @property
    def count(self) -> int:
        """Number of endpoints."""
        return len(self.delays)


class FaultController:
    """The live fault configuration of a running sandbox, and the per-request decisions.

    Mutations (:meth:`update`, :meth:`clear`, :meth:`start_outage`, :meth:`load`) may come
    from any thread (the admin API, or a test holding ``SandboxServer.faults``);
    decisions run on the server's event loop.

    Args:
        profile: The initial profile (default: no faults).
        clock: Monotonic clock (token buckets).
        wall: Wall clock (outage windows, which may be absolute timestamps).
    """

    def __init__(
        self,
        profile: FaultProfile | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._lock = threading.RLock()
        self.load(profile or FaultProfile())

    # -- configuration

    def load(self, profile: FaultProfile) -> None:
        """Replace everything with ``profile``; relative outage windows start now."""
        with self._lock:
            now = self._wall()
            self.profile = profile
            self.loaded_at = now
            self._entries: dict[str, ServiceFaults] = dict(profile.services)
            self._t0: dict[str, float] = dict.fromkeys(profile.services, now)
            self._runtime: dict[str, _Runtime] = {}
            self._rngs: dict[str, random.Random] = {}
            self._buckets: dict[str, TokenBucket] = {}
            self._admin_outages: dict[str, tuple[float, float, str]] = {}
            self._cleared_at: dict[str, float] = {}
            self._error_next: dict[str, int] = {}
            for name in _catalog_names():
                left = self.effective(name).error_next
                if left:
                    self._error_next[name] = left
            self.synthetic = SyntheticTable(profile.synthetic)

    def set_synthetic(self, config: SyntheticConfig | None) -> None:
        """Replace the synthetic endpoints' table."""
        self.synthetic = SyntheticTable(config)

    def entry(self, service: str) -> ServiceFaults | None:
        """The entry configured for ``service`` (or ``"*"``), without inheritance."""
        return self._entries.get(service)

    def entries(self) -> dict[str, ServiceFaults]:
        """Every configured entry, by service."""
        with self._lock:
            return dict(self._entries)

    def effective(self, service: str) -> ServiceFaults:
        """The faults that apply to ``service`` (``"*"`` merged under its own entry)."""
        rt = self._runtime.get(service)
        if rt is not None:
            return rt.faults
        return merge_faults(self._entries.get("*"), self._entries.get(service))

    def update(self, service: str, fields: Mapping[str, Any]) -> ServiceFaults:
        """Merge ``fields`` into ``service``'s entry (``"*"`` = every service).

        Relative outage windows in ``fields`` count from now. ``error_next`` restarts
        its countdown.

        Raises:
            ProfileError: Unknown service or invalid field (named).
        """
        check_service_name(service)
        with self._lock:
            old = self._entries.get(service)
            merged = dict(old.model_dump(exclude_unset=True)) if old else {}
            merged.update(fields)
            new = validate_fields(merged, where=service)
            targets = _catalog_names() if service == "*" else [service]
            base = new if service == "*" else self._entries.get("*")
            for name in targets:
                own = None if name == "*" else (new if name == service else self._entries.get(name))
                try:
                    merge_faults(base, own)
                except ValidationError as exc:
                    raise ProfileError(
                        f"invalid faults for {name} (merged with '*'): {_describe(exc, '')}"
                    ) from None
            self._entries[service] = new
            if "outages" in fields:
                self._t0[service] = self._wall()
            else:
                self._t0.setdefault(service, self._wall())
            if "error_next" in fields:
                for name in targets:
                    self._error_next[name] = new.error_next
            self._invalidate(service)
            return new

    def set(self, service: str, **fields: Any) -> ServiceFaults:
        """Keyword form of :meth:`update`: ``faults.set("okta", error_rate=1.0)``."""
        return self.update(service, fields)

    def clear(self, service: str | None = None) -> None:
        """Remove ``service``'s entry and outages (``None`` = every service and ``"*"``)."""
        with self._lock:
            if service is None:
                self._entries.clear()
                self._admin_outages.clear()
                self._error_next.clear()
                self._runtime.clear()
                self.profile = FaultProfile(
                    seed=self.profile.seed, synthetic=self.profile.synthetic
                )
                return
            self._entries.pop(service, None)
            self._admin_outages.pop(service, None)
            if service == "*":
                self._error_next.clear()
            else:
                self._error_next.pop(service, None)
            self._invalidate(service)

    def start_outage(self, service: str, seconds: float, mode: str = "503") -> None:
        """Take ``service`` (or ``"*"``) down from now for ``seconds``."""
        check_service_name(service)
        mode = str(mode)
        if mode not in ("503", "hang", "reset"):
            raise ProfileError(f"outage mode must be 503, hang or reset, got {mode!r}")
        if seconds <= 0:
            raise ProfileError("outage seconds must be > 0")
        now = self._wall()
        with self._lock:
            self._admin_outages[service] = (now, now + seconds, mode)

    def end_outage(self, service: str) -> None:
        """End ``service``'s admin outage and any of its configured windows active now."""
        with self._lock:
            if service == "*":
                self._admin_outages.clear()
            else:
                self._admin_outages.pop(service, None)
            self._cleared_at[service] = self._wall()

    def reset(self, *, keep_faults: bool = False) -> None:
        """Reseed randomness and refill buckets; also drop every fault unless ``keep_faults``."""
        with self._lock:
            if not keep_faults:
                self.clear()
                self._cleared_at.clear()
            self._rngs.clear()
            self._buckets.clear()
            self._runtime.clear()

    def _invalidate(self, service: str) -> None:
        if service == "*":
            self._runtime.clear()
        else:
            self._runtime.pop(service, None)

    # -- per-request decisions (event loop thread)

    def rng(self, service: str) -> random.Random:
        """The service's own seeded random source."""
        rng = self._rngs.get(service)
        if rng is None:
            rng = self._rngs[service] = random.Random(f"{self.profile.seed}:{service}")
        return rng

    def _rt(self, service: str) -> _Runtime:
        rt = self._runtime.get(service)
        if rt is None:
            with self._lock:
                faults = merge_faults(self._entries.get("*"), self._entries.get(service))
                bucket = None
                if faults.rate_limit is not None:
                    # Keep the bucket (and its drained tokens) across unrelated updates.
                    spec = faults.rate_limit
                    bucket = self._buckets.get(service)
                    if bucket is None or (bucket.rate, bucket.capacity) != (
                        spec.requests_per_second,
                        spec.capacity,
                    ):
                        bucket = TokenBucket(spec.requests_per_second, spec.capacity, self._clock)
                        self._buckets[service] = bucket
                outages: list[tuple[float, float, str]] = []
                own = self._entries.get(service)
                source = service if own is not None and "outages" in own.model_fields_set else "*"
                t0 = self._t0.get(source, self.loaded_at)
                for window in faults.outages:
                    start, end = window.absolute(t0)
                    outages.append((start, end, window.mode))
                rt = _Runtime(faults, bucket, outages, self._clock())
                self._runtime[service] = rt
        return rt

    def outage_mode(self, service: str) -> str | None:
        """The mode of the outage ``service`` is in right now, or ``None``."""
        rt = self._rt(service)
        if not rt.outages and not self._admin_outages:
            return None
        now = self._wall()
        for key in (service, "*"):
            admin = self._admin_outages.get(key)
            if admin is not None and admin[0] <= now < admin[1]:
                return admin[2]
        cleared = max(self._cleared_at.get(service, -1.0), self._cleared_at.get("*", -1.0))
        for start, end, mode in rt.outages:
            if start <= now < end and not start <= cleared < end:
                return mode
        return None

    def before(self, service: str) -> tuple[float, Fault | None]:
        """Decide a request's fate before its handler runs.

        Returns:
            ``(latency_seconds, fault)``; ``fault`` is ``None`` for a normal answer.
        """
        rt = self._rt(service)
        faults = rt.faults
        now = self._clock()
        if now - rt.window_start >= _WINDOW:
            rt.window_start, rt.window_count = now, 0
        rt.window_count += 1
        if not faults.active and not self._admin_outages:
            return 0.0, None
        mode = self.outage_mode(service)
        if mode is not None:
            if mode == "hang":
                return 0.0, Fault("outage", "hang", hang_seconds=faults.hang_seconds)
            if mode == "reset":
                return 0.0, Fault("outage", "reset")
            return 0.0, Fault("outage", "status", status=503)
        rng = self.rng(service)
        latency = sample_latency_ms(faults.latency_ms, rng) / 1000.0 if faults.latency_ms else 0.0
        if rt.bucket is not None:
            wait = rt.bucket.take()
            if wait > 0:
                return latency, Fault(
                    "rate_limit", "status", status=429, retry_after=max(1, math.ceil(wait))
                )
        left = self._error_next.get(service, 0)
        if left > 0:
            self._error_next[service] = left - 1
            return latency, Fault(
                "error",
                "status",
                status=rng.choice(faults.statuses),
                retry_after=faults.error_retry_after_seconds,
            )
        total = faults.random_rate
        if total:
            u = rng.random()
            if u < total:
                u -= faults.burst_429
                if u < 0:
                    return latency, Fault(
                        "burst_429", "status", status=429, retry_after=faults.retry_after_seconds
                    )
                u -= faults.hang_rate
                if u < 0:
                    return 0.0, Fault("hang", "hang", hang_seconds=faults.hang_seconds)
                u -= faults.reset_rate
                if u < 0:
                    return latency, Fault("reset", "reset")
                u -= faults.error_rate
                if u < 0:
                    return latency, Fault(
                        "error",
                        "status",
                        status=rng.choice(faults.statuses),
                        retry_after=faults.error_retry_after_seconds,
                    )
                return latency, Fault(
                    "malformed",
                    "malformed",
                    status=faults.malformed_status,
                    malformed=faults.malformed,
                )
        return latency, None

    def after(self, service: str, method: str, status: int) -> Fault | None:
        """Decide whether a committed 2xx answer is lost on the way back to the client."""
        faults = self._rt(service).faults
        if not faults.lost_after_commit or status >= 300 or method not in faults.lost_methods:
            return None
        if self.rng(service).random() >= faults.lost_after_commit:
            return None
        if faults.lost_mode == "reset":
            return Fault("lost_after_commit", "reset")
        return Fault("lost_after_commit", "status", status=504)

    def rate_limit_state(self, service: str) -> RateLimitState:
        """The values for the rate-limit headers of ``service``'s next answer."""
        rt = self._rt(service)
        if rt.bucket is not None:
            remaining = rt.bucket.remaining()
            return RateLimitState(
                rt.bucket.capacity, remaining, rt.bucket.full_in(), rt.bucket.capacity - remaining
            )
        used = rt.window_count
        reset_in = max(0.0, _WINDOW - (self._clock() - rt.window_start))
        return RateLimitState(NOMINAL_LIMIT, max(1, NOMINAL_LIMIT - used), reset_in, used)

    def describe(self, service: str) -> dict[str, Any]:
        """What ``GET /_admin/faults/<service>`` shows."""
        entry = self._entries.get(service)
        out: dict[str, Any] = {
            "service": service,
            "faults": entry.model_dump(mode="json", exclude_unset=True) if entry else {},
        }
        if service != "*":
            full = self.effective(service).model_dump(mode="json")
            out["effective"] = {k: v for k, v in full.items() if v != _DEFAULTS.get(k)}
            out["outage"] = self.outage_mode(service)
            out["error_next_left"] = self._error_next.get(service, 0)
        admin = self._admin_outages.get(service)
        if admin is not None:
            out["admin_outage"] = {
                "until": datetime.fromtimestamp(admin[1], UTC).isoformat(),
                "mode": admin[2],
            }
        return out
