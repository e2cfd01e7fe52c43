"""Validate metrics before any analysis, with Great Expectations (1.x, ephemeral context).

Two entry points: :func:`validate_frame` checks one DataFrame shaped like a store table,
:func:`validate_store` reads the store's tables (the columns the checks need, optionally a
time window) through DuckDB and validates each. Both return a :class:`ValidationReport`;
when a *critical* check fails they raise :class:`DataValidationError` (the message lists
every critical failure), unless ``raise_on_critical=False``.

Checks (``severity``; per table where the column exists)::

    schema                 critical  the needed columns exist with usable types
    rows                   warning   "not enough data": no rows (other checks are skipped)
    id_unique              critical  no duplicate ``id``
    <ts>_not_null          critical  every row has its timestamp
    <ts>_not_in_future     critical  no timestamp later than now + max_clock_skew
    <ts>_not_before_bound  warning   no timestamp before ``earliest`` (when given)
    latency_not_null       critical  latency_ms / duration_ms present (no NaN)
    latency_non_negative   critical  latency_ms / duration_ms >= 0
    ok_known               critical  ``ok`` is true/false, never null
    status_known           warning   HTTP status in 100..599 (null = no response);
                                     workflow/alert status/state/severity in the known set
    no_duplicate_rows      warning   (service, ts, action) unique for calls, (service, ts)
                                     for probes
    ended_after_started    warning   workflow_runs.ended_at >= started_at
    probe_gaps             warning   per service, no gap between consecutive probes (and
                                     between a service's last probe and the table's last
                                     probe) longer than gap_factor x the probe interval

Gaps are computed in pandas (frames) or DuckDB (store), then checked by a GX expectation
on the gap column. GX is imported lazily (it takes 4-14 s) and its progress bars are off.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
import pandas as pd

from junction.settings import get_settings
from junction.store import MetricsStore

Severity = Literal["critical", "warning"]

KNOWN_WORKFLOW_STATUSES = frozenset(
    {"completed", "failed", "running", "pending", "cancelled", "crashed", "succeeded", "success"}
)
"""``workflow_runs.status`` values accepted without a warning."""

KNOWN_ALERT_STATES = frozenset({"firing", "acknowledged", "resolved", "suppressed", "pending"})
KNOWN_SEVERITIES = frozenset({"info", "warning", "critical"})

# Columns each table's checks need, with the kind of values expected.
_NEEDED: dict[str, dict[str, str]] = {
    "calls": {
        "id": "string",
        "ts": "ts",
        "service": "string",
        "action": "string",
        "ok": "bool",
        "status": "int",
        "latency_ms": "number",
    },
    "probes": {
        "id": "string",
        "ts": "ts",
        "service": "string",
        "ok": "bool",
        "status": "int",
        "latency_ms": "number",
    },
    "workflow_runs": {
        "id": "string",
        "workflow": "string",
        "started_at": "ts",
        "ended_at": "ts",
        "status": "string",
        "duration_ms": "number",
    },
    "alerts": {
        "id": "string",
        "ts": "ts",
        "service": "string",
        "state": "string",
        "severity": "string",
    },
}
_TS_COL = {"calls": "ts", "probes": "ts", "workflow_runs": "started_at", "alerts": "ts"}


@dataclass(frozen=True)
class Check:
    """One validation check's outcome."""

    name: str
    table: str
    severity: Severity
    passed: bool
    observed: str
    details: str = ""


