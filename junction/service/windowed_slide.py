"""A window of fixed length kept current by the rows that enter and leave it.

A :class:`Slide` holds, for one window length, the merged rollups of every row from the
window's start on: per key (service index * 2 + source) the exact counts, failures,
latency sum and count and newest ``ts``, and the successes' latencies as a dense histogram
in the log-spaced bins of :mod:`junction.service.windowed_bins`; and each key's answer row
already rendered. Moving the window to a later start subtracts the rows that left it (the
store's rows at the window's start, held as arrays: :class:`RowArrays`) and adds the rows
the live view gave since; only the keys they touch get new percentiles and are rendered
again. A read then costs what changed since the previous one, with no store read: at 1,000
services a day's window moves and renders in about a millisecond.

Counts, failures and ``last_at`` stay exact; the latency sum is kept by adding and
subtracting (exact up to float summation order, as the mean of merged buckets is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from junction.service.aggregates import from_epoch_us
from junction.service.windowed_bins import (
    TOP_BIN,
    ZERO_BIN,
    Block,
    Interior,
    bins_of,
    columns_of,
    num,
    quantiles_dense,
    rollup_rows,
)

_SOURCES = ("probes", "calls")
_NEVER = np.iinfo(np.int64).min


@dataclass
class RowArrays:
    """Raw rows as arrays: key (service index * 2 + source), time (epoch us), ok true,
    ok false, has a latency, the latency (0 when none); ordered by time when read so."""

    keys: np.ndarray
    us: np.ndarray
    okv: np.ndarray
    failv: np.ndarray
    has: np.ndarray
    lat: np.ndarray

    @classmethod
    def empty(cls) -> RowArrays:
        """No rows."""
        i8, b = np.zeros(0, np.int64), np.zeros(0, bool)
        return cls(i8, i8, b, b, b, np.zeros(0, np.float64))

    @classmethod
    def joined(cls, parts: Sequence[RowArrays]) -> RowArrays:
        """The parts' rows one after the other."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def take(self, which: np.ndarray | slice) -> RowArrays:
        """The rows picked by a mask or a slice."""
        return RowArrays(*(getattr(self, f.name)[which] for f in fields(self)))

    def between(self, lo: int, hi: int) -> RowArrays:
        """The rows with ``lo <= us < hi`` (the rows ordered by time)."""
        i, j = np.searchsorted(self.us, [lo, hi], side="left")
        return self.take(slice(int(i), int(j)))

    def rollup(self) -> Block:
        """The rows rolled up per key and bin."""
        return rollup_rows(self.keys, self.us, self.okv, self.failv, self.has, self.lat)


