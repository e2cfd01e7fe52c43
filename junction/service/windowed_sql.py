"""The DuckDB statements of :mod:`junction.service.windowed`: bucket rollups and edge rows."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from junction.service.windowed_bins import BIN_SQL

_TABLES = ("probes", "calls")
_US = timedelta(microseconds=1)

_ROLLUP_SQL = """
SELECT service, {src} AS src, epoch_us(ts) // {b_us} AS bucket, {bin} AS bin,
       grouping(bin) AS whole, count(*) AS n, count(*) FILTER (WHERE ok) AS ok_n,
       count(*) FILTER (WHERE NOT ok) AS fail_n, sum(latency_ms) AS lat_sum,
       count(latency_ms) AS lat_n, epoch_us(max(ts)) AS last_us
FROM ({rows})
GROUP BY GROUPING SETS ((service, src, bucket), (service, src, bucket, bin))
"""


def _rollup(rows_of: Callable[[str], str], width_us: int) -> str:
    return " UNION ALL ".join(
        _ROLLUP_SQL.format(src=src, b_us=width_us, bin=BIN_SQL, rows=rows_of(table))
        for src, table in enumerate(_TABLES)
    )


def range_sql(width_us: int) -> str:
    """Rollups of both tables' rows in ``[$lo, $hi)`` per ``width_us`` bucket, key and bin."""
    # `date` prunes partitions before any file is opened; `ts` is the exact bound.
    return _rollup(
        lambda t: (
            f"SELECT service, ts, ok, latency_ms FROM {t} WHERE ts >= $lo AND ts < $hi "
            'AND "date" >= $dlo AND "date" <= $dhi'
        ),
        width_us,
    )


def edges_sql(root: Path, since: datetime, until: datetime, current: bool) -> str | None:
    """Rows of ``[since, until)`` (and from ``$last`` on when ``current``), both tables.

    The start's rows are read from their own day partitions' files only: the view would
    list (and DuckDB open) every file of the store, today's many small segments included.
    """
    cols = "service, {src} AS src, epoch_us(ts) AS us, ok IS TRUE AS okv, ok IS FALSE AS failv, "
    cols += "latency_ms IS NOT NULL AS has_lat, latency_ms"
    last_day = (until - _US).date()
    days = [since.date() + timedelta(days=d) for d in range((last_day - since.date()).days + 1)]
    parts = []
    for src, table in enumerate(_TABLES):
        globs = [
            "'" + str(root / table / f"date={d.isoformat()}" / "*.parquet").replace("'", "''") + "'"
            for d in days
            if any(n.endswith(".parquet") for n in _listdir(root / table / f"date={d.isoformat()}"))
        ]
        if globs:
            parts.append(
                f"SELECT {cols.format(src=src)} FROM read_parquet([{', '.join(globs)}], "
                "union_by_name = true) WHERE ts >= $since AND ts < $first"
            )
        if current:
            parts.append(
                f'SELECT {cols.format(src=src)} FROM {table} WHERE ts >= $last AND "date" >= $dlast'
            )
    return " UNION ALL ".join(parts) or None


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