@dataclass
class ValidationReport:
    """Every check that ran, per table, plus row counts."""

    checks: list[Check] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def critical_failures(self) -> list[Check]:
        """Failed critical checks (the flow must stop)."""
        return [c for c in self.checks if not c.passed and c.severity == "critical"]

    @property
    def warnings(self) -> list[Check]:
        """Failed warning checks (reported, analysis goes on)."""
        return [c for c in self.checks if not c.passed and c.severity == "warning"]

    @property
    def passed(self) -> bool:
        """True when no critical check failed."""
        return not self.critical_failures

    def not_enough_data(self, table: str) -> bool:
        """True when ``table`` had no rows to analyse."""
        return self.rows.get(table, 0) == 0

    def check(self, table: str, name: str) -> Check:
        """The named check of a table.

        Raises:
            KeyError: No such check ran.
        """
        for c in self.checks:
            if c.table == table and c.name == name:
                return c
        raise KeyError(f"no check {name!r} for table {table!r}")

    def to_frame(self) -> pd.DataFrame:
        """One row per check: table, name, severity, passed, observed, details."""
        return pd.DataFrame(
            [
                {
                    "table": c.table,
                    "name": c.name,
                    "severity": c.severity,
                    "passed": c.passed,
                    "observed": c.observed,
                    "details": c.details,
                }
                for c in self.checks
            ],
            columns=["table", "name", "severity", "passed", "observed", "details"],
        )

    def to_markdown(self) -> str:
        """A Markdown table of the checks (for reports and Prefect artifacts)."""
        lines = ["| table | check | severity | result | observed |", "|---|---|---|---|---|"]
        for c in self.checks:
            result = "pass" if c.passed else "**FAIL**"
            observed = c.observed.replace("|", "\\|")
            lines.append(f"| {c.table} | {c.name} | {c.severity} | {result} | {observed} |")
        return "\n".join(lines)

    def raise_for_critical(self) -> None:
        """Raise :class:`DataValidationError` if any critical check failed."""
        if self.critical_failures:
            raise DataValidationError(self)

    def merge(self, other: ValidationReport) -> None:
        """Add another report's checks and row counts to this one."""
        self.checks.extend(other.checks)
        self.rows.update(other.rows)


