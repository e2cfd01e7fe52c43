"""Summaries of the text a log search matches, per store segment, so a search skips the
segments (and day partitions) that cannot hold its text without reading their rows.

A segment's summary holds, for each text column log search matches, the distinct values
of that column in the segment (the column's Parquet dictionaries: reading them costs a
fraction of scanning the rows). A search asks which columns of which segments hold a
value containing its text (matched by DuckDB with the same ``ILIKE`` the row scan uses,
so the answer is exact) and reads only those; a day none of whose segments can match
is not read at all.

A column is left out of a summary (and so always scanned) when it has too many distinct
values to be worth it (ids in paths: :data:`MAX_VALUES`, :data:`MAX_RATIO`) or when the
redactor changes any of its values: a secret a defective writer stored in clear is never
copied into a summary, and the rows holding it are still scanned, so the result is the
full scan's.

Segments are immutable (compaction and late rows write new files), so a summary is keyed
by the segment's path, size and modification time and is never stale. Summaries are kept
in process memory (``junction serve``) and under the store's ``_logindex/`` directory
(private, written atomically) for short processes such as the CLI; one whose segment is
gone is removed when its day is summarised again.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from integrations.redaction import redact
from junction.store import create_private, make_private_dir
from junction.store.files import tmp_name

if TYPE_CHECKING:  # imported where used: writers never load DuckDB
    import duckdb

INDEX_DIR = "_logindex"
"""The summaries' directory under the store's root."""
MAX_VALUES = 20_000
"""A column with more distinct values than this in one segment is not summarised."""
MAX_RATIO = 0.25
"""Nor one whose distinct values exceed this share of the segment's rows (ids in paths),
once it has more than :data:`SMALL` of them."""
SMALL = 1_000
DICT_BYTES = 128 * 1024
"""Nor one whose Parquet dictionary page (compressed) is larger than this in some row
group: it is known from the file's footer, without reading the column."""
MEMORY_ENTRIES = 20_000
"""Summaries kept in process memory (least recently used dropped first)."""
_VERSION = 2

TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "calls": ("service", "action", "method", "path", "status", "error_class", "error", "run_id"),
    "alerts": ("service", "rule", "severity", "state", "message", "fingerprint"),
    "workflow_runs": ("workflow", "status", "error", "run_id"),
}
"""Per table, the columns log search matches its text against."""


@dataclass(frozen=True)
class Segment:
    """One segment file as listed: its path, size and modification time (the key)."""

    path: Path
    size: int
    mtime_ns: int


Summary = dict[str, tuple[str, ...] | str | None]
"""Per text column, its distinct values, or (a string) the ASCII characters its values
use when they are too many, or ``None``: not summarised, always scanned."""

_memory: OrderedDict[tuple[str, int, int], Summary] = OrderedDict()
_memory_lock = threading.Lock()
_duck: duckdb.DuckDBPyConnection | None = None
"""The in-memory DuckDB the values are matched in (a cursor per search: thread-safe)."""
_duck_pid = [0]


def list_segments(table_dir: Path, day_dir: str) -> list[Segment]:
    """The Parquet segments of one day partition (``[]`` if it is gone)."""
    out: list[Segment] = []
    try:
        with os.scandir(table_dir / day_dir) as entries:
            for e in entries:
                if e.name.endswith(".parquet"):
                    with contextlib.suppress(FileNotFoundError):  # compacted away meanwhile
                        st = e.stat()
                        out.append(Segment(Path(e.path), st.st_size, st.st_mtime_ns))
    except (FileNotFoundError, NotADirectoryError):
        pass
    return out


def _summarise(table: str, path: Path, safe: _Safe) -> Summary:
    """Read the segment's text columns (as dictionaries) and collect their values; a
    column with too many keeps only the set of characters it uses."""
    wanted = TEXT_COLUMNS[table]
    pf = pq.ParquetFile(path, read_dictionary=[c for c in wanted if c != "status"])
    out: Summary = {c: () for c in wanted}  # a column the file lacks is all null
    present = [c for c in wanted if c in pf.schema_arrow.names]
    large = _large(pf.metadata, present)
    if large:  # read plainly: building a dictionary of a million ids is the slow part
        plain = pq.ParquetFile(path).read(columns=sorted(large))
        for name in large:
            out[name] = _chars(plain.column(name).chunks, safe)
    present = [c for c in present if c not in large]
    data = pf.read(columns=present)
    rows = data.num_rows
    for name in present:
        column = data.column(name)
        # A chunk's dictionary may hold a value no row uses: a superset is still exact.
        chunks = [ch.dictionary if pa.types.is_dictionary(ch.type) else ch for ch in column.chunks]
        if not chunks:
            continue
        unique = pc.unique(pa.chunked_array(chunks))
        values = [str(v) for v in unique.to_pylist() if v is not None]
        if len(values) > MAX_VALUES or (len(values) > SMALL and len(values) > MAX_RATIO * rows):
            out[name] = _chars([unique], safe)
            continue
        out[name] = safe(values)
    return out


