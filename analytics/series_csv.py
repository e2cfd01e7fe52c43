"""Reading a ``timestamp,value`` CSV for the streaming detector, in chunks.

The file is parsed a chunk at a time into two compact arrays (8 bytes per timestamp
and per value), never as one DataFrame of strings: 5 M rows take ~80 MB.

Decisions on imperfect input (``junction analytics detect --help`` says the same):

- rows out of timestamp order are sorted by timestamp (stable), with a warning;
- duplicated timestamps (a DST change repeating an hour, a collector sending twice)
  are kept, with a warning: by default every row, in file order (the detector sees
  them one after the other, as NAB scores its own files); ``first``, ``last`` or
  ``mean`` keeps one value per timestamp;
- empty or NaN values are dropped, with a warning naming the rows (a gap in monitoring
  data is normal; a made-up value would not be);
- a non-numeric or infinite value, an unparsable timestamp, wrong columns, a missing or
  empty file, fewer than :data:`MIN_POINTS` points: :class:`SeriesInputError` with one
  line naming the file and the row (rows count the header as row 1, like a
  spreadsheet).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

MIN_POINTS = 2
"""Fewest points with a value a file needs."""
CHUNK_ROWS = 50_000
"""Rows parsed at a time."""

Duplicates = Literal["keep", "first", "last", "mean"]
DUPLICATE_POLICIES: tuple[str, ...] = get_args(Duplicates)
_MISSING = ("", "nan", "na", "null", "none")


class SeriesInputError(ValueError):
    """A ``timestamp,value`` input that cannot be scored; the message is for the user."""


@dataclass
class Series:
    """A series ready for the detector: time-ordered timestamps and finite values.

    Attributes:
        timestamps: ``datetime64[ns]`` (naive; UTC when the file gave time zones).
        values: float64, finite.
        warnings: What was changed in the input, one line each.
    """

    timestamps: np.ndarray
    values: np.ndarray
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.values.size)

    def points(self, block: int = 65_536) -> Iterator[tuple[float, float]]:
        """``(seconds since the epoch, value)`` per point, in order, converted a block at
        a time (a list of Python floats for 5 M points would be ~300 MB)."""
        for start in range(0, len(self), block):
            stop = start + block
            seconds = self.timestamps[start:stop].astype(np.int64) / 1e9
            yield from zip(seconds.tolist(), self.values[start:stop].tolist(), strict=True)

    def to_frame(self) -> pd.DataFrame:
        """``timestamp, value`` as a DataFrame."""
        return pd.DataFrame({"timestamp": self.timestamps, "value": self.values})


def _chunks(p: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        reader = pd.read_csv(
            p, dtype=str, keep_default_na=False, skipinitialspace=True, chunksize=chunk_rows
        )
        with reader:
            yield from reader
    except pd.errors.EmptyDataError:
        raise SeriesInputError(f"{p}: empty file (expected a header timestamp,value)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SeriesInputError(f"{p}: not a readable CSV ({reason})") from None


def _columns(p: Path, chunk: pd.DataFrame) -> tuple[str, str]:
    columns = {str(c).strip().lower(): c for c in chunk.columns}
    if "timestamp" not in columns or "value" not in columns:
        found = ", ".join(str(c) for c in chunk.columns) or "none"
        raise SeriesInputError(f"{p}: expected columns timestamp,value; found: {found}")
    return columns["timestamp"], columns["value"]


def _values(p: Path, text: pd.Series, first_row: int) -> np.ndarray:
    """float64 values of a chunk (NaN where empty); an error for anything else."""
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    missing = text.str.lower().isin(_MISSING).to_numpy()
    bad = np.isnan(values) & ~missing
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        count = int(bad.sum())
        more = f" ({count} such rows in rows {first_row}-{first_row + len(text) - 1})"
        raise SeriesInputError(
            f"{p}: row {first_row + i}: value {text.iloc[i]!r} is not a number"
            + (more if count > 1 else "")
        )
    infinite = np.isinf(values)
    if infinite.any():
        i = int(np.flatnonzero(infinite)[0])
        raise SeriesInputError(f"{p}: row {first_row + i}: value {text.iloc[i]!r} is not finite")
    return values


def _timestamps(p: Path, text: pd.Series, first_row: int) -> tuple[np.ndarray, bool]:
    """Naive ``datetime64[ns]`` of a chunk (UTC if zoned) and whether it had a zone."""
    stamps: pd.Series | None = None
    try:  # ISO 8601 parses vectorised; anything else falls back to per-value inference
        stamps = pd.to_datetime(text, errors="raise", format="ISO8601")
    except (ValueError, TypeError):
        stamps = None
    if stamps is None:
        try:
            stamps = pd.to_datetime(text, errors="coerce", format="mixed")
        except (ValueError, TypeError) as exc:
            raise SeriesInputError(f"{p}: timestamps cannot be read together ({exc})") from None
    if stamps.isna().any():
        i = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise SeriesInputError(
            f"{p}: row {first_row + i}: timestamp {text.iloc[i]!r} is not a date/time"
        )
    zoned = isinstance(stamps.dtype, pd.DatetimeTZDtype)
    if zoned:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[ns]"), zoned


def _rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:5])
    return shown + (", ..." if len(rows) > 5 else "")


def _dedupe(ts: np.ndarray, values: np.ndarray, how: Duplicates) -> tuple[np.ndarray, np.ndarray]:
    """One value per timestamp of a sorted series: the first, the last or the mean."""
    starts = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1]])
    if how == "first":
        return ts[starts], values[starts]
    if how == "last":
        ends = np.r_[starts[1:], ts.size] - 1
        return ts[ends], values[ends]
    sums = np.add.reduceat(values, starts)
    counts = np.diff(np.r_[starts, ts.size])
    return ts[starts], sums / counts


def read_series_csv(
    path: str | Path, *, duplicates: Duplicates = "keep", chunk_rows: int = CHUNK_ROWS
) -> Series:
    """Read and check a ``timestamp,value`` CSV (decisions in the module docstring).

    Args:
        path: The CSV file.
        duplicates: What to keep of rows sharing a timestamp: ``keep`` (every row, in
            file order), ``first``, ``last`` or ``mean``.
        chunk_rows: Rows parsed at a time.

    Returns:
        The series, sorted by timestamp, with the warnings.

    Raises:
        SeriesInputError: On anything the detector cannot score, with a one-line message.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}")
    p = Path(path)
    if not p.exists():
        raise SeriesInputError(f"{p}: no such file")
    if p.is_dir():
        raise SeriesInputError(f"{p}: is a directory, expected a CSV file")
    ts_parts: list[np.ndarray] = []
    value_parts: list[np.ndarray] = []
    row_parts: list[np.ndarray] = []
    nan_rows: list[np.ndarray] = []
    zones: set[bool] = set()
    first_row = 2  # the header is row 1
    cols: tuple[str, str] | None = None
    for chunk in _chunks(p, chunk_rows):
        cols = cols or _columns(p, chunk)
        if not len(chunk):
            continue
        ts_text = chunk[cols[0]].astype(str).str.strip()
        values = _values(p, chunk[cols[1]].astype(str).str.strip(), first_row)
        stamps, zoned = _timestamps(p, ts_text, first_row)
        zones.add(zoned)
        if len(zones) > 1:
            raise SeriesInputError(
                f"{p}: timestamps mix time zones and none (rows {first_row}-"
                f"{first_row + len(chunk) - 1} differ from the rows before)"
            )
        rows = np.arange(first_row, first_row + len(chunk), dtype=np.int64)
        keep = ~np.isnan(values)
        nan_rows.append(rows[~keep])
        ts_parts.append(stamps[keep])
        value_parts.append(values[keep])
        row_parts.append(rows[keep])
        first_row += len(chunk)
    if cols is None or first_row == 2:
        raise SeriesInputError(f"{p}: no data rows (not enough data to score)")
    ts = np.concatenate(ts_parts) if ts_parts else np.array([], dtype="datetime64[ns]")
    values = np.concatenate(value_parts) if value_parts else np.array([], dtype="float64")
    rows = np.concatenate(row_parts) if row_parts else np.array([], dtype=np.int64)
    warnings: list[str] = []
    dropped = np.concatenate(nan_rows) if nan_rows else np.array([], dtype=np.int64)
    if dropped.size:
        warnings.append(
            f"dropped {dropped.size} rows with an empty or NaN value (rows {_rows_text(dropped)})"
        )
    if ts.size > 1 and bool((ts[1:] < ts[:-1]).any()):
        warnings.append("rows were not in timestamp order: sorted them by timestamp")
        order = np.argsort(ts, kind="stable")
        ts, values, rows = ts[order], values[order], rows[order]
    repeated = np.flatnonzero(ts[1:] == ts[:-1]) + 1 if ts.size > 1 else np.array([], dtype=int)
    if repeated.size:
        first = ts[repeated[0]]
        where = rows[ts == first]
        n_stamps = int(np.unique(ts[repeated]).size)
        what = {
            "keep": "kept every row in file order (--duplicates first|last|mean keeps one)",
            "first": "kept the first value of each",
            "last": "kept the last value of each",
            "mean": "kept the mean of each",
        }[duplicates]
        warnings.append(
            f"{n_stamps} timestamp(s) appear more than once, {repeated.size} extra row(s) "
            f"(first: {pd.Timestamp(first)} at rows {_rows_text(where)}): {what}"
        )
        if duplicates != "keep":
            ts, values = _dedupe(ts, values, duplicates)
    if values.size < MIN_POINTS:
        raise SeriesInputError(
            f"{p}: not enough data: {values.size} point(s) with a value; "
            f"the detector needs at least {MIN_POINTS}"
        )
    return Series(ts, values, warnings)


__all__ = [
    "CHUNK_ROWS",
    "DUPLICATE_POLICIES",
    "MIN_POINTS",
    "Duplicates",
    "Series",
    "SeriesInputError",
    "read_series_csv",
]