class DataValidationError(ValueError):
    """Critical validation failures; ``str()`` lists each one, ``report`` has them all."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        failures = report.critical_failures
        lines = [f"data validation failed: {len(failures)} critical check(s)"]
        for c in failures:
            detail = f" ({c.details})" if c.details else ""
            lines.append(f"- {c.table}.{c.name}: {c.observed}{detail}")
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- GX plumbing

_gx_lock = threading.Lock()
_gx_state: dict[str, Any] = {}


def _gx_batch(table: str, frame: pd.DataFrame) -> Any:
    """A GX batch over ``frame`` from one shared ephemeral context (built on first use)."""
    with _gx_lock:
        if "context" not in _gx_state:
            import great_expectations as gx  # 4-14 s: only when validation actually runs
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            # tqdm ignores TQDM_DISABLE here; this is GX's own switch.
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _gx_state["gx"] = gx
            _gx_state["context"] = context
            _gx_state["source"] = context.data_sources.add_pandas("junction")
            _gx_state["batches"] = {}
        batches: dict[str, Any] = _gx_state["batches"]
        if table not in batches:
            asset = _gx_state["source"].add_dataframe_asset(name=table)
            batches[table] = asset.add_batch_definition_whole_dataframe(f"{table}-all")
        return batches[table].get_batch(batch_parameters={"dataframe": frame})


# --------------------------------------------------------------------------- schema


def _kind_ok(series: pd.Series, kind: str) -> bool:
    api = pd.api.types
    if kind == "ts":
        return bool(api.is_datetime64_any_dtype(series))
    if kind == "bool":
        if api.is_bool_dtype(series):
            return True
        return bool(api.is_object_dtype(series)) and all(
            isinstance(v, bool) or v is None for v in series.head(1000)
        )
    if kind in ("number", "int"):
        return bool(api.is_numeric_dtype(series)) and not api.is_bool_dtype(series)
    # string
    return bool(api.is_string_dtype(series) or api.is_object_dtype(series))


def _schema_check(table: str, frame: pd.DataFrame) -> Check:
    needed = _NEEDED[table]
    missing = [c for c in needed if c not in frame.columns]
    wrong = [
        f"{c} (expected {k}, got {frame[c].dtype})"
        for c, k in needed.items()
        if c in frame.columns and not _kind_ok(frame[c], k)
    ]
    if not missing and not wrong:
        return Check("schema", table, "critical", True, "all needed columns present and typed")
    parts = []
    if missing:
        parts.append(f"missing columns: {', '.join(missing)}")
    if wrong:
        parts.append(f"wrong types: {', '.join(wrong)}")
    return Check(
        "schema",
        table,
        "critical",
        False,
        "; ".join(parts),
        f"expected columns: {', '.join(needed)}; got: {', '.join(map(str, frame.columns))}",
    )


@dataclass(frozen=True)
class _Rule:
    """One check: a violation count per group, computed in SQL, judged by GX (must be 0)."""

    name: str
    severity: Severity
    column: str  # the count column of the profile
    sql: str  # count of violating rows in a group
    what: str  # human wording of the rule


def _rules(table: str, latest: datetime, earliest: datetime | None) -> list[_Rule]:
    """The rules for ``table``; ``future_ts``/``old_ts`` take one ``?`` parameter each."""
    ts_col = _TS_COL[table]
    rules = [
        _Rule(
            "id_unique",
            "critical",
            "duplicate_ids",
            "count(*) FILTER (WHERE id IN (SELECT id FROM src GROUP BY id HAVING count(*) > 1))",
            "id must be unique",
        ),
        _Rule(
            f"{ts_col}_not_null",
            "critical",
            "null_ts",
            f'count(*) FILTER (WHERE "{ts_col}" IS NULL)',
            f"{ts_col} must be set",
        ),
        _Rule(
            f"{ts_col}_not_in_future",
            "critical",
            "future_ts",
            f'count(*) FILTER (WHERE "{ts_col}" > ?::TIMESTAMPTZ)',
            f"{ts_col} <= {latest:%Y-%m-%dT%H:%M:%SZ} (now + clock skew)",
        ),
    ]
    if earliest is not None:
        rules.append(
            _Rule(
                f"{ts_col}_not_before_bound",
                "warning",
                "old_ts",
                f'count(*) FILTER (WHERE "{ts_col}" < ?::TIMESTAMPTZ)',
                f"{ts_col} >= {earliest:%Y-%m-%dT%H:%M:%SZ}",
            )
        )
    if table in ("calls", "probes"):
        keys = "ts, action" if table == "calls" else "ts"
        rules += [
            _Rule(
                "latency_not_null",
                "critical",
                "null_latency",
                "count(*) FILTER (WHERE latency_ms IS NULL OR isnan(latency_ms))",
                "latency_ms must be a number (not NaN/null)",
            ),
            _Rule(
                "latency_non_negative",
                "critical",
                "negative_latency",
                "count(*) FILTER (WHERE latency_ms < 0)",
                "latency_ms >= 0",
            ),
            _Rule(
                "ok_known",
                "critical",
                "null_ok",
                "count(*) FILTER (WHERE ok IS NULL)",
                "ok is true or false (never null)",
            ),
            _Rule(
                "status_known",
                "warning",
                "unknown_status",
                "count(*) FILTER (WHERE status IS NOT NULL AND (status < 100 OR status > 599))",
                "HTTP status in 100..599 (null = no response)",
            ),
            _Rule(
                "no_duplicate_rows",
                "warning",
                "duplicate_rows",
                f"count(*) - count(DISTINCT ({keys}))",
                f"(service, {keys}) unique",
            ),
        ]
    elif table == "workflow_runs":
        known = ", ".join(f"'{s}'" for s in sorted(KNOWN_WORKFLOW_STATUSES))
        rules += [
            _Rule(
                "latency_not_null",
                "critical",
                "null_latency",
                "count(*) FILTER (WHERE duration_ms IS NULL OR isnan(duration_ms))",
                "duration_ms must be a number",
            ),
            _Rule(
                "latency_non_negative",
                "critical",
                "negative_latency",
                "count(*) FILTER (WHERE duration_ms < 0)",
                "duration_ms >= 0",
            ),
            _Rule(
                "status_known",
                "warning",
                "unknown_status",
                f"count(*) FILTER (WHERE status IS NULL OR status NOT IN ({known}))",
                f"status in {{{', '.join(sorted(KNOWN_WORKFLOW_STATUSES))}}}",
            ),
            _Rule(
                "ended_after_started",
                "warning",
                "ended_before_started",
                "count(*) FILTER (WHERE ended_at < started_at)",
                "ended_at >= started_at",
            ),
        ]
    elif table == "alerts":
        states = ", ".join(f"'{s}'" for s in sorted(KNOWN_ALERT_STATES))
        severities = ", ".join(f"'{s}'" for s in sorted(KNOWN_SEVERITIES))
        rules += [
            _Rule(
                "status_known",
                "warning",
                "unknown_state",
                f"count(*) FILTER (WHERE state IS NULL OR state NOT IN ({states}))",
                f"state in {{{', '.join(sorted(KNOWN_ALERT_STATES))}}}",
            ),
            _Rule(
                "severity_known",
                "warning",
                "unknown_severity",
                f"count(*) FILTER (WHERE severity IS NULL OR severity NOT IN ({severities}))",
                f"severity in {{{', '.join(sorted(KNOWN_SEVERITIES))}}}",
            ),
        ]
    return rules


_PARAM = ("future_ts", "old_ts")


def _profile_sql(table: str, rules: list[_Rule]) -> str:
    group = "workflow" if table == "workflow_runs" else "service"
    ts_col = _TS_COL[table]
    counts = ",\n       ".join(f"{r.sql} AS {r.column}" for r in rules)
    return (
        f'SELECT {group} AS "group", date_trunc(\'hour\', "{ts_col}") AS hour,\n'
        f"       count(*) AS n_rows,\n       {counts}\n"
        f"FROM src GROUP BY ALL"
    )


def _gx_judge(
    name: str, frame: pd.DataFrame, columns: list[str], max_value: float
) -> dict[str, bool]:
    """Run ``expect_column_values_to_be_between(col, max_value=...)`` on each column with GX.

    Returns:
        Column -> passed. A column GX could not evaluate counts as failed.
    """
    if not columns:
        return {}
    gx_batch = _gx_batch(name, frame)
    gx = _gx_state["gx"]
    suite = gx.ExpectationSuite(name=f"junction-{name}")
    for i, col in enumerate(columns):
        suite.add_expectation(
            gx.expectations.ExpectColumnValuesToBeBetween(
                column=col, max_value=max_value, meta={"check": i}
            )
        )
    result = gx_batch.validate(suite, result_format="BASIC")
    out = dict.fromkeys(columns, False)
    for r in result.results:
        raised = (r.exception_info or {}).get("raised_exception")
        out[columns[int(r.expectation_config.meta["check"])]] = bool(r.success) and not raised
    return out


def _group_details(profile: pd.DataFrame, column: str, label: str) -> str:
    bad = profile[profile[column] > 0].nlargest(5, column)
    parts = []
    for r in bad.itertuples():
        hour = getattr(r, "hour", None)
        when = f" {hour:%Y-%m-%d %H:00}" if isinstance(hour, pd.Timestamp) else ""
        parts.append(f"{r.group}{when}: {getattr(r, column)}")
    more = int((profile[column] > 0).sum()) - len(parts)
    tail = f" (+{more} more {label} groups)" if more > 0 else ""
    return "; ".join(parts) + tail


# --------------------------------------------------------------------------- gaps


def probe_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Gaps between consecutive probes per service, plus each service's trailing gap (pandas).

    Args:
        frame: Rows with ``service`` and ``ts``.

    Returns:
        Columns ``service``, ``gap_start``, ``gap_end``, ``gap_seconds``; the trailing gap
        runs from a service's last probe to the latest probe of any service.
    """
    cols = ["service", "gap_start", "gap_end", "gap_seconds"]
    data = frame[["service", "ts"]].dropna().sort_values(["service", "ts"], kind="stable")
    if data.empty:
        return pd.DataFrame(columns=cols)
    end = data["ts"].max()
    prev = data.groupby("service", sort=False)["ts"].shift()
    inner = pd.DataFrame(
        {"service": data["service"], "gap_start": prev, "gap_end": data["ts"]}
    ).dropna(subset=["gap_start"])
    last = data.groupby("service", sort=False)["ts"].max()
    trailing = last.rename("gap_start").reset_index()  # keeps the time zone (.values drops it)
    trailing["gap_end"] = end
    gaps = pd.concat([inner, trailing[trailing["gap_start"] < end]], ignore_index=True)
    gaps["gap_seconds"] = (gaps["gap_end"] - gaps["gap_start"]).dt.total_seconds()
    return gaps[cols]