def _chars(arrays: list[pa.Array], safe: _Safe) -> str | None:
    """The ASCII characters the strings use, sorted (``None``: some are not ASCII, or a
    number column): enough to rule out a text with a character none of them has."""
    seen = np.zeros(256, dtype=bool)
    for arr in arrays:
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            return None
        data = arr.buffers()[2]
        if data is not None and data.size:
            seen |= np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256) > 0
    if seen[128:].any():  # Unicode case folding is DuckDB's: leave it to the scan
        return None
    chars = "".join(chr(i) for i in np.flatnonzero(seen))
    return chars if safe([chars]) is not None else None


def _large(meta: pq.FileMetaData, columns: list[str]) -> set[str]:
    """Columns some row group of which has no dictionary or a large one (the writer
    gives up on a dictionary past 1 MiB): too many distinct values, known from the footer."""
    large: set[str] = set()
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for j in range(group.num_columns):
            chunk = group.column(j)
            if chunk.path_in_schema not in columns or chunk.num_values == 0:
                continue
            dictionary = chunk.dictionary_page_offset
            if (
                not chunk.has_dictionary_page
                or dictionary is None
                or chunk.data_page_offset - dictionary > DICT_BYTES
            ):
                large.add(chunk.path_in_schema)
    return large


class _Safe:
    """Values the redactor leaves alone, remembered for one search (they repeat a lot)."""

    def __init__(self) -> None:
        self._seen: dict[str, bool] = {}

    def __call__(self, values: list[str]) -> tuple[str, ...] | None:
        """The values, or ``None`` when the redactor would change one (never store a secret)."""
        seen = self._seen
        for v in values:
            ok = seen.get(v)
            if ok is None:
                ok = seen[v] = redact(v) == v
            if not ok:
                return None
        return tuple(values)


def _index_path(root: Path, table: str, seg: Segment) -> Path:
    return root / INDEX_DIR / table / seg.path.parent.name / (seg.path.name + ".json")


def _load(root: Path, table: str, seg: Segment, safe: _Safe) -> Summary | None:
    path = _index_path(root, table, seg)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("v") != _VERSION
        or doc.get("size") != seg.size
        or doc.get("mtime_ns") != seg.mtime_ns
        or not isinstance(doc.get("columns"), dict)
        or set(doc["columns"]) != set(TEXT_COLUMNS[table])
    ):
        return None
    summary: Summary = {}
    changed = False
    for name, values in doc["columns"].items():
        if values is None:
            summary[name] = None
            continue
        # A secret registered since the summary was written is dropped from it now.
        if isinstance(values, str):
            chars: str | None = values if safe([values]) is not None else None
            changed |= chars is None
            summary[name] = chars
            continue
        kept = safe([str(v) for v in values])
        changed |= kept is None
        summary[name] = kept
    if changed:
        _store(root, table, seg, summary)
    return summary


def _store(root: Path, table: str, seg: Segment, summary: Summary) -> None:
    path = _index_path(root, table, seg)
    doc = {"v": _VERSION, "size": seg.size, "mtime_ns": seg.mtime_ns, "columns": summary}
    try:
        make_private_dir(path.parent)
        tmp = path.with_name(tmp_name(path.name))
        with create_private(tmp) as fh:
            fh.write(json.dumps(doc, separators=(",", ":")).encode())
        os.replace(tmp, path)
    except OSError:  # a read-only or full store: the summary stays in memory only
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def summary(root: Path, table: str, seg: Segment, *, build: bool = True) -> Summary | None:
    """The segment's summary: from memory, from disk, or built (``build``) and saved.

    Returns:
        ``None`` when there is none and ``build`` is false, or the segment is unreadable
        or gone (it is then scanned as usual).
    """
    return _summary(root, table, seg, build, _Safe())[0]


