"""A labelled corpus of operations metrics for tuning and judging anomaly detectors.

NAB (``bench/nab.py``) is the public yardstick, but its series are mostly not the metrics
Junction watches. This module generates the ones it does: per-service **latency** (p95,
ms), **error rate** (% of calls) and **call volume** (calls per interval) at 1, 2 or 5
minute resolution, about a month each (28-31 days), with a daily cycle (a business-hours
peak), a weekly one (quieter weekends, on most series), slow growth, autocorrelated
noise, heavy-tailed single-point blips (a slow request in a p95 is not an incident), and
labelled incidents:

* ``level_shift``: a bad deploy (latency x1.4-2.5, errors x4-15, volume x0.35-0.65 or
  x1.6-2.5) for 1-8 h, or for good (a quarter of them);
* ``ramp``: a slow leak, rising linearly over 2-10 h to its worst, held 1 h, recovered;
* ``outage``: 10-60 min of nothing working (volume ~0, latency at the 10 s timeout,
  50-100 % errors);
* ``variance``: the same level, 3-6x the noise, for 2-8 h;
* ``seasonal_break`` (volume): traffic missing at its usual peak: it stays at the level of
  the morning instead of rising, for 2-5 h, so no value is outside the day's range and
  only the seasonal expectation shows it.

About a quarter of the series are healthy but noisy (more noise, more blips) and carry no
incident. Incidents start after day :data:`SCORED_FROM_DAY` + 1 (a detector gets a week
to learn the weekly cycle; alarms before it are not counted either).

Labels follow NAB's layout (:func:`write_corpus`): ``data/<metric>/<name>.csv``
(``timestamp,value``), ``labels/combined_windows.json`` (per file a list of
``[start, end]`` windows), ``labels/combined_labels.json`` (incident starts) and
``labels/incidents.json`` (each window's kind). A window runs from two points before the
incident to 30 minutes (at least 3 points) after its end; a permanent shift's window is
6 hours.

Everything is deterministic in the series id. The split into a TUNE part and a HOLDOUT
part (:func:`split_of`) is a hash of the id, fixed before any detector was tuned:
parameters are chosen on TUNE only; HOLDOUT is only ever reported. HOLDOUT was reported
twice while the alarm stage was built, so it is no longer held out: a second held-out
part, **HOLDOUT2** (ids :data:`HOLDOUT2_IDS`, same generator and kinds, new seeds), was
added and scored once with the committed detector before any further change. Parameters
may now be chosen on TUNE and HOLDOUT; HOLDOUT2 is only ever reported.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Split = Literal["tune", "holdout", "holdout2"]
METRICS = ("latency", "error_rate", "volume")
INCIDENT_KINDS = ("level_shift", "ramp", "outage", "variance", "seasonal_break")
SCORED_FROM_DAY = 7
"""Days at the start of every series that only train a detector (not scored)."""
DEFAULT_SERIES = 120
"""Series ids ``0 .. DEFAULT_SERIES - 1`` make the standard corpus (about 60 per part)."""
HOLDOUT2_IDS = range(10_000, 10_120)
"""The second held-out part: every series with these ids (120, more than HOLDOUT's 71)."""
TIMEOUT_MS = 10_000.0
_SEED = 20261207
_START = np.datetime64("2026-01-05T00:00:00", "s")  # a Monday


def split_of(series_id: int) -> Split:
    """The part of a series id: HOLDOUT2 for :data:`HOLDOUT2_IDS`, otherwise TUNE or
    HOLDOUT by the parity of a SHA-256 of the id (fixed rules)."""
    if series_id in HOLDOUT2_IDS:
        return "holdout2"
    digest = hashlib.sha256(f"junction-opscorpus:{series_id}".encode()).digest()
    return "holdout" if digest[0] & 1 else "tune"


@dataclass(frozen=True)
class Incident:
    """One labelled incident: points ``start .. end - 1`` affected, ``window`` inclusive."""

    kind: str
    start: int
    end: int
    window: tuple[int, int]


@dataclass
class OpsSeries:
    """One generated series with its incidents."""

    series_id: int
    metric: str
    resolution_s: int
    timestamps: np.ndarray
    values: np.ndarray
    incidents: list[Incident] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The file name in NAB's layout: ``<metric>/<metric>_<id>.csv``."""
        return f"{self.metric}/{self.metric}_{self.series_id:04d}.csv"

    @property
    def split(self) -> Split:
        """TUNE or HOLDOUT (:func:`split_of`)."""
        return split_of(self.series_id)

    @property
    def windows(self) -> list[tuple[int, int]]:
        """The incidents' windows (inclusive index ranges), in time order."""
        return [i.window for i in self.incidents]

    @property
    def scored_from(self) -> int:
        """First point that is scored (after :data:`SCORED_FROM_DAY` days)."""
        return SCORED_FROM_DAY * 86400 // self.resolution_s

    def __len__(self) -> int:
        return len(self.values)


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    """Stationary AR(1) noise with marginal standard deviation ``sigma``."""
    eps = rng.normal(0.0, sigma * np.sqrt(1.0 - phi * phi), n)
    out = np.empty(n)
    acc = rng.normal(0.0, sigma)
    for k in range(n):  # 43,200 points at most: fast enough in plain Python
        acc = phi * acc + eps[k]
        out[k] = acc
    return out


def _shape(rng: np.random.Generator, hours: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """Relative load in (0, 1]: a business-hours peak over a night trough, quieter weekends."""
    peak = rng.uniform(11.0, 16.0)
    width = rng.uniform(2.5, 4.5)
    trough = rng.uniform(0.12, 0.35)
    d = np.abs(hours - peak)
    d = np.minimum(d, 24.0 - d)
    day = trough + (1.0 - trough) * np.exp(-0.5 * (d / width) ** 2)
    weekend_factor = 1.0 if rng.random() < 0.2 else rng.uniform(0.35, 0.8)
    return np.asarray(day * np.where(weekend, weekend_factor, 1.0))


def _pick_kind(rng: np.random.Generator, metric: str) -> str:
    if metric == "volume":
        return str(rng.choice(INCIDENT_KINDS, p=[0.18, 0.1, 0.17, 0.1, 0.45]))
    return str(rng.choice(INCIDENT_KINDS[:4], p=[0.3, 0.25, 0.25, 0.2]))


def _starts(rng: np.random.Generator, n: int, step: int, count: int) -> list[int]:
    """Incident starts after day SCORED_FROM_DAY + 1, at least 1.5 days apart."""
    per_day = 86400 // step
    lo, hi = (SCORED_FROM_DAY + 1) * per_day, n - per_day // 3
    out: list[int] = []
    for _ in range(200):
        if len(out) == count:
            break
        s = int(rng.integers(lo, hi))
        if all(abs(s - o) > 1.5 * per_day for o in out):
            out.append(s)
    return sorted(out)


def generate_series(series_id: int) -> OpsSeries:
    """The series with this id (deterministic: the same id always gives the same series)."""
    rng = np.random.default_rng([_SEED, series_id])
    metric = METRICS[series_id % 3]
    step = int(rng.choice([60, 120, 300], p=[0.2, 0.2, 0.6]))
    days = int(rng.integers(28, 32))
    n = days * 86400 // step
    offset = int(rng.integers(0, 7)) * 86400
    secs = offset + np.arange(n, dtype=np.int64) * step
    timestamps = _START + secs.astype("timedelta64[s]")
    hours = (secs % 86400) / 3600.0
    weekend = ((secs // 86400) % 7) >= 5
    healthy = rng.random() < 0.25
    load = _shape(rng, hours, weekend) * (1.0 + rng.uniform(-0.05, 0.15) * np.arange(n) / n)
    noise_sigma = rng.uniform(0.03, 0.10) * (2.0 if healthy else 1.0)
    noise = _ar1(rng, n, rng.uniform(0.3, 0.85), noise_sigma)
    blip_rate = rng.uniform(0.0005, 0.003) * (2.0 if healthy else 1.0)
    blips = np.where(rng.random(n) < blip_rate, rng.uniform(1.3, 2.2, n), 1.0)

    # Per point: multiplicative factor on the level, extra log-noise, overrides.
    factor = np.ones(n)
    extra_sigma = np.zeros(n)
    cap = np.full(n, np.inf)  # seasonal break: load capped at its level when it began
    incidents: list[Incident] = []
    if not healthy:
        count = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        per_hour = 3600 // step
        for s in _starts(rng, n, step, count):
            kind = _pick_kind(rng, metric)
            day0 = s - s % (86400 // step)
            if kind == "seasonal_break" and weekend[day0]:
                kind = "level_shift"  # a weekend has little peak to miss
            if kind == "seasonal_break":
                # Move the start to that morning, where the load is still low.
                morning = [k for k in range(day0, min(day0 + 86400 // step, n)) if hours[k] >= 7]
                rise = [k for k in morning if load[k] >= 0.45 * load[morning].max()]
                if not rise:
                    continue
                s = max(rise[0] - int(rng.integers(0, per_hour)), day0)
                e = min(s + int(rng.uniform(2, 5) * per_hour), n)
                cap[s:e] = load[s]
            elif kind == "outage":
                e = s + max(3, int(rng.uniform(10, 60) * 60 // step))
            elif kind == "ramp":
                length = max(6, int(rng.uniform(2, 10) * per_hour))
                e = s + length + per_hour
            else:
                e = s + max(6, int(rng.uniform(1, 8) * per_hour))
            permanent = kind == "level_shift" and rng.random() < 0.25
            if permanent:
                e = n
            e = min(e, n)
            if kind == "level_shift":
                if metric == "latency":
                    m = rng.uniform(1.4, 2.5)
                elif metric == "error_rate":
                    m = rng.uniform(4.0, 15.0)
                else:
                    m = rng.uniform(0.35, 0.65) if rng.random() < 0.6 else rng.uniform(1.6, 2.5)
                factor[s:e] *= m
            elif kind == "ramp":
                worst = {"latency": rng.uniform(2, 4), "error_rate": rng.uniform(5, 20)}.get(
                    metric, rng.uniform(0.2, 0.5)
                )
                k = np.arange(e - s)
                length = e - s - per_hour
                factor[s:e] *= 1.0 + (worst - 1.0) * np.minimum(k / max(length, 1), 1.0)
            elif kind == "variance":
                extra_sigma[s:e] = noise_sigma * rng.uniform(3.0, 6.0)
            window_end = s + 6 * per_hour if permanent else e + max(3, 1800 // step)
            window = (max(s - 2, 0), min(window_end, n - 1))
            incidents.append(Incident(kind, s, e, window))
            if kind == "outage":
                factor[s:e] *= -1.0  # marks the outage for the metric below
    noise = noise + rng.normal(0.0, 1.0, n) * extra_sigma
    outage = factor < 0
    factor = np.abs(factor)
    eff_load = np.minimum(load, cap)

    if metric == "volume":
        rate = np.exp(rng.uniform(np.log(5), np.log(500))) * step / 60.0
        lam = rate * eff_load * factor * np.exp(noise) * np.where(blips > 1, 1 / blips, 1.0)
        lam[outage] *= rng.uniform(0.0, 0.05)
        values = rng.poisson(lam).astype(float)
    elif metric == "latency":
        base = np.exp(rng.uniform(np.log(30), np.log(800)))
        load_gain = rng.uniform(0.1, 0.6)
        values = base * (1 + load_gain * eff_load) * factor * np.exp(noise) * blips
        values[outage] = TIMEOUT_MS * rng.uniform(0.9, 1.0, int(outage.sum()))
        values = np.round(values, 1)
    else:
        calls = np.exp(rng.uniform(np.log(50), np.log(3000))) * step / 60.0 * eff_load
        p = np.exp(rng.uniform(np.log(0.0005), np.log(0.02))) * factor * np.exp(noise) * blips
        p[outage] = rng.uniform(0.5, 1.0)
        p = np.clip(p, 0.0, 1.0)
        total = np.maximum(rng.poisson(calls), 1)
        values = np.round(100.0 * rng.binomial(total, p) / total, 3)
    return OpsSeries(series_id, metric, step, timestamps, values, incidents)


def corpus(ids: Iterable[int] | None = None, split: Split | None = None) -> list[OpsSeries]:
    """The series with these ids, optionally one part.

    The default ids are ``range(DEFAULT_SERIES)`` (TUNE and HOLDOUT), or
    :data:`HOLDOUT2_IDS` for ``split="holdout2"``.
    """
    if ids is None:
        ids = HOLDOUT2_IDS if split == "holdout2" else range(DEFAULT_SERIES)
    chosen = ids
    return [generate_series(i) for i in chosen if split is None or split_of(i) == split]


def _stamp(t: np.datetime64) -> str:
    return str(t).replace("T", " ")


def write_corpus(root: Path, series: Sequence[OpsSeries]) -> None:
    """Write ``series`` in NAB's layout under ``root`` (``data/``, ``labels/``)."""
    windows: dict[str, list[list[str]]] = {}
    labels: dict[str, list[str]] = {}
    kinds: dict[str, list[str]] = {}
    for s in series:
        path = root / "data" / s.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            fh.write("timestamp,value\n")
            for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True):
                fh.write(f"{t:%Y-%m-%d %H:%M:%S},{v:g}\n")
        ts = s.timestamps
        windows[s.name] = [
            [_stamp(ts[i.window[0]]) + ".000000", _stamp(ts[i.window[1]]) + ".000000"]
            for i in s.incidents
        ]
        labels[s.name] = [_stamp(ts[i.start]) for i in s.incidents]
        kinds[s.name] = [i.kind for i in s.incidents]
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for fname, obj in (
        ("combined_windows.json", windows),
        ("combined_labels.json", labels),
        ("incidents.json", kinds),
    ):
        (root / "labels" / fname).write_text(json.dumps(obj, indent=1, sort_keys=True))


__all__ = [
    "DEFAULT_SERIES",
    "HOLDOUT2_IDS",
    "INCIDENT_KINDS",
    "METRICS",
    "SCORED_FROM_DAY",
    "Incident",
    "OpsSeries",
    "corpus",
    "generate_series",
    "split_of",
    "write_corpus",
]