# The same computation in DuckDB, over ``src``.
_GAPS_SQL = """
WITH p AS (SELECT service, ts FROM src WHERE ts IS NOT NULL AND service IS NOT NULL),
ordered AS (
    SELECT service, lag(ts) OVER (PARTITION BY service ORDER BY ts) AS gap_start, ts AS gap_end
    FROM p
),
last AS (
    SELECT service, max(ts) AS gap_start, (SELECT max(ts) FROM p) AS gap_end
    FROM p GROUP BY service
)
SELECT service, gap_start, gap_end, epoch(gap_end) - epoch(gap_start) AS gap_seconds
FROM (SELECT * FROM ordered WHERE gap_start IS NOT NULL
      UNION ALL SELECT * FROM last WHERE gap_start < gap_end)
"""


def _gap_check(gaps: pd.DataFrame, interval: timedelta | None, factor: float) -> Check:
    if gaps.empty:
        return Check("probe_gaps", "probes", "warning", True, "not enough data (< 2 probes)")
    seconds = interval.total_seconds() if interval else float(gaps["gap_seconds"].median())
    allowed = seconds * factor
    passed = _gx_judge("probe_gaps", gaps[["gap_seconds"]], ["gap_seconds"], allowed)
    over = gaps[gaps["gap_seconds"] > allowed]
    rule = f"gap <= {allowed:g} s ({factor:g} x probe interval {seconds:g} s)"
    observed = f"{len(over)} of {len(gaps)} gaps violate: {rule}"
    if passed["gap_seconds"]:
        return Check("probe_gaps", "probes", "warning", True, observed)
    # One outage of the monitor shows up as the same window for every service: group them.
    # Probes of one sweep differ by up to a few seconds: group by the minute.
    keyed = over.assign(
        gap_start=over["gap_start"].dt.floor("min"), gap_end=over["gap_end"].dt.floor("min")
    )
    windows = keyed.groupby(["gap_start", "gap_end"])["service"].agg(list).reset_index()
    windows = windows.assign(
        seconds=(windows["gap_end"] - windows["gap_start"]).dt.total_seconds()
    ).nlargest(5, "seconds")
    parts = []
    for r in windows.itertuples():
        names = list(r.service)  # type: ignore[arg-type]
        who = names[0] if len(names) == 1 else f"{len(names)} services"
        parts.append(f"{who} {r.gap_start:%Y-%m-%d %H:%M}..{r.gap_end:%H:%M} ({r.seconds:.0f} s)")
    return Check("probe_gaps", "probes", "warning", False, observed, "; ".join(parts))


