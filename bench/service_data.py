"""The service benchmark's store: ``services`` integrations, ``rows`` calls, recent probes.

Written straight as Parquet in the metrics store's own layout (what a compaction leaves):
``<root>/<table>/date=YYYY-MM-DD/part-<uuid>.parquet``, the table's Arrow schema from
:data:`junction.store.TABLES`, zstd, row groups of the compactor's size, private modes,
each file written to a temp name and renamed into place. Rows are generated with numpy
in column form (no per-row Python) for the catalog's integrations and ``svc-NNNN`` up to
``services``, spread uniformly over ``days`` days ending two
minutes ago, sorted by time; probes every ``probe_step`` seconds per service over the last
``probe_hours`` hours. Failures (2 % of calls, 1 % of probes) carry an error class and
message, so log search has something to find (``timeout`` in about a third of them).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from integrations.catalog import load_catalog
from junction.store import TABLES
from junction.store.files import create_private, make_private_dir, tmp_name

ROW_GROUP_ROWS = 256_000
"""Rows per row group: what the store's compactor writes."""

US_PER_DAY = 86_400_000_000
ERRORS = (
    ("TimeoutError", "read timeout after 5.0 s", 504),
    ("ServerError", "HTTP 503 Service Unavailable", 503),
    ("RateLimited", "HTTP 429 Too Many Requests (Retry-After: 1)", 429),
)
ACTIONS = ("users.get", "users.create", "tickets.create", "messages.send", "health")


@dataclass(frozen=True)
class BuiltStore:
    """What was written, and how long it took."""

    calls: int
    probes: int
    services: int
    days: int
    files: int
    bytes: int
    seconds: float
    end: str


def service_names(services: int) -> list[str]:
    """The benchmark's integrations: the catalog's (so pages that want a catalog name have
    data), then ``svc-0000`` ... up to ``services`` (names only the store knows)."""
    catalog = load_catalog().names[:services]
    return catalog + [f"svc-{i:04d}" for i in range(services - len(catalog))]


