"""The store's tables: fixed Arrow schemas, row validation, spool rows -> partitions,
and the DuckDB views over the segments."""

from __future__ import annotations

import dataclasses
import enum
import json
import numbers
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

_TS = pa.timestamp("us", tz="UTC")


def _req(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _opt(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=True)


CALLS_SCHEMA = pa.schema(
    [
        _req("id", pa.string()),
        _req("ts", _TS),
        _req("service", pa.string()),
        _req("action", pa.string()),
        _req("method", pa.string()),
        _req("path", pa.string()),
        _opt("status", pa.int32()),
        _req("ok", pa.bool_()),
        _req("latency_ms", pa.float64()),
        _opt("error_class", pa.string()),
        _opt("error", pa.string()),
        _req("attempts", pa.int32()),
        _req("breaker_state", pa.string()),
        _req("source", pa.string()),
        _opt("run_id", pa.string()),
    ]
)
"""One row per integration call (after its last attempt); ``source`` is probe/workflow/cli/..."""

PROBES_SCHEMA = pa.schema(
    [
        _req("id", pa.string()),
        _req("ts", _TS),
        _req("sweep_id", pa.string()),
        _req("service", pa.string()),
        _req("ok", pa.bool_()),
        _opt("status", pa.int32()),
        _req("latency_ms", pa.float64()),
        _opt("error_class", pa.string()),
        _opt("error", pa.string()),
        _req("breaker_state", pa.string()),
    ]
)
"""One row per service per health sweep."""

WORKFLOW_RUNS_SCHEMA = pa.schema(
    [
        _req("id", pa.string()),
        _req("run_id", pa.string()),
        _req("workflow", pa.string()),
        _req("started_at", _TS),
        _opt("ended_at", _TS),
        _req("status", pa.string()),
        _req("duration_ms", pa.float64()),
        _req("steps", pa.int32()),
        _req("retries", pa.int32()),
        _req("fallbacks", pa.int32()),
        _opt("error", pa.string()),
        _opt("params_json", pa.string()),
    ]
)
"""One row per workflow run; partitioned by the day of ``started_at``."""

ALERTS_SCHEMA = pa.schema(
    [
        _req("id", pa.string()),
        _req("ts", _TS),
        _req("fingerprint", pa.string()),
        _req("service", pa.string()),
        _req("rule", pa.string()),
        _req("severity", pa.string()),
        _req("state", pa.string()),
        _req("message", pa.string()),
        _req("labels_json", pa.string()),
    ]
)
"""One row per alert state change (firing/resolved/...)."""

TABLES: dict[str, pa.Schema] = {
    "calls": CALLS_SCHEMA,
    "probes": PROBES_SCHEMA,
    "workflow_runs": WORKFLOW_RUNS_SCHEMA,
    "alerts": ALERTS_SCHEMA,
}
"""Table name -> fixed Arrow schema of its Parquet segments."""

PARTITION_COLUMNS: dict[str, str] = {
    "calls": "ts",
    "probes": "ts",
    "workflow_runs": "started_at",
    "alerts": "ts",
}
"""Table name -> timestamp column whose UTC day names the ``date=`` partition."""

_US_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_DUCK_TYPES = {
    "string": "VARCHAR",
    "ts": "TIMESTAMPTZ",
    "int32": "INTEGER",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
}


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # string | ts | int32 | float64 | bool
    nullable: bool


def _kind(type_: pa.DataType) -> str:
    if pa.types.is_string(type_):
        return "string"
    if pa.types.is_timestamp(type_):
        return "ts"
    if pa.types.is_int32(type_):
        return "int32"
    if pa.types.is_float64(type_):
        return "float64"
    if pa.types.is_boolean(type_):
        return "bool"
    raise TypeError(f"unsupported column type {type_}")


_COLUMNS: dict[str, tuple[_Column, ...]] = {
    t: tuple(_Column(f.name, _kind(f.type), f.nullable) for f in s) for t, s in TABLES.items()
}
COLUMN_NAMES: dict[str, frozenset[str]] = {t: frozenset(s.names) for t, s in TABLES.items()}


def check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known tables: {', '.join(TABLES)}")


# --------------------------------------------------------------------------- validation


def as_mapping(row: object) -> Mapping[str, Any]:
    if isinstance(row, Mapping):
        return row
    dump = getattr(row, "model_dump", None)
    if callable(dump):
        data = dump()
        if isinstance(data, Mapping):
            return data
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    raise ValueError(
        f"row must be a Mapping, a pydantic model or a dataclass instance, got {type(row).__name__}"
    )


def _bad(table: str, col: str, expected: str, value: object) -> ValueError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ValueError(f"{table}.{col}: expected {expected}, got {type(value).__name__} {shown}")


def _to_micros(value: datetime) -> int:
    if value.tzinfo is None:  # naive datetimes are taken as UTC (datetime.utcnow() style)
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _coerce(table: str, col: _Column, value: object) -> Any:
    """Validate one value and return its JSON-able spool form (timestamps -> epoch µs)."""
    if isinstance(value, enum.Enum):
        value = value.value
    kind = col.kind
    if kind == "string":
        if isinstance(value, str):
            return str(value)
        if col.name.endswith("_json") and isinstance(value, Mapping | list | tuple):
            return json.dumps(value, sort_keys=True, default=str)
        raise _bad(table, col.name, "str", value)
    if kind == "ts":
        if isinstance(value, datetime):
            return _to_micros(value)
        if isinstance(value, str):
            try:
                return _to_micros(datetime.fromisoformat(value))
            except ValueError:
                raise _bad(table, col.name, "an ISO-8601 timestamp", value) from None
        raise _bad(table, col.name, "datetime", value)
    if kind == "int32":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            number = int(value)
            if not _INT32_MIN <= number <= _INT32_MAX:
                raise _bad(table, col.name, "an int32", value)
            return number
        raise _bad(table, col.name, "int", value)
    if kind == "float64":
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _bad(table, col.name, "float", value)
    if isinstance(value, bool):
        return value
    raise _bad(table, col.name, "bool", value)


def normalize_row(table: str, data: Mapping[str, Any]) -> dict[str, Any]:
    names = COLUMN_NAMES[table]
    for key in data:
        if key not in names:
            known = ", ".join(TABLES[table].names)
            raise ValueError(f"unknown column {key!r} for table {table!r}; columns: {known}")
    out: dict[str, Any] = {}
    for col in _COLUMNS[table]:
        value = data.get(col.name)
        if value is None:
            if col.name == "id":
                out["id"] = uuid.uuid4().hex
                continue
            if col.name == "ts":
                out["ts"] = time.time_ns() // 1000
                continue
            if not col.nullable:
                what = "is required" if col.name not in data else "must not be null"
                raise ValueError(f"{table}.{col.name} {what}")
            out[col.name] = None
            continue
        out[col.name] = _coerce(table, col, value)
    return out


def encode_row(table: str, row: dict[str, Any]) -> bytes:
    try:
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    except UnicodeEncodeError:  # lone surrogates cannot go to Parquet either
        for key, value in row.items():
            if isinstance(value, str):
                try:
                    value.encode()
                except UnicodeEncodeError:
                    raise ValueError(f"{table}.{key}: string is not valid UTF-8") from None
        raise


def check_spooled(table: str, row: object) -> dict[str, Any]:
    """Light check of a row read back from a spool (it was validated when appended)."""
    if not isinstance(row, dict) or not set(row) <= COLUMN_NAMES[table]:
        raise ValueError(f"spooled row does not match table {table!r}")
    for col in _COLUMNS[table]:
        if not col.nullable and row.get(col.name) is None:
            raise ValueError(f"spooled row lacks {table}.{col.name}")
    return row


def partition_rows(table: str, rows: list[dict[str, Any]]) -> dict[str, pa.Table]:
    """Split rows by UTC day of the partition column into Arrow tables."""
    pcol = PARTITION_COLUMNS[table]
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[pcol] // _US_PER_DAY, []).append(row)
    schema = TABLES[table]
    return {
        (_EPOCH_DATE + timedelta(days=day)).isoformat(): pa.Table.from_pylist(group, schema=schema)
        for day, group in sorted(groups.items())
    }


def conform(tbl: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a segment read from disk to the current schema (missing nullable cols -> null)."""
    extra = set(tbl.column_names) - set(schema.names)
    if extra:
        raise ValueError(f"segment has unknown columns {sorted(extra)}")
    arrays = []
    for fld in schema:
        if fld.name in tbl.column_names:
            arrays.append(tbl[fld.name].cast(fld.type))
        elif fld.nullable:
            arrays.append(pa.chunked_array([pa.nulls(tbl.num_rows, fld.type)]))
        else:
            raise ValueError(f"segment lacks required column {fld.name!r}")
    return pa.Table.from_arrays(arrays, schema=schema)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def view_sql(
    root: Path | str, table: str, files: list[str] | None = None, *, temp: bool = False
) -> str:
    """``CREATE OR REPLACE VIEW`` over the table's segments, valid even with no files yet.

    The empty typed select fixes column names/types when the glob matches nothing
    (``allow_empty`` then yields a dummy column that the outer projection drops).
    ``files`` replaces the glob under ``root`` with exactly these paths or URLs (an
    object store's listing); ``temp`` makes a view private to the connection (cursor).
    """
    typed = ", ".join(
        f"CAST(NULL AS {_DUCK_TYPES[c.kind]}) AS {ident(c.name)}" for c in _COLUMNS[table]
    )
    cols = ", ".join([*(ident(c.name) for c in _COLUMNS[table]), '"date"'])
    empty = f'SELECT {typed}, CAST(NULL AS DATE) AS "date" WHERE false'
    kind = "TEMP VIEW" if temp else "VIEW"
    head = f"CREATE OR REPLACE {kind} {ident(table)} AS SELECT {cols} FROM ({empty}"
    if files is not None and not files:
        return head + ")"
    source = (
        "[" + ", ".join(_sql_str(f) for f in files) + "]"
        if files is not None
        else _sql_str(f"{Path(root) / table}/*/*.parquet")
    )
    # A listed file that is gone must fail the statement (re-listed), not read as empty.
    allow_empty = "false" if files else "true"
    return (
        f"{head} UNION ALL BY NAME SELECT * FROM read_parquet({source}, "
        f"hive_partitioning = true, union_by_name = true, allow_empty = {allow_empty}, "
        f"hive_types = {{'date': 'DATE'}}))"
    )


def run_df(cursor: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None) -> pd.DataFrame:
    """Run one statement on ``cursor`` (with ``?``/``$1`` values if given) as a DataFrame."""
    if params is not None:
        cursor.execute(sql, params)
    else:
        cursor.execute(sql)
    return cursor.df()