# --------------------------------------------------------------------------- driver


def _defaults(
    max_clock_skew: timedelta | None, gap_factor: float | None, probe_interval: timedelta | None
) -> tuple[timedelta, float, timedelta | None]:
    if max_clock_skew is not None and gap_factor is not None and probe_interval is not None:
        return max_clock_skew, gap_factor, probe_interval
    s = get_settings()
    skew = timedelta(seconds=s.analytics_max_clock_skew_seconds)
    factor = s.analytics_gap_factor
    interval_s = s.analytics_probe_interval_seconds
    interval = timedelta(seconds=float(interval_s)) if interval_s else None
    return (
        max_clock_skew if max_clock_skew is not None else skew,
        gap_factor if gap_factor is not None else factor,
        probe_interval if probe_interval is not None else interval,
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _check_table(
    con: Any,
    table: str,
    *,
    now: datetime | None,
    max_clock_skew: timedelta | None,
    earliest: datetime | None,
    probe_interval: timedelta | None,
    gap_factor: float | None,
) -> tuple[int, list[Check]]:
    """Checks of the rows in relation ``src`` on ``con``; returns (row count, checks)."""
    skew, factor, interval = _defaults(max_clock_skew, gap_factor, probe_interval)
    latest = _utc(now or datetime.now(UTC)) + skew
    bound = _utc(earliest) if earliest else None
    rules = _rules(table, latest, bound)
    # Parameters appear once per rule that uses them, in rule order.
    ordered = [latest if r.column == "future_ts" else bound for r in rules if r.column in _PARAM]
    # One pass measures everything (the row count too): each count column must be 0.
    profile = con.execute(_profile_sql(table, rules), ordered).df()
    n_rows = int(profile["n_rows"].sum())
    if n_rows == 0:
        return 0, [
            Check("rows", table, "warning", False, "not enough data: 0 rows", "nothing to analyse")
        ]
    checks = [Check("rows", table, "warning", True, f"{n_rows} rows")]
    verdict = _gx_judge(f"{table}-profile", profile, [r.column for r in rules], 0)
    for r in rules:
        violations = int(profile[r.column].sum())
        observed = f"{violations} of {n_rows} rows violate: {r.what}"
        details = "" if verdict[r.column] else _group_details(profile, r.column, "hour")
        checks.append(Check(r.name, table, r.severity, verdict[r.column], observed, details))
    if table == "probes":
        checks.append(_gap_check(con.execute(_GAPS_SQL).df(), interval, factor))
    return n_rows, checks


def _duck() -> Any:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def validate_frame(
    frame: pd.DataFrame,
    table: str,
    *,
    now: datetime | None = None,
    max_clock_skew: timedelta | None = None,
    earliest: datetime | None = None,
    probe_interval: timedelta | None = None,
    gap_factor: float | None = None,
    raise_on_critical: bool = True,
) -> ValidationReport:
    """Validate one DataFrame shaped like the store table ``table``.

    Args:
        frame: The rows (only the columns the checks need are required).
        table: ``calls``, ``probes``, ``workflow_runs`` or ``alerts``.
        now: Reference time for "not in the future" (default: now, UTC).
        max_clock_skew: Allowed clock skew into the future (default: setting
            ``analytics_max_clock_skew_seconds``, 300 s).
        earliest: Warn about timestamps before this bound.
        probe_interval: Expected probe interval (default: setting
            ``analytics_probe_interval_seconds``, else the median gap).
        gap_factor: A gap above ``gap_factor x probe_interval`` is flagged (default:
            setting ``analytics_gap_factor``, 3).
        raise_on_critical: Raise :class:`DataValidationError` on critical failures.

    Returns:
        The report (warnings included; "not enough data" for an empty frame).

    Raises:
        DataValidationError: A critical check failed (missing columns or wrong types
            included) and ``raise_on_critical`` is true.
        ValueError: Unknown table.
    """
    if table not in _NEEDED:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(_NEEDED)}")
    report = ValidationReport(rows={table: len(frame)})
    schema = _schema_check(table, frame)
    report.checks.append(schema)
    if schema.passed:
        con = _duck()
        try:
            con.register("src", frame[list(_NEEDED[table])])
            _, checks = _check_table(
                con,
                table,
                now=now,
                max_clock_skew=max_clock_skew,
                earliest=earliest,
                probe_interval=probe_interval,
                gap_factor=gap_factor,
            )
            report.checks.extend(checks)
        finally:
            con.close()
    if raise_on_critical:
        report.raise_for_critical()
    return report


