"""Fault injection at run time: the controller that decides, request by request, what
goes wrong in the sandbox, from a fault profile (:mod:`integrations.sandbox.profile`).

Randomness is reproducible: each service has its own ``random.Random`` seeded from the
profile seed and the service name, so the same request sequence meets the same faults.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from integrations.catalog import load_catalog
from integrations.sandbox.profile import (
    MAX_SECONDS,
    FaultProfile,
    ProfileError,
    RateLimitSpec,
    ServiceFaults,
    SyntheticConfig,
    check_service_name,
    describe_errors,
    merge_faults,
    sample_latency_ms,
    validate_fields,
)
from integrations.sandbox.ratelimit import Limiter, ServiceQueues, make_limiter

# --- runtime ------------------------------------------------------------------------------


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
    bucket: Limiter | None
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
            self._buckets: dict[str, tuple[RateLimitSpec, Limiter]] = {}
            self._admin_outages: dict[str, tuple[float, float, str]] = {}
            self._cleared_at: dict[str, float] = {}
            self._error_next: dict[str, int] = {}
            # A fresh count: requests still served under the old profile leave the old one.
            self.queues = ServiceQueues()
            for name in load_catalog().names:
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
            targets = load_catalog().names if service == "*" else [service]
            base = new if service == "*" else self._entries.get("*")
            for name in targets:
                own = None if name == "*" else (new if name == service else self._entries.get(name))
                try:
                    merge_faults(base, own)
                except ValidationError as exc:
                    raise ProfileError(
                        f"invalid faults for {name} (merged with '*'): {describe_errors(exc)}"
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
        if not 0 < seconds <= MAX_SECONDS:  # also refuses NaN
            raise ProfileError(f"outage seconds must be > 0 and <= {MAX_SECONDS:.0f}")
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
            self.queues = ServiceQueues()

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
                    kept = self._buckets.get(service)
                    bucket = kept[1] if kept is not None and kept[0] == spec else None
                    if bucket is None:
                        bucket = make_limiter(spec, self._clock)
                        self._buckets[service] = (spec, bucket)
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

    def queued_latency(self, service: str, latency: float) -> float:
        """``latency`` of an answer arriving now, past the service's ``capacity``."""
        faults = self._rt(service).faults
        return latency * self.queues.factor(service, faults.capacity, faults.contention)

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