def _summary(
    root: Path, table: str, seg: Segment, build: bool, safe: _Safe
) -> tuple[Summary | None, bool]:
    """:func:`summary`, and whether it had to be built (read from the segment)."""
    key = (str(seg.path), seg.size, seg.mtime_ns)
    with _memory_lock:
        found = _memory.get(key)
        if found is not None:
            _memory.move_to_end(key)
            return found, False
    found = _load(root, table, seg, safe)
    built = False
    if found is None:
        if not build:
            return None, False
        try:
            found = _summarise(table, seg.path, safe)
        except (OSError, pa.ArrowException):  # gone or unreadable: the scan decides
            return None, False
        built = True
        _store(root, table, seg, found)
    with _memory_lock:
        _memory[key] = found
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return found, built


def prune_day(root: Path, table: str, day_dir: str, segments: list[Segment]) -> None:
    """Remove the summaries of ``day_dir`` whose segment is no longer listed."""
    names = {s.path.name + ".json" for s in segments}
    try:
        with os.scandir(root / INDEX_DIR / table / day_dir) as entries:
            stale = [e.path for e in entries if e.name.endswith(".json") and e.name not in names]
    except OSError:  # no summaries for the day
        return
    for path in stale:
        with contextlib.suppress(OSError):
            os.unlink(path)


def candidates(
    root: Path,
    groups: dict[tuple[str, str], list[Segment]],
    pattern: str,
    build_bytes: int | None,
    text: str,
) -> dict[tuple[str, str], frozenset[str] | None]:
    """Which text columns of each ``(table, day directory)`` may hold ``pattern``.

    Args:
        root: The store's root.
        groups: The segments of each ``(table, day directory)`` as listed.
        pattern: The ``ILIKE`` pattern the scan matches (``%text%``, ``\\`` escapes).
        text: The text itself (redacted, as in ``pattern``).
        build_bytes: Summarise at most this many bytes of segments that have no summary
            yet (``None``: no limit); a group left with one is answered ``None``.

    Returns:
        Per group: the columns worth scanning (empty: the group cannot match), or
        ``None`` when it is not known (every column is scanned).
    """
    import duckdb  # deferred with the store's other DuckDB users

    global _duck
    built = 0
    safe = _Safe()
    summaries: dict[tuple[str, str], list[Summary] | None] = {}
    for (table, day_dir), segments in groups.items():  # newest first, as given
        found: list[Summary] = []
        for seg in segments:
            allowed = build_bytes is None or built + seg.size <= build_bytes
            one, was_built = _summary(root, table, seg, allowed, safe)
            if one is None:
                break
            found.append(one)
            built += seg.size if was_built else 0
        summaries[(table, day_dir)] = found if len(found) == len(segments) else None
        if found is not None:
            prune_day(root, table, day_dir, segments)
    distinct: set[str] = set()
    for listed in summaries.values():
        for one in listed or ():
            for values in one.values():
                if isinstance(values, tuple):
                    distinct.update(values)
    matched: set[str] = set()
    if distinct:
        with _memory_lock:
            # Connecting costs ~30 ms, a cursor ~1 ms; DuckDB is not fork-safe.
            if _duck is None or _duck_pid[0] != os.getpid():
                _duck, _duck_pid[0] = duckdb.connect(), os.getpid()
            con = _duck.cursor()
        try:
            con.register("v", pa.table({"v": pa.array(sorted(distinct), pa.string())}))
            rows = con.execute("SELECT v FROM v WHERE v ILIKE ? ESCAPE '\\'", [pattern])
            matched = {r[0] for r in rows.fetchall()}
        finally:
            con.close()
    # The text's ASCII characters (one of another script may fold to ASCII in DuckDB).
    needed = {c for c in text if c.isascii()}
    out: dict[tuple[str, str], frozenset[str] | None] = {}
    for (table, day_dir), listed in summaries.items():
        if listed is None:
            out[(table, day_dir)] = None
            continue
        cols = set()
        for one in listed:
            for name, values in one.items():
                if isinstance(values, str):
                    if all(c.lower() in values or c.upper() in values for c in needed):
                        cols.add(name)
                elif values is None or not matched.isdisjoint(values):
                    cols.add(name)
        out[(table, day_dir)] = frozenset(cols)
    return out


def forget() -> None:
    """Drop the summaries held in memory (the ones on disk stay)."""
    with _memory_lock:
        _memory.clear()


__all__ = [
    "INDEX_DIR",
    "MAX_RATIO",
    "MAX_VALUES",
    "TEXT_COLUMNS",
    "Segment",
    "Summary",
    "forget",
    "list_segments",
    "prune_day",
    "summary",
]