def validate_store(
    store: MetricsStore,
    tables: Iterable[str] = ("calls", "probes", "workflow_runs"),
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    max_clock_skew: timedelta | None = None,
    earliest: datetime | None = None,
    probe_interval: timedelta | None = None,
    gap_factor: float | None = None,
    raise_on_critical: bool = True,
) -> ValidationReport:
    """Validate the store's tables (optionally only ``[since, until)``) before analysis.

    The measurements run in DuckDB straight on the Parquet files (partition-pruned by
    the window); nothing row-level is loaded into pandas. Other arguments as
    :func:`validate_frame`.

    Returns:
        One report covering every table.

    Raises:
        DataValidationError: A critical check failed and ``raise_on_critical`` is true.
        ValueError: Unknown table.
    """
    report = ValidationReport()
    tables = list(tables)
    for table in tables:
        if table not in _NEEDED:
            raise ValueError(f"unknown table {table!r}; known: {', '.join(_NEEDED)}")
    con = store.connect()
    try:
        with store.read_lock():
            for table in tables:
                ts_col = _TS_COL[table]
                where = _window(ts_col, since, until)
                cols = ", ".join(f'"{c}"' for c in _NEEDED[table])
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW src AS "
                    f"SELECT {cols} FROM {table} WHERE true {where}"
                )
                report.checks.append(
                    Check("schema", table, "critical", True, "store schema (fixed by the store)")
                )
                n_rows, checks = _check_table(
                    con,
                    table,
                    now=now,
                    max_clock_skew=max_clock_skew,
                    earliest=earliest,
                    probe_interval=probe_interval,
                    gap_factor=gap_factor,
                )
                report.rows[table] = n_rows
                report.checks.extend(checks)
    finally:
        con.close()
    if raise_on_critical:
        report.raise_for_critical()
    return report


def _window(ts_col: str, since: datetime | None, until: datetime | None) -> str:
    """SQL filter on the timestamp and (for partition pruning) on the ``date`` column.

    Values are inlined as literals: DuckDB views cannot take parameters.
    """
    clauses = []
    if since is not None:
        s = _utc(since)
        clauses.append(
            f"AND \"{ts_col}\" >= TIMESTAMPTZ '{s.isoformat()}' AND \"date\" >= DATE '{s.date()}'"
        )
    if until is not None:
        u = _utc(until)
        clauses.append(
            f"AND \"{ts_col}\" < TIMESTAMPTZ '{u.isoformat()}' AND \"date\" <= DATE '{u.date()}'"
        )
    return " ".join(clauses)


__all__ = [
    "KNOWN_WORKFLOW_STATUSES",
    "Check",
    "DataValidationError",
    "Severity",
    "ValidationReport",
    "probe_gaps",
    "validate_frame",
    "validate_store",
]
