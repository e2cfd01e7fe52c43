"""Realistic synthetic history for the metrics store, with its ground truth.

``generate_history`` writes ``calls``, ``probes``, ``workflow_runs`` (and optionally
``alerts``) rows for N services over a span of days into a :class:`junction.store.MetricsStore`
root, and returns a :class:`GroundTruth` naming every injected incident and degradation so
anomaly-detection and prediction tests can score themselves against it.

The model, per service ``s`` and time step ``k`` (all vectorised with numpy):

* **volume**: calls per step ~ Poisson(base_s x daily(k) x weekly(k) x growth(k)); the
  daily curve peaks mid-afternoon UTC, weekends carry ~55 % of a weekday, traffic grows by
  ``growth_per_week`` (compounded);
* **latency**: per call lognormal around ``base_latency_s x action factor x load factor x
  degradation_s(k)`` (a busier hour is a little slower);
* **errors**: a per-service base error rate (5xx/429);
* **incidents** (outages): a window of whole steps in which calls fail with a high
  probability, as 503s (``errors``), client timeouts at the 10 s timeout (``timeouts``) or
  both (``mixed``); probes fail with them and, if ``alerts=True``, an alert fires/resolves;
* **slow degradations**: latency creeping up linearly over days to ``factor`` x baseline,
  then (sometimes) recovering.

Everything is deterministic for a given ``seed`` (ids too), and each day is drawn from
its own seeded stream, so a day's rows do not depend on how many days were generated.

Bulk path: ``MetricsStore.append`` validates and spools row by row (JSON lines), far too
slow for millions of rows. The generator therefore writes Parquet segments directly in
the store's documented layout, ``<table>/date=YYYY-MM-DD/part-<uuid>.parquet`` with the
exact :data:`junction.store.TABLES` schema, through a temp name and an atomic rename
(readers never see a partial file). Rows are sorted by time inside a file, in row groups
of 128 k rows, so hour-range reads skip most of a day's file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from integrations.catalog import load_catalog
from junction.store import PARTITION_COLUMNS, TABLES, create_private, make_private_dir

IncidentMode = Literal["errors", "timeouts", "mixed"]
IfExists = Literal["error", "append", "replace"]

TIMEOUT_MS = 10_000.0
"""Latency recorded for a call that hit the client timeout (the default 10 s)."""

WORKFLOW_STATUSES = ("completed", "failed")
"""``workflow_runs.status`` values the generator writes."""

ROW_GROUP_ROWS = 128_000

# (action, method, path, latency factor, weight): a generic REST surface.
_ACTIONS: tuple[tuple[str, str, str, float, float], ...] = (
    ("health_check", "GET", "/health", 0.5, 1.0),
    ("list_records", "GET", "/records", 1.0, 3.0),
    ("get_record", "GET", "/records/{id}", 0.7, 5.0),
    ("create_record", "POST", "/records", 1.6, 1.5),
    ("update_record", "PATCH", "/records/{id}", 1.4, 1.0),
    ("search", "POST", "/search", 1.8, 1.0),
    ("send_message", "POST", "/messages", 1.2, 2.0),
)
_WORKFLOWS = (
    "employee-onboarding",
    "incident-response",
    "release-pipeline",
    "customer-escalation",
    "access-review",
    "weekly-digest",
)
_US = 1_000_000
_US_PER_DAY = 86_400 * _US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ServiceProfile:
    """The fixed character of one synthetic service."""

    name: str
    base_latency_ms: float
    error_rate: float
    calls_per_step: float
    actions: tuple[str, ...]


@dataclass(frozen=True)
class Incident:
    """An outage: ``[start, end)`` in whole steps; calls and probes fail with ``failure_rate``."""

    service: str
    start: datetime
    end: datetime
    mode: IncidentMode
    failure_rate: float


@dataclass(frozen=True)
class Degradation:
    """Latency ramps from 1x at ``start`` to ``factor`` x at ``peak``, back to 1x at ``end``."""

    service: str
    start: datetime
    peak: datetime
    end: datetime
    factor: float


@dataclass(frozen=True)
class MonitorOutage:
    """A window with no probes at all (the monitor was down): a gap validation must see."""

    start: datetime
    end: datetime


@dataclass
class GroundTruth:
    """What was generated: the span, the services, and every injected event."""

    start: datetime
    end: datetime
    step: timedelta
    seed: int
    services: tuple[ServiceProfile, ...]
    incidents: tuple[Incident, ...]
    degradations: tuple[Degradation, ...]
    monitor_outages: tuple[MonitorOutage, ...] = ()
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def service_names(self) -> list[str]:
        """Service names, in generation order."""
        return [s.name for s in self.services]

    def incidents_for(self, service: str) -> list[Incident]:
        """Incidents of one service, by start time."""
        return [i for i in self.incidents if i.service == service]

    def degradations_for(self, service: str) -> list[Degradation]:
        """Degradations of one service, by start time."""
        return [d for d in self.degradations if d.service == service]

    def in_incident(self, service: str, ts: np.ndarray | pa.Array | list[datetime]) -> np.ndarray:
        """Boolean mask: which of ``ts`` fall inside an incident of ``service``.

        Args:
            service: Service name.
            ts: Timestamps (numpy ``datetime64``, an Arrow timestamp array, or datetimes;
                naive values are taken as UTC).
        """
        micros = _to_epoch_us(ts)
        mask = np.zeros(micros.shape, dtype=bool)
        for inc in self.incidents_for(service):
            mask |= (micros >= _us(inc.start)) & (micros < _us(inc.end))
        return mask

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (datetimes as ISO strings)."""

        def conv(value: object) -> object:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, timedelta):
                return value.total_seconds()
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: conv(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [conv(v) for v in value]
            return value

        out = {
            "start": self.start,
            "end": self.end,
            "step": self.step,
            "seed": self.seed,
            "services": [asdict(s) for s in self.services],
            "incidents": [asdict(i) for i in self.incidents],
            "degradations": [asdict(d) for d in self.degradations],
            "monitor_outages": [asdict(m) for m in self.monitor_outages],
            "rows": self.rows,
        }
        result = conv(out)
        assert isinstance(result, dict)
        return result

    def to_json(self) -> str:
        """The ground truth as JSON (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=1)


def _us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _to_epoch_us(ts: np.ndarray | pa.Array | list[datetime]) -> np.ndarray:
    if isinstance(ts, pa.Array | pa.ChunkedArray):
        ts = ts.to_numpy(zero_copy_only=False)
    if isinstance(ts, list):
        return np.array([_us(t) for t in ts], dtype=np.int64)
    arr = np.asarray(ts)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[us]").astype(np.int64)
    return np.array([_us(t) for t in arr], dtype=np.int64)


def _service_names(n: int) -> list[str]:
    if n <= 0:
        raise ValueError("services must be >= 1")
    names = load_catalog().names
    if n <= len(names):
        return names[:n]
    width = len(str(n))
    return [f"svc-{i:0{width}d}" for i in range(n)]


def _profiles(
    names: list[str], rng: np.random.Generator, calls_per_step: float
) -> list[ServiceProfile]:
    n = len(names)
    base = np.exp(rng.normal(math.log(180.0), 0.6, n)).clip(25.0, 2500.0)
    err = np.exp(rng.normal(math.log(0.008), 0.7, n)).clip(0.0005, 0.06)
    vol = calls_per_step * np.exp(rng.normal(0.0, 0.5, n)) / math.exp(0.125)  # mean-preserving
    out = []
    for i, name in enumerate(names):
        k = int(rng.integers(3, 6))
        chosen = sorted(rng.choice(len(_ACTIONS), size=k, replace=False).tolist())
        out.append(
            ServiceProfile(
                name=name,
                base_latency_ms=round(float(base[i]), 1),
                error_rate=round(float(err[i]), 5),
                calls_per_step=float(vol[i]),
                actions=tuple(_ACTIONS[j][0] for j in chosen),
            )
        )
    return out


def _hex_ids(rng: np.random.Generator, n: int) -> pa.StringArray:
    """``n`` deterministic 32-char hex ids (uuid4-like), built without Python strings."""
    data = rng.bytes(16 * n).hex().encode()
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def _dict_strings(codes: np.ndarray, values: Sequence[str | None]) -> pa.Array:
    """Strings from small integer codes (``None`` in ``values`` -> null)."""
    dictionary = pa.array(values, type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary).cast(
        pa.string()
    )


def _ts_array(micros: np.ndarray) -> pa.Array:
    return pa.array(micros.astype("datetime64[us]"), type=pa.timestamp("us", tz="UTC"))


class _Plan:
    """Everything fixed before rows are drawn: profiles, events, per-step factors."""

    def __init__(
        self,
        profiles: list[ServiceProfile],
        start_us: int,
        step_us: int,
        n_steps: int,
        growth_per_week: float,
        incidents: list[Incident],
        degradations: list[Degradation],
        outages: list[MonitorOutage],
    ) -> None:
        self.profiles = profiles
        self.start_us = start_us
        self.step_us = step_us
        self.n_steps = n_steps
        self.growth_per_week = growth_per_week
        self.incidents = incidents
        self.degradations = degradations
        self.outages = outages
        self.index = {p.name: i for i, p in enumerate(profiles)}
        self.base = np.array([p.base_latency_ms for p in profiles])
        self.err = np.array([p.error_rate for p in profiles])
        self.vol = np.array([p.calls_per_step for p in profiles])
        names = [a[0] for a in _ACTIONS]
        weights = np.zeros((len(profiles), len(_ACTIONS)))
        for i, p in enumerate(profiles):
            for a in p.actions:
                weights[i, names.index(a)] = _ACTIONS[names.index(a)][4]
        self.action_cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
        self.action_cum[:, -1] = 1.0 + 1e-9
        self.action_factor = np.array([a[3] for a in _ACTIONS])

    def step_starts(self, k: np.ndarray) -> np.ndarray:
        return self.start_us + k * self.step_us

    def load(self, k: np.ndarray) -> np.ndarray:
        """Traffic multiplier per step: daily curve x weekday/weekend x growth."""
        t = self.step_starts(k)
        hour = (t % _US_PER_DAY) / (3600 * _US)
        daily = 1.0 + 0.55 * np.cos(2 * np.pi * (hour - 14.0) / 24.0)
        weekday = ((t // _US_PER_DAY) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        weekly = np.where(weekday >= 5, 0.55, 1.0)
        weeks = (t - self.start_us) / (7 * _US_PER_DAY)
        growth = (1.0 + self.growth_per_week) ** weeks
        return daily * weekly * growth

    def degradation(self, k: np.ndarray) -> np.ndarray:
        """Latency multiplier, services x steps."""
        t = self.step_starts(k)
        out = np.ones((len(self.profiles), len(k)))
        for d in self.degradations:
            s, p, e = _us(d.start), _us(d.peak), _us(d.end)
            ramp = np.clip((t - s) / max(p - s, 1), 0.0, 1.0)
            active = (t >= s) & (t < e)
            out[self.index[d.service]] *= np.where(active, 1.0 + (d.factor - 1.0) * ramp, 1.0)
        return out

    def incident_state(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(failure probability, mode code 0 none/1 errors/2 timeouts/3 mixed), services x steps."""
        t = self.step_starts(k)
        prob = np.zeros((len(self.profiles), len(k)))
        mode = np.zeros((len(self.profiles), len(k)), dtype=np.int8)
        codes = {"errors": 1, "timeouts": 2, "mixed": 3}
        for inc in self.incidents:
            hit = (t >= _us(inc.start)) & (t < _us(inc.end))
            row = self.index[inc.service]
            prob[row, hit] = inc.failure_rate
            mode[row, hit] = codes[inc.mode]
        return prob, mode

    def monitor_down(self, k: np.ndarray) -> np.ndarray:
        t = self.step_starts(k)
        down = np.zeros(len(k), dtype=bool)
        for o in self.outages:
            down |= (t >= _us(o.start)) & (t < _us(o.end))
        return down


def _plan_events(
    profiles: list[ServiceProfile],
    rng: np.random.Generator,
    start_us: int,
    step_us: int,
    n_steps: int,
    incidents_per_30_days: float,
    degradation_fraction: float,
    monitor_outages: int,
) -> tuple[list[Incident], list[Degradation], list[MonitorOutage]]:
    span_days = n_steps * step_us / _US_PER_DAY
    incidents: list[Incident] = []
    modes: tuple[IncidentMode, ...] = ("errors", "timeouts", "mixed")
    for p in profiles:
        count = int(rng.poisson(incidents_per_30_days * span_days / 30.0))
        taken: list[tuple[int, int]] = []
        for _ in range(count):
            minutes = float(np.exp(rng.uniform(math.log(10.0), math.log(120.0))))
            length = max(1, round(minutes * 60 * _US / step_us))
            if length >= n_steps:
                continue
            first = int(rng.integers(0, n_steps - length))
            if any(first < b + 12 and a < first + length + 12 for a, b in taken):
                continue  # keep incidents of one service apart: each is a distinct event
            taken.append((first, first + length))
            incidents.append(
                Incident(
                    service=p.name,
                    start=_from_us(start_us + first * step_us),
                    end=_from_us(start_us + (first + length) * step_us),
                    mode=modes[int(rng.integers(0, 3))],
                    failure_rate=round(float(rng.uniform(0.5, 1.0)), 3),
                )
            )
    degradations: list[Degradation] = []
    span_us = n_steps * step_us
    if span_days >= 2:
        for p in profiles:
            if rng.random() >= degradation_fraction:
                continue
            s = start_us + int(rng.uniform(0.2, 0.7) * span_us)
            ramp = int(rng.uniform(0.1, 0.25) * span_us)
            peak = s + max(ramp, step_us)
            end_us = start_us + span_us
            if rng.random() < 0.5:  # half of them get fixed at some point
                end_us = min(end_us, peak + int(rng.uniform(0.0, 0.15) * span_us))
            degradations.append(
                Degradation(
                    service=p.name,
                    start=_from_us(s),
                    peak=_from_us(peak),
                    end=_from_us(max(end_us, peak)),
                    factor=round(float(rng.uniform(1.6, 3.0)), 2),
                )
            )
    outages: list[MonitorOutage] = []
    for _ in range(monitor_outages):
        length = int(rng.integers(3, 13))
        if length >= n_steps:
            continue
        first = int(rng.integers(0, n_steps - length))
        outages.append(
            MonitorOutage(
                start=_from_us(start_us + first * step_us),
                end=_from_us(start_us + (first + length) * step_us),
            )
        )
    incidents.sort(key=lambda i: (i.start, i.service))
    degradations.sort(key=lambda d: (d.start, d.service))
    outages.sort(key=lambda o: o.start)
    return incidents, degradations, outages


# --------------------------------------------------------------------------- tables


def _calls_table(plan: _Plan, k: np.ndarray, rng: np.random.Generator) -> pa.Table:
    n_svc = len(plan.profiles)
    load = plan.load(k)
    lam = plan.vol[:, None] * load[None, :]
    counts = rng.poisson(lam)
    total = int(counts.sum())
    svc = np.repeat(np.repeat(np.arange(n_svc), len(k)), counts.ravel())
    col = np.repeat(np.tile(np.arange(len(k)), n_svc), counts.ravel())
    ts = plan.step_starts(k)[col] + rng.integers(0, plan.step_us, total)
    u = rng.random(total)
    action = (u[:, None] > plan.action_cum[svc]).sum(axis=1)
    deg = plan.degradation(k)
    prob, mode = plan.incident_state(k)
    load_factor = 1.0 + 0.2 * (load - 1.0)
    median = plan.base[svc] * plan.action_factor[action] * load_factor[col] * deg[svc, col]
    latency = median * np.exp(rng.normal(0.0, 0.35, total))
    p_inc = prob[svc, col]
    m_inc = mode[svc, col]
    in_inc = p_inc > 0
    fail_p = np.where(in_inc, p_inc, plan.err[svc])
    failed = rng.random(total) < fail_p
    # Failure kinds: 0 none, 1 server error 5xx, 2 rate limit 429, 3 timeout, 4 circuit open.
    kind = np.zeros(total, dtype=np.int8)
    base_fail = failed & ~in_inc
    kind[base_fail] = np.where(rng.random(int(base_fail.sum())) < 0.8, 1, 2)
    inc_fail = failed & in_inc
    r = rng.random(total)
    inc_kind = np.where(m_inc == 1, 1, np.where(m_inc == 2, 3, np.where(r < 0.5, 1, 3))).astype(
        np.int8
    )
    inc_kind = np.where(r > 0.8, 4, inc_kind)  # the breaker opens for a share of calls
    kind[inc_fail] = inc_kind[inc_fail]
    latency = np.where(kind == 3, TIMEOUT_MS * (1.0 + 0.05 * rng.random(total)), latency)
    latency = np.where(kind == 1, latency * 0.3 + 5.0, latency)
    latency = np.where(kind == 4, 0.05 + 0.1 * rng.random(total), latency)
    latency = np.round(latency, 3)
    status_code = np.array([200, 503, 429, -1, -1])
    status_values = status_code[kind]
    ok_status = np.where(plan.action_factor[action] > 1.3, 201, 200)  # writes answer 201
    status_values = np.where(kind == 0, ok_status, status_values)
    error_classes: list[str | None] = [
        None,
        "ServerError",
        "RateLimitError",
        "APITimeoutError",
        "CircuitOpenError",
    ]
    errors: list[str | None] = [
        None,
        "503 Service Unavailable",
        "429 Too Many Requests",
        "timed out after 10.0 s",
        "circuit open",
    ]
    attempts = np.where(
        (kind == 1) | (kind == 3), 3, np.where(kind == 4, 1, 1 + (rng.random(total) < 0.01))
    )
    breaker = np.where(kind == 4, 1, 0)
    source = (rng.random(total) < 0.2).astype(np.int8)  # 20 % interactive CLI calls
    order = np.argsort(ts, kind="stable")
    names = [a[0] for a in _ACTIONS]
    arrays = {
        "id": _hex_ids(rng, total),
        "ts": _ts_array(ts[order]),
        "service": _dict_strings(svc[order], [p.name for p in plan.profiles]),
        "action": _dict_strings(action[order], names),
        "method": _dict_strings(action[order], [a[1] for a in _ACTIONS]),
        "path": _dict_strings(action[order], [a[2] for a in _ACTIONS]),
        "status": pa.array(status_values[order].astype(np.int32), mask=status_values[order] < 0),
        "ok": pa.array(kind[order] == 0),
        "latency_ms": pa.array(latency[order]),
        "error_class": _dict_strings(kind[order], error_classes),
        "error": _dict_strings(kind[order], errors),
        "attempts": pa.array(attempts[order].astype(np.int32)),
        "breaker_state": _dict_strings(breaker[order], ["closed", "open"]),
        "source": _dict_strings(source[order], ["workflow", "cli"]),
        "run_id": pa.nulls(total, pa.string()),
    }
    return pa.Table.from_pydict(arrays, schema=TABLES["calls"])


def _probes_table(plan: _Plan, k: np.ndarray, rng: np.random.Generator) -> pa.Table:
    n_svc = len(plan.profiles)
    k = k[~plan.monitor_down(k)]
    n = n_svc * len(k)
    col = np.tile(np.arange(len(k)), n_svc)
    svc = np.repeat(np.arange(n_svc), len(k))
    sweep_jitter = rng.integers(0, 2 * _US, len(k))
    ts = plan.step_starts(k)[col] + sweep_jitter[col] + rng.integers(0, _US // 2, n)
    deg = plan.degradation(k)
    prob, mode = plan.incident_state(k)
    p = np.where(prob[svc, col] > 0, prob[svc, col], plan.err[svc] / 4)
    failed = rng.random(n) < p
    timeout = failed & ((mode[svc, col] == 2) | ((mode[svc, col] == 3) & (rng.random(n) < 0.5)))
    latency = plan.base[svc] * 0.5 * deg[svc, col] * np.exp(rng.normal(0.0, 0.25, n))
    latency = np.where(timeout, TIMEOUT_MS, np.where(failed, latency * 0.3 + 5.0, latency))
    kind = np.where(timeout, 2, np.where(failed, 1, 0))
    status = np.array([200, 503, -1])[kind]
    order = np.argsort(ts, kind="stable")
    sweep_ids = _hex_ids(rng, len(k))
    return pa.Table.from_pydict(
        {
            "id": _hex_ids(rng, n),
            "ts": _ts_array(ts[order]),
            "sweep_id": sweep_ids.take(pa.array(col[order])),
            "service": _dict_strings(svc[order], [p.name for p in plan.profiles]),
            "ok": pa.array(kind[order] == 0),
            "status": pa.array(status[order].astype(np.int32), mask=status[order] < 0),
            "latency_ms": pa.array(np.round(latency[order], 3)),
            "error_class": _dict_strings(kind[order], [None, "ServerError", "APITimeoutError"]),
            "error": _dict_strings(
                kind[order], [None, "503 Service Unavailable", "timed out after 10.0 s"]
            ),
            "breaker_state": _dict_strings(np.zeros(n, dtype=np.int8), ["closed"]),
        },
        schema=TABLES["probes"],
    )


def _workflow_table(
    plan: _Plan, k: np.ndarray, rng: np.random.Generator, uses: np.ndarray
) -> pa.Table:
    n_wf = uses.shape[0]
    load = plan.load(k)
    counts = rng.poisson(0.15 * load[None, :].repeat(n_wf, axis=0))
    total = int(counts.sum())
    wf = np.repeat(np.repeat(np.arange(n_wf), len(k)), counts.ravel())
    col = np.repeat(np.tile(np.arange(len(k)), n_wf), counts.ravel())
    started = plan.step_starts(k)[col] + rng.integers(0, plan.step_us, total)
    prob, _ = plan.incident_state(k)
    deg = plan.degradation(k)
    used = uses[wf]  # total x 3 service indexes
    p_fail = np.max(prob[used, col[:, None]], axis=1)
    failed = rng.random(total) < np.maximum(p_fail, 0.01)
    duration = (plan.base[used] * deg[used, col[:, None]]).sum(axis=1) * np.exp(
        rng.normal(0.0, 0.3, total)
    )
    duration = np.round(duration + 40.0, 3)
    ended = started + (duration * 1000).astype(np.int64)
    retries = rng.poisson(0.05, total) + np.where(failed, 2, 0)
    order = np.argsort(started, kind="stable")
    return pa.Table.from_pydict(
        {
            "id": _hex_ids(rng, total),
            "run_id": _hex_ids(rng, total).take(pa.array(order)),
            "workflow": _dict_strings(wf[order], list(_WORKFLOWS[:n_wf])),
            "started_at": _ts_array(started[order]),
            "ended_at": _ts_array(ended[order]),
            "status": _dict_strings(failed[order].astype(np.int8), list(WORKFLOW_STATUSES)),
            "duration_ms": pa.array(duration[order]),
            "steps": pa.array(np.full(total, 3, dtype=np.int32)),
            "retries": pa.array(retries[order].astype(np.int32)),
            "fallbacks": pa.array((rng.random(total) < 0.02)[order].astype(np.int32)),
            "error": _dict_strings(failed[order].astype(np.int8), [None, "step failed"]),
            "params_json": pa.nulls(total, pa.string()),
        },
        schema=TABLES["workflow_runs"],
    )


def _alerts_table(incidents: list[Incident], step: timedelta) -> pa.Table:
    rows = []
    for inc in incidents:
        fingerprint = hashlib.sha1(f"{inc.service}/availability".encode()).hexdigest()[:16]
        labels = json.dumps({"service": inc.service, "rule": "availability"}, sort_keys=True)
        for state, at in (("firing", inc.start + step), ("resolved", inc.end + step)):
            rows.append(
                {
                    "id": hashlib.sha1(
                        f"{fingerprint}{state}{at.isoformat()}".encode()
                    ).hexdigest()[:32],
                    "ts": at,
                    "fingerprint": fingerprint,
                    "service": inc.service,
                    "rule": "availability",
                    "severity": "critical",
                    "state": state,
                    "message": f"{inc.service}: {inc.mode} outage ({inc.failure_rate:.0%} failing)",
                    "labels_json": labels,
                }
            )
    return pa.Table.from_pylist(rows, schema=TABLES["alerts"])


# --------------------------------------------------------------------------- writing


def _existing_files(root: Path, table: str) -> list[Path]:
    return sorted((root / table).glob("date=*/*.parquet"))


def _write_partitions(
    root: Path, table: str, tbl: pa.Table, rng: np.random.Generator
) -> list[Path]:
    """Write ``tbl`` as one ``part-<uuid>.parquet`` per UTC day of its partition column."""
    if tbl.num_rows == 0:
        return []
    pcol = tbl[PARTITION_COLUMNS[table]]
    days = pcol.cast(pa.int64()).to_numpy() // _US_PER_DAY
    out = []
    for day in np.unique(days):
        mask = days == day
        part = tbl.filter(pa.array(mask)) if not mask.all() else tbl
        part_dir = (
            root / table / f"date={(date(1970, 1, 1) + timedelta(days=int(day))).isoformat()}"
        )
        make_private_dir(part_dir)
        name = f"part-{uuid.UUID(bytes=rng.bytes(16), version=4).hex}.parquet"
        target = part_dir / name
        # Same temp naming as the store (``<final>.<pid>-<hex>.tmp``) so its sweeper can
        # delete what a killed generator leaves behind.
        tmp = part_dir / f"{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            with create_private(tmp) as fh:
                pq.write_table(part, fh, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        out.append(target)
    return out


def _day_start(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def generate_history(
    store_root: str | Path,
    services: int | list[str] = 33,
    days: float = 30,
    step: timedelta = timedelta(minutes=5),
    seed: int = 0,
    *,
    start: datetime | None = None,
    duration: timedelta | None = None,
    calls_per_step: float = 4.0,
    growth_per_week: float = 0.03,
    incidents_per_30_days: float = 1.0,
    degradation_fraction: float = 0.15,
    monitor_outages: int = 0,
    workflows: int = 4,
    tables: tuple[str, ...] = ("calls", "probes", "workflow_runs"),
    alerts: bool = False,
    if_exists: IfExists = "error",
) -> GroundTruth:
    """Write synthetic history into a metrics store root and return its ground truth.

    Args:
        store_root: Root of a :class:`junction.store.MetricsStore` (created if missing).
        services: Number of services (catalog names while they last, then ``svc-NNN``),
            or explicit names.
        days: Length of the history in days (ignored when ``duration`` is given).
        step: Time resolution: one probe per service per step; calls are spread
            uniformly inside each step.
        seed: Everything (profiles, events, rows, ids, file names) follows from it.
        start: First instant (UTC). Default: midnight UTC ``days`` days before today, so
            the history ends at today's midnight.
        duration: Exact span, e.g. ``timedelta(hours=1)`` to append one more hour.
        calls_per_step: Mean calls per service per step at an average hour.
        growth_per_week: Traffic growth per week (0.03 = +3 %/week, compounded).
        incidents_per_30_days: Mean outages per service per 30 days.
        degradation_fraction: Share of services given a slow latency degradation
            (only for spans of at least two days).
        monitor_outages: Windows (3-12 steps) with no probes at all, for gap checks.
        workflows: Number of synthetic workflows (up to 6) writing ``workflow_runs``.
        tables: Which of calls/probes/workflow_runs to write.
        alerts: Also write an ``alerts`` firing/resolved pair per incident.
        if_exists: When a table already has segments: ``error`` (default), ``append``
            (add files next to them) or ``replace`` (delete that table's directory first).

    Returns:
        The :class:`GroundTruth`: profiles, incidents, degradations, monitor outages, row
        counts per table and the files written.

    Raises:
        ValueError: Bad arguments, or existing data with ``if_exists="error"``.
    """
    step_us = step // timedelta(microseconds=1)
    if step_us <= 0:
        raise ValueError("step must be positive")
    span = duration if duration is not None else timedelta(days=days)
    n_steps = span // step
    if n_steps < 1:
        raise ValueError("the history must span at least one step")
    unknown = set(tables) - {"calls", "probes", "workflow_runs"}
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}")
    if not 0 <= workflows <= len(_WORKFLOWS):
        raise ValueError(f"workflows must be 0..{len(_WORKFLOWS)}")
    if start is None:
        start = _day_start(datetime.now(UTC)) - span
    elif start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.astimezone(UTC)
    root = Path(store_root).absolute()
    make_private_dir(root)
    written_tables = [*tables, *(["alerts"] if alerts else [])]
    for table in written_tables:
        if _existing_files(root, table):
            if if_exists == "error":
                raise ValueError(
                    f"{root / table} already has data; pass if_exists='append' or 'replace'"
                )
            if if_exists == "replace":
                shutil.rmtree(root / table)

    names = list(services) if isinstance(services, list) else _service_names(services)
    if not names or len(set(names)) != len(names):
        raise ValueError("services must be non-empty and unique")
    start_us = _us(start)
    profiles = _profiles(names, np.random.default_rng([seed, 0]), calls_per_step)
    incidents, degradations, outages = _plan_events(
        profiles,
        np.random.default_rng([seed, 1, start_us]),
        start_us,
        step_us,
        n_steps,
        incidents_per_30_days,
        degradation_fraction,
        monitor_outages,
    )
    plan = _Plan(
        profiles, start_us, step_us, n_steps, growth_per_week, incidents, degradations, outages
    )
    wf_rng = np.random.default_rng([seed, 3])
    uses = np.array(
        [wf_rng.choice(len(profiles), size=3, replace=len(profiles) < 3) for _ in range(workflows)],
        dtype=np.int64,
    ).reshape(workflows, 3)

    truth = GroundTruth(
        start=start,
        end=_from_us(start_us + n_steps * step_us),
        step=step,
        seed=seed,
        services=tuple(profiles),
        incidents=tuple(incidents),
        degradations=tuple(degradations),
        monitor_outages=tuple(outages),
        rows=dict.fromkeys(written_tables, 0),
    )
    steps = np.arange(n_steps, dtype=np.int64)
    day_of_step = (plan.step_starts(steps)) // _US_PER_DAY
    for day in np.unique(day_of_step):
        k = steps[day_of_step == day]
        # One independent stream per (seed, table, day): a day's rows never depend on
        # which other days were generated.
        for t_index, table in enumerate(("calls", "probes", "workflow_runs")):
            if table not in tables or (table == "workflow_runs" and workflows == 0):
                continue
            rng = np.random.default_rng([seed, 10 + t_index, int(day), start_us])
            if table == "calls":
                tbl = _calls_table(plan, k, rng)
            elif table == "probes":
                tbl = _probes_table(plan, k, rng)
            else:
                tbl = _workflow_table(plan, k, rng, uses)
            truth.files.extend(_write_partitions(root, table, tbl, rng))
            truth.rows[table] += tbl.num_rows
    if alerts:
        tbl = _alerts_table(incidents, step)
        truth.files.extend(_write_partitions(root, "alerts", tbl, np.random.default_rng([seed, 4])))
        truth.rows["alerts"] = tbl.num_rows
    return truth


__all__ = [
    "TIMEOUT_MS",
    "WORKFLOW_STATUSES",
    "Degradation",
    "GroundTruth",
    "Incident",
    "MonitorOutage",
    "ServiceProfile",
    "generate_history",
]