def _strings(rng: np.random.Generator, values: tuple[str, ...] | list[str], n: int) -> pa.Array:
    idx = pa.array(rng.integers(0, len(values), n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(idx, pa.array(values)).cast(pa.string())


def _constant(value: str, n: int) -> pa.Array:
    idx = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(idx, pa.array([value])).cast(pa.string())


def _ids(prefix: str, start: int, n: int) -> pa.Array:
    numbers = pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(pa.scalar(prefix), numbers, "")


def _errors(rng: np.random.Generator, ok: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """error_class and error (null where ok) and the HTTP status of each row."""
    n = len(ok)
    kind = rng.integers(0, len(ERRORS), n, dtype=np.int32)
    mask = pa.array(ok)
    classes = pa.DictionaryArray.from_arrays(pa.array(kind), pa.array([e[0] for e in ERRORS])).cast(
        pa.string()
    )
    messages = pa.DictionaryArray.from_arrays(
        pa.array(kind), pa.array([e[1] for e in ERRORS])
    ).cast(pa.string())
    status = np.where(ok, 200, np.array([e[2] for e in ERRORS], dtype=np.int32)[kind])
    null = pa.nulls(n, pa.string())
    return pc.if_else(mask, null, classes), pc.if_else(mask, null, messages), status


def calls_table(
    rng: np.random.Generator, ts_us: np.ndarray, names: list[str], id_start: int
) -> pa.Table:
    """``calls`` rows at the given times (µs since the epoch, sorted)."""
    n = len(ts_us)
    ok = rng.random(n) >= 0.02
    error_class, error, status = _errors(rng, ok)
    columns = {
        "id": _ids("c", id_start, n),
        "ts": pa.array(ts_us, pa.timestamp("us", tz="UTC")),
        "service": _strings(rng, names, n),
        "action": _strings(rng, ACTIONS, n),
        "method": _strings(rng, ("GET", "POST"), n),
        "path": _strings(rng, ("/api/users/1", "/api/tickets", "/api/messages"), n),
        "status": pa.array(status.astype(np.int32)),
        "ok": pa.array(ok),
        "latency_ms": pa.array(np.round(rng.lognormal(4.0, 0.5, n), 1)),
        "error_class": error_class,
        "error": error,
        "attempts": pa.array(np.where(ok, 1, 3).astype(np.int32)),
        "breaker_state": _constant("closed", n),
        "source": _constant("workflow", n),
        "run_id": pa.nulls(n, pa.string()),
    }
    return pa.table(columns, schema=TABLES["calls"])


def probes_table(
    rng: np.random.Generator, ts_us: np.ndarray, service: pa.Array, id_start: int
) -> pa.Table:
    """``probes`` rows: one per service per sweep."""
    n = len(ts_us)
    ok = rng.random(n) >= 0.01
    error_class, error, status = _errors(rng, ok)
    sweep = pc.binary_join_element_wise(
        pa.scalar("sweep-"), pc.cast(pa.array(ts_us // 1_000_000), pa.string()), ""
    )
    columns = {
        "id": _ids("p", id_start, n),
        "ts": pa.array(ts_us, pa.timestamp("us", tz="UTC")),
        "sweep_id": sweep,
        "service": service,
        "ok": pa.array(ok),
        "status": pa.array(status.astype(np.int32)),
        "latency_ms": pa.array(np.round(rng.lognormal(3.5, 0.4, n), 1)),
        "error_class": error_class,
        "error": error,
        "breaker_state": _constant("closed", n),
    }
    return pa.table(columns, schema=TABLES["probes"])


def write_partition(root: Path, table: str, day: str, tbl: pa.Table) -> Path:
    """One segment in the store's layout: temp name in the partition, then renamed."""
    part_dir = root / table / f"date={day}"
    make_private_dir(part_dir)
    target = part_dir / f"part-{uuid.uuid4().hex}.parquet"
    tmp = part_dir / tmp_name(target.name)
    with create_private(tmp) as fh:
        pq.write_table(tbl, fh, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    tmp.replace(target)
    return target


def _by_day(ts_us: np.ndarray) -> list[tuple[str, slice]]:
    """(``YYYY-MM-DD``, slice) of each UTC day in sorted ``ts_us``."""
    days = ts_us // US_PER_DAY
    out = []
    for day in np.unique(days):
        lo, hi = np.searchsorted(days, [day, day + 1])
        name = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(day))).date().isoformat()
        out.append((name, slice(int(lo), int(hi))))
    return out


def build_store(
    root: Path,
    *,
    rows: int,
    services: int,
    days: int = 10,
    probe_hours: float = 2.0,
    probe_step: float = 30.0,
    seed: int = 11,
    end: datetime | None = None,
) -> BuiltStore:
    """Write the benchmark's store under ``root`` (which must not hold one yet).

    Args:
        root: The store's directory (``<JUNCTION_HOME>/metrics``).
        rows: Call rows.
        services: Integrations (``svc-0000`` ...).
        days: Days the calls span, ending two minutes before ``end``.
        probe_hours: Hours of probes, ending with the calls.
        probe_step: Seconds between two probes of a service.
        seed: Random seed.
        end: The time the history ends (default: now).

    Returns:
        Row and file counts and the seconds it took.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    names = service_names(services)
    stop = (end or datetime.now(UTC)) - timedelta(minutes=2)
    stop_us = int(stop.timestamp() * 1_000_000)
    start_us = stop_us - days * US_PER_DAY
    files: list[Path] = []
    chunk = 2_000_000  # generated and sorted a chunk of time at a time: bounded memory
    parts = max(1, rows // chunk)
    edges = np.linspace(start_us, stop_us, parts + 1).astype(np.int64)
    written = 0
    for i in range(parts):
        n = rows // parts + (1 if i < rows % parts else 0)
        ts = np.sort(rng.integers(edges[i], edges[i + 1], n, dtype=np.int64))
        tbl = calls_table(rng, ts, names, written)
        for day, sl in _by_day(ts):
            files.append(
                write_partition(root, "calls", day, tbl.slice(sl.start, sl.stop - sl.start))
            )
        written += n
    sweeps = np.arange(stop_us - int(probe_hours * 3600e6), stop_us, int(probe_step * 1e6))
    ts = np.repeat(sweeps, services)
    service = pa.array(np.tile(np.array(names, dtype=object), len(sweeps)), pa.string())
    probes = probes_table(rng, ts, service, 0)
    for day, sl in _by_day(ts):
        files.append(
            write_partition(root, "probes", day, probes.slice(sl.start, sl.stop - sl.start))
        )
    built = BuiltStore(
        calls=written,
        probes=len(ts),
        services=services,
        days=days,
        files=len(files),
        bytes=sum(f.stat().st_size for f in files),
        seconds=round(time.perf_counter() - started, 2),
        end=stop.isoformat(),
    )
    (root.parent / "bench-store.json").write_text(json.dumps(asdict(built)))
    return built


def load_built(root: Path) -> BuiltStore | None:
    """The record of a store :func:`build_store` wrote under ``root``, if any."""
    marker = root.parent / "bench-store.json"
    if not marker.exists():
        return None
    return BuiltStore(**json.loads(marker.read_text()))