class Slide:
    """The rollups of a window ``[since, now]`` of one length, moved along by row changes.

    Args:
        merged: Every row of the window at its build, merged.
        since_us: The window's start at the build.
        live_from_us: Rows from here on come from the live view only (the build took those
            it held; :meth:`move` adds the later ones); rows before, from the store only.
        seq: The live view's batches the build took (later ones are added by :meth:`move`).
        start: The store's rows from ``since_us`` on (ordered by time), to subtract as they
            leave the window; held until ``start_until_us``.
        start_until_us: The end of the rows held in ``start``.
    """

    def __init__(
        self,
        merged: Interior,
        since_us: int,
        live_from_us: int,
        seq: int,
        start: RowArrays,
        start_until_us: int,
    ) -> None:
        self.since_us = since_us
        self.live_from_us = live_from_us
        self.seq = seq
        self.start = start
        self.start_until_us = start_until_us
        self.size = merged.size
        self.n = _ints(merged.n)
        self.ok_n = _ints(merged.ok_n)
        self.fail_n = _ints(merged.fail_n)
        self.lat_n = _ints(merged.lat_n)
        self.lat_sum = np.asarray(merged.lat_sum, np.float64).copy()
        self.last_us = merged.last_us.copy()
        self.bmin, self.width = merged.bmin, merged.width
        self.dense = merged.dense.reshape(self.size, self.width).astype(np.int64)
        self.p50 = np.full(self.size, np.nan)
        self.p95 = np.full(self.size, np.nan)
        self._stale = np.ones(self.size, bool)
        self._rendered: list[str | None] = [None] * self.size

    def reaches(self, since_us: int) -> bool:
        """Whether the window can move to start at ``since_us`` (its rows are held)."""
        return self.since_us <= since_us <= self.start_until_us

    def extend(self, rows: RowArrays, until_us: int) -> None:
        """More of the store's rows after those held (from ``start_until_us`` to ``until_us``)."""
        self.start = RowArrays.joined([self.start, rows])
        self.start_until_us = until_us

    def move(self, since_us: int, arrivals: RowArrays, seq: int) -> bool:
        """Start the window at ``since_us``; add the live view's rows given since the last move.

        Returns:
            ``False`` when it cannot (a latency is not finite: its sum would not be
            subtractable): build it again.
        """
        leaving = self.start.between(self.since_us, since_us)
        entering = arrivals.take(arrivals.us >= self.live_from_us)
        if not (np.isfinite(leaving.lat).all() and np.isfinite(entering.lat).all()):
            return False
        self._apply(entering, 1)
        self._apply(leaving, -1)
        self.start = self.start.between(since_us, self.start_until_us)
        self.since_us = since_us
        self.seq = seq
        return True

    def _apply(self, rows: RowArrays, sign: int) -> None:
        if not len(rows.keys):
            return
        need = int(rows.keys.max()) + 1
        if need > self.size:
            self._grow(need)
        k, size = rows.keys, self.size
        self.n += sign * np.bincount(k, minlength=size)
        self.ok_n += sign * np.bincount(k[rows.okv], minlength=size)
        self.fail_n += sign * np.bincount(k[rows.failv], minlength=size)
        self.lat_n += sign * np.bincount(k[rows.has], minlength=size)
        self.lat_sum += sign * np.bincount(k, weights=rows.lat, minlength=size)
        if sign > 0:
            np.maximum.at(self.last_us, k, rows.us)
        else:  # a key with no rows left has no newest row (the next one sets it)
            self.last_us[self.n == 0] = _NEVER
        hist = rows.okv & rows.has
        bins = bins_of(rows.lat[hist])
        regular = bins[(bins != ZERO_BIN) & (bins != TOP_BIN)]
        if len(regular):
            lo, hi = int(regular.min()), int(regular.max())
            if lo < self.bmin or hi > self.bmin + self.width - 3:
                self._rebin(min(lo, self.bmin), max(hi, self.bmin + self.width - 3))
        np.add.at(self.dense, (k[hist], columns_of(bins, self.bmin, self.width)), sign)
        touched = np.unique(k)
        self._stale[touched] = True
        for key in touched.tolist():
            self._rendered[key] = None

    def _grow(self, size: int) -> None:
        """More keys (new services have no rows)."""
        extra = size - self.size
        for name in ("n", "ok_n", "fail_n", "lat_n", "lat_sum", "p50", "p95"):
            old = getattr(self, name)
            fill = np.nan if name in ("p50", "p95") else 0
            setattr(self, name, np.concatenate([old, np.full(extra, fill, old.dtype)]))
        self.last_us = np.concatenate([self.last_us, np.full(extra, _NEVER, np.int64)])
        self._stale = np.concatenate([self._stale, np.ones(extra, bool)])
        self.dense = np.concatenate([self.dense, np.zeros((extra, self.width), np.int64)])
        self._rendered.extend([None] * extra)
        self.size = size

    def _rebin(self, bmin: int, bmax: int) -> None:
        """The histograms on the bins ``bmin .. bmax`` (a latency outside the old ones)."""
        width = bmax - bmin + 3
        grid = np.zeros((self.size, width), np.int64)
        shift = self.bmin - bmin
        grid[:, 0] = self.dense[:, 0]
        grid[:, -1] = self.dense[:, -1]
        grid[:, 1 + shift : 1 + shift + self.width - 2] = self.dense[:, 1:-1]
        self.dense, self.bmin, self.width = grid, bmin, width
        self._stale[:] = True

    def rendered(
        self,
        names: Sequence[str],
        index: Mapping[str, int],
        render: Callable[[dict[str, Any]], str],
    ) -> list[str]:
        """Each row of ``names`` (by service, then source) as ``render`` makes it.

        A row is rendered again only when its key's rows changed since.
        """
        stale = np.flatnonzero(self._stale)
        if len(stale):
            p50, p95 = quantiles_dense(self.dense[stale], self.bmin)
            self.p50[stale], self.p95[stale] = p50, p95
            self._stale[stale] = False
        out = []
        for name in sorted(set(names)):
            i = index.get(name)
            if i is None:
                continue
            for src in (1, 0):  # 'calls' sorts before 'probes'
                k = 2 * i + src
                if k >= self.size or self.n[k] <= 0:
                    continue
                text = self._rendered[k]
                if text is None:
                    text = self._rendered[k] = render(self._row(name, src, k))
                out.append(text)
        return out

    def _row(self, name: str, src: int, k: int) -> dict[str, Any]:
        n, lat_n = int(self.n[k]), int(self.lat_n[k])
        return {
            "service": name,
            "source": _SOURCES[src],
            "requests": n,
            "failures": int(self.fail_n[k]),
            "success_rate": float(self.ok_n[k]) / n,
            "p50_latency_ms": num(float(self.p50[k])),
            "p95_latency_ms": num(float(self.p95[k])),
            "mean_latency_ms": float(self.lat_sum[k]) / lat_n if lat_n else None,
            "last_at": from_epoch_us(int(self.last_us[k])),
        }


def _ints(values: np.ndarray) -> np.ndarray:
    """Counts summed as floats (``bincount`` weights) back to integers."""
    return np.rint(values).astype(np.int64)


__all__ = ["RowArrays", "Slide"]
