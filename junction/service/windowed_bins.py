"""Latency histograms in log-spaced bins and the rollups that merge them.

The cached rollups of :mod:`junction.service.windowed` are :class:`Block` s: per key
(service index * 2 + source: 0 probes, 1 calls) the exact counts, failures, latency sum
and count and newest ``ts``, and the successes' latencies as sparse (key, bin, count)
entries. A bin ``i`` holds latencies in ``(g**(i-1), g**i]`` with
``g = (1 + a) / (1 - a)`` and stands for ``2 g**i / (g + 1)``, within a relative error
``a`` = :data:`RELATIVE_ERROR` of every latency in it; latencies ``<= 0`` go to
:data:`ZERO_BIN` (exactly 0), non-finite ones to :data:`TOP_BIN`. :class:`Interior`
merges blocks into dense per-key histograms and :func:`quantiles` reads the p50/p95
from them with DuckDB's ``quantile_cont`` interpolation. :meth:`RowColumns.metrics` computes the
same rows exactly from raw rows (the live view's, for windows shorter than an hour).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import numpy as np

from junction.service.aggregates import from_epoch_us

RELATIVE_ERROR = 0.01
"""Bound on the relative error of the p50/p95 from the histograms."""

GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LN_GAMMA = math.log(GAMMA)
ZERO_BIN = -(2**31) + 2  # latency <= 0: exactly 0
TOP_BIN = 2**31 - 2  # not finite

BIN_SQL = (
    "CASE WHEN ok AND latency_ms IS NOT NULL THEN CASE "
    f"WHEN NOT isfinite(latency_ms) THEN {TOP_BIN} WHEN latency_ms <= 0 THEN {ZERO_BIN} "
    f"ELSE CAST(ceil(ln(latency_ms) / {LN_GAMMA!r}) AS INTEGER) END END"
)
"""The bin of a row's latency in SQL (``NULL`` unless a success with a latency)."""


@dataclass
class Block:
    """Rollups of some rows: per key (service index * 2 + source) and per key and bin."""

    keys: np.ndarray
    n: np.ndarray
    ok_n: np.ndarray
    fail_n: np.ndarray
    lat_sum: np.ndarray
    lat_n: np.ndarray
    last_us: np.ndarray
    hkeys: np.ndarray
    hbins: np.ndarray
    hcounts: np.ndarray

    @property
    def entries(self) -> int:
        """Histogram entries held (the memory cap counts these)."""
        return len(self.hkeys)


def empty_block() -> Block:
    """Rollups of no rows."""
    i8, f8, i4 = np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.int32)
    return Block(i8, i8, i8, i8, f8, i8, i8, i4, i4, i4)


def concat(blocks: Sequence[Block]) -> Block:
    """The blocks' entries together (keys may repeat: :meth:`Interior.of` sums them);
    no blocks (a window whose edges hold no fine bucket) is :func:`empty_block`."""
    if not blocks:
        return empty_block()
    return Block(
        *(np.concatenate([getattr(b, f) for b in blocks]) for f in Block.__dataclass_fields__)
    )


def bins_of(x: np.ndarray) -> np.ndarray:
    """The bin of each latency (as :data:`BIN_SQL`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.ceil(np.log(x) / LN_GAMMA)
    return np.where(
        ~np.isfinite(x), TOP_BIN, np.where(x <= 0, ZERO_BIN, np.nan_to_num(raw))
    ).astype(np.int64)


def rollup_rows(
    keys: np.ndarray,
    us: np.ndarray,
    okv: np.ndarray,
    failv: np.ndarray,
    has_lat: np.ndarray,
    lat: np.ndarray,
) -> Block:
    """Rows (key, time, ok, failed, has a latency, latency) rolled up per key and bin."""
    c = {"us": us, "okv": okv, "failv": failv, "has_lat": has_lat}
    uniq, inv = np.unique(keys, return_inverse=True)
    size = len(uniq)
    last_us = np.full(size, np.iinfo(np.int64).min, np.int64)
    np.maximum.at(last_us, inv, c["us"].astype(np.int64))
    hist = c["okv"] & c["has_lat"]
    bins = bins_of(lat[hist])
    cells, counts = np.unique(keys[hist] * 2**32 + (bins - ZERO_BIN), return_counts=True)
    return Block(
        keys=uniq,
        n=np.bincount(inv, minlength=size).astype(np.int64),
        ok_n=np.bincount(inv, weights=c["okv"], minlength=size).astype(np.int64),
        fail_n=np.bincount(inv, weights=c["failv"], minlength=size).astype(np.int64),
        lat_sum=np.bincount(inv, weights=lat, minlength=size),
        lat_n=np.bincount(inv, weights=c["has_lat"], minlength=size).astype(np.int64),
        last_us=last_us,
        hkeys=(cells >> 32).astype(np.int32),
        hbins=((cells & (2**32 - 1)) + ZERO_BIN).astype(np.int32),
        hcounts=counts.astype(np.int32),
    )


@dataclass
class Interior:
    """Rollups per key over some buckets, the histograms dense (``size x width`` counts)."""

    size: int
    n: np.ndarray
    ok_n: np.ndarray
    fail_n: np.ndarray
    lat_sum: np.ndarray
    lat_n: np.ndarray
    last_us: np.ndarray
    bmin: int
    width: int
    dense: np.ndarray

    @classmethod
    def of(cls, block: Block, size: int, like: Interior | None = None) -> Interior:
        """Merge a block's rows per key; ``like``: on its bins when they hold the block's."""
        keys = block.keys

        def per_key(values: np.ndarray) -> np.ndarray:
            return np.bincount(keys, weights=values, minlength=size)

        last_us = np.full(size, np.iinfo(np.int64).min, np.int64)
        np.maximum.at(last_us, keys, block.last_us)
        regular = block.hbins[(block.hbins != ZERO_BIN) & (block.hbins != TOP_BIN)]
        bmin, bmax = (int(regular.min()), int(regular.max())) if len(regular) else (0, 0)
        if like is not None and like.bmin <= bmin and bmax <= like.bmin + like.width - 3:
            bmin, width = like.bmin, like.width
        else:
            if like is not None and like.width > 2:
                bmin = min(bmin, like.bmin)
                bmax = max(bmax, like.bmin + like.width - 3)
            width = bmax - bmin + 3  # [zero, bmin .. bmax, top]
        col = columns_of(block.hbins, bmin, width)
        cells = block.hkeys.astype(np.int64) * width + col
        dense = np.bincount(cells, weights=block.hcounts, minlength=size * width)
        return cls(
            size, per_key(block.n), per_key(block.ok_n), per_key(block.fail_n),
            per_key(block.lat_sum), per_key(block.lat_n), last_us, bmin, width,
            dense.astype(np.int64),
        )  # fmt: skip

    def grown(self, size: int) -> Interior:
        """The same rollups over more keys (new services have none)."""
        extra = size - self.size

        def pad(a: np.ndarray, fill: float = 0) -> np.ndarray:
            return np.concatenate([a, np.full(extra * (len(a) // self.size), fill, a.dtype)])

        return Interior(
            size, pad(self.n), pad(self.ok_n), pad(self.fail_n), pad(self.lat_sum),
            pad(self.lat_n), pad(self.last_us, np.iinfo(np.int64).min), self.bmin, self.width,
            pad(self.dense),
        )  # fmt: skip

    def plus(self, block: Block) -> Interior:
        """These rollups and a block's (keys below :attr:`size`) together, on bins that
        hold both."""
        both = Interior.of(block, self.size, like=self)
        return Interior(
            self.size, self.n + both.n, self.ok_n + both.ok_n, self.fail_n + both.fail_n,
            self.lat_sum + both.lat_sum, self.lat_n + both.lat_n,
            np.maximum(self.last_us, both.last_us), both.bmin, both.width,
            self.rebinned(both.bmin, both.width) + both.dense,
        )  # fmt: skip

    def rebinned(self, bmin: int, width: int) -> np.ndarray:
        """The dense histograms on a wider bin range."""
        if (bmin, width) == (self.bmin, self.width):
            return self.dense
        grid = np.zeros((self.size, width), np.int64)
        old = self.dense.reshape(self.size, self.width)
        shift = self.bmin - bmin
        grid[:, 0] = old[:, 0]
        grid[:, -1] = old[:, -1]
        grid[:, 1 + shift : 1 + shift + self.width - 2] = old[:, 1:-1]
        return grid.reshape(-1)


def columns_of(bins: np.ndarray, bmin: int, width: int) -> np.ndarray:
    """Dense column of each bin: 0 for zero latency, ``width - 1`` for non-finite."""
    return np.where(
        bins == ZERO_BIN,
        0,
        np.where(bins == TOP_BIN, width - 1, bins.astype(np.int64) - bmin + 1),
    )


def quantiles(interior: Interior, edge: Interior) -> tuple[np.ndarray, np.ndarray]:
    """Per key, the p50 and p95 (``quantile_cont``'s interpolation) of both histograms."""
    dense = interior.rebinned(edge.bmin, edge.width) + edge.dense
    return quantiles_dense(dense.reshape(interior.size, edge.width), edge.bmin)


def quantiles_dense(dense: np.ndarray, bmin: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``dense`` (keys x ``[zero, bmin .., top]`` counts), the p50 and p95."""
    size, width = dense.shape
    cum = np.cumsum(dense, axis=1)
    total = cum[:, -1]
    values = np.empty(width)
    values[0], values[-1] = 0.0, math.inf
    values[1:-1] = 2.0 * GAMMA ** np.arange(bmin, bmin + width - 2) / (GAMMA + 1.0)
    # Rows made increasing across keys: one search finds every key's rank.
    big = int(total.max()) + 1 if size else 1
    flat = (cum + (np.arange(size, dtype=np.int64) * big)[:, None]).reshape(-1)
    base = np.arange(size, dtype=np.int64)
    out = []
    for q in (0.5, 0.95):
        h = (total - 1) * q
        lo = np.floor(h)
        hi = np.minimum(lo + 1, total - 1)
        pos_lo = np.searchsorted(flat, base * big + lo.astype(np.int64), side="right")
        pos_hi = np.searchsorted(flat, base * big + hi.astype(np.int64), side="right")
        v_lo = values[np.clip(pos_lo - base * width, 0, width - 1)]
        v_hi = values[np.clip(pos_hi - base * width, 0, width - 1)]
        frac = h - lo
        with np.errstate(invalid="ignore"):
            est = np.where(frac == 0, v_lo, v_lo + frac * (v_hi - v_lo))
        out.append(np.where(total > 0, est, np.nan))
    return out[0], out[1]


def blocks_of(idx: np.ndarray, cols: dict[str, np.ndarray]) -> dict[int, Block]:
    """A rollup statement's result (``windowed_sql``: its columns, the service indices)
    as blocks by bucket."""
    order = np.argsort(cols["bucket"], kind="stable")
    cols = {c: v[order] for c, v in cols.items()}
    keys = idx[order] * 2 + cols["src"]
    buckets = cols["bucket"]
    whole = cols["whole"].astype(bool)
    bins = cols["bin"]
    out: dict[int, Block] = {}
    bounds = np.flatnonzero(np.diff(buckets)) + 1
    for sl in np.split(np.arange(len(buckets)), bounds):
        agg = sl[whole[sl]]
        hist = sl[~whole[sl] & ~np.isnan(bins[sl].astype(np.float64))]

        def col(name: str, dtype: Any, rows: np.ndarray = agg) -> np.ndarray:
            return np.asarray(cols[name][rows], dtype=dtype)

        out[int(buckets[sl[0]])] = Block(
            keys=keys[agg],
            n=col("n", np.int64),
            ok_n=col("ok_n", np.int64),
            fail_n=col("fail_n", np.int64),
            lat_sum=np.nan_to_num(col("lat_sum", np.float64)),
            lat_n=col("lat_n", np.int64),
            last_us=col("last_us", np.int64),
            hkeys=keys[hist].astype(np.int32),
            hbins=bins[hist].astype(np.int32),
            hcounts=col("ok_n", np.int32, hist),
        )
    return out


def answer_rows(
    interior: Interior, edge: Block, names: Sequence[str], index: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The metrics rows of ``names`` (``index``: their keys' service indices), by service
    then source: the interior's rollups and the edge's together."""
    size = 2 * len(index)
    if interior.size != size:  # the edges named a new service
        interior = interior.grown(size)
    both = Interior.of(edge, size, like=interior)
    n = interior.n + both.n
    ok_n = interior.ok_n + both.ok_n
    fail_n = interior.fail_n + both.fail_n
    lat_sum = interior.lat_sum + both.lat_sum
    lat_n = interior.lat_n + both.lat_n
    last_us = np.maximum(interior.last_us, both.last_us)
    p50, p95 = quantiles(interior, both)
    out = []
    for name in sorted(set(names)):
        i = index.get(name)
        if i is None:
            continue
        for src in (1, 0):  # 'calls' sorts before 'probes'
            k = 2 * i + src
            if n[k] == 0:
                continue
            out.append(
                {
                    "service": name,
                    "source": ("probes", "calls")[src],
                    "requests": int(n[k]),
                    "failures": int(fail_n[k]),
                    "success_rate": ok_n[k] / n[k],
                    "p50_latency_ms": num(p50[k]),
                    "p95_latency_ms": num(p95[k]),
                    "mean_latency_ms": lat_sum[k] / lat_n[k] if lat_n[k] else None,
                    "last_at": from_epoch_us(int(last_us[k])),
                }
            )
    return out


def num(value: float) -> float | None:
    """A percentile for JSON: ``None`` for NaN (no successes with a latency)."""
    return None if math.isnan(value) else float(value)


class NameIndex:
    """Service names numbered in the order first seen."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}

    def columns(self, rows: Sequence[tuple[int, str, int, Any, Any]]) -> RowColumns:
        """Raw rows ``(ts in epoch us, service, source, ok, latency)`` as arrays."""
        index = self._index
        for _, name, _, _, _ in rows:
            if name not in index:
                index[name] = len(self.names)
                self.names.append(name)
        us, svc, src, ok, lat = zip(*rows, strict=True)
        count = len(rows)
        return RowColumns(
            np.asarray(us, np.int64),
            np.fromiter((index[s] for s in svc), np.int64, count),
            np.asarray(src, np.int64),
            np.fromiter((v is True for v in ok), bool, count),
            np.fromiter((v is False for v in ok), bool, count),
            np.fromiter((v is not None for v in lat), bool, count),
            np.fromiter((0.0 if v is None else float(v) for v in lat), np.float64, count),
        )


@dataclass
class RowColumns:
    """Raw rows as arrays: time (epoch us), service number, source (0 probes, 1 calls),
    ok true, ok false, has a latency, the latency (0 when none)."""

    us: np.ndarray
    svc: np.ndarray
    src: np.ndarray
    okv: np.ndarray
    failv: np.ndarray
    has: np.ndarray
    lat: np.ndarray

    @classmethod
    def merged(cls, parts: Sequence[RowColumns], keep: int | None) -> RowColumns:
        """The parts as one, without the rows older than ``keep`` (epoch us)."""
        fields = RowColumns.__dataclass_fields__
        if len(parts) == 1 and keep is None:
            return parts[0]
        if not parts:
            i8, b = np.zeros(0, np.int64), np.zeros(0, bool)
            return cls(i8, i8, i8, b, b, b, np.zeros(0, np.float64))
        joined = cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))
        if keep is None:
            return joined
        mask = joined.us >= keep
        return cls(*(getattr(joined, f)[mask] for f in fields))

    def metrics(
        self, services: Sequence[str], names: Iterable[str], since_us: int
    ) -> list[dict[str, Any]] | None:
        """The exact query's metrics rows of the rows ``ts >= since_us`` of ``names``
        (``services``: the names of the service numbers), by service then source.

        As the query: every row counts (the monitor's own probe calls too), failures are
        ``ok`` false, the percentiles are ``quantile_cont``'s over successes with a
        latency, the mean over every latency. ``None`` when a latency is not finite
        (DuckDB orders NaN its own way): read those exactly.
        """
        picked = set(names)
        wanted = np.array([name in picked for name in services], bool)
        mask = (self.us >= since_us) & wanted[self.svc]
        if not np.isfinite(self.lat[mask]).all():
            return None
        svc, src = self.svc[mask], self.src[mask]
        present = np.unique(svc)
        ordered = sorted(present.tolist(), key=lambda i: services[i])
        rank = np.zeros(len(services) + 1, np.int64)
        rank[ordered] = np.arange(len(ordered))
        # Key order is the answer's: by service, then 'calls' (source 1) before 'probes'.
        key = rank[svc] * 2 + 1 - src
        size = 2 * len(ordered)
        okv, failv, has, lat = self.okv[mask], self.failv[mask], self.has[mask], self.lat[mask]
        n = np.bincount(key, minlength=size)
        ok_n = np.bincount(key, weights=okv, minlength=size)
        fail_n = np.bincount(key, weights=failv, minlength=size)
        lat_sum = np.bincount(key, weights=lat, minlength=size)
        lat_n = np.bincount(key, weights=has, minlength=size)
        last_us = np.full(size, np.iinfo(np.int64).min, np.int64)
        np.maximum.at(last_us, key, self.us[mask])
        hist = okv & has
        hkey = key[hist]
        # Sorted by key, then latency: by latency first, then a stable sort of the keys
        # (a radix sort while they fit 16 bits; 6x faster than lexsort on 34 k rows).
        by_lat = np.argsort(lat[hist])
        narrow = hkey[by_lat].astype(np.int16) if size < 2**15 else hkey[by_lat]
        values = lat[hist][by_lat[np.argsort(narrow, kind="stable")]]
        per_key = np.bincount(hkey, minlength=size)
        starts = np.concatenate([[0], np.cumsum(per_key)[:-1]]).astype(np.int64)
        keys = np.flatnonzero(n)
        p50 = _quantiles_cont(values, starts[keys], per_key[keys], 0.5)
        p95 = _quantiles_cont(values, starts[keys], per_key[keys], 0.95)
        # Per row only the dicts: every number computed by numpy above.
        last_at = [t.replace(tzinfo=UTC) for t in last_us[keys].astype("datetime64[us]").tolist()]
        cols = zip(
            keys.tolist(), n[keys].tolist(), fail_n[keys].tolist(), ok_n[keys].tolist(),
            lat_sum[keys].tolist(), lat_n[keys].tolist(), p50, p95, last_at, strict=True,
        )  # fmt: skip
        return [
            {
                "service": services[ordered[k // 2]],
                "source": "calls" if k % 2 == 0 else "probes",
                "requests": int(count),
                "failures": int(fails),
                "success_rate": float(oks / count),
                "p50_latency_ms": a,
                "p95_latency_ms": b,
                "mean_latency_ms": float(total / lats) if lats else None,
                "last_at": at,
            }
            for k, count, fails, oks, total, lats, a, b, at in cols
        ]


def _quantiles_cont(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray, q: float
) -> list[float | None]:
    """Per run ``values[start : start + count]`` (sorted), DuckDB's ``quantile_cont``
    (``None``: an empty run): the value at rank ``h = (count - 1) * q`` interpolated
    between ``floor(h)`` and ``ceil(h)``."""
    h = (counts - 1) * q
    lo, hi = np.floor(h), np.ceil(h)
    some = counts > 0
    top = max(len(values) - 1, 0)
    at_lo = np.clip(starts + lo.astype(np.int64), 0, top)
    at_hi = np.clip(starts + hi.astype(np.int64), 0, top)
    if not len(values):
        return [None] * len(counts)
    v_lo, v_hi = values[at_lo], values[at_hi]
    with np.errstate(invalid="ignore"):
        est = np.where(lo == hi, v_lo, v_lo + (v_hi - v_lo) * (h - lo))
    return [float(v) if ok else None for v, ok in zip(est.tolist(), some.tolist(), strict=True)]
