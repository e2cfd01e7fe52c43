"""Log search over the metrics store: the call log, the alert history, the workflow runs.

One query model (:class:`~junction.logquery.LogQuery`, built from what a user typed by
:func:`~junction.logquery.parse_query`) and one function (:func:`search`) used by
``junction logs search``, the API and the dashboard. The text is a case-insensitive
substring matched literally (``%`` and ``_`` are no wildcards) against the text columns
of each table:

* ``calls``: service, action, method, path, HTTP status, error class, error, run id;
* ``alerts``: service, rule, severity, state, message, fingerprint;
* ``workflow_runs``: workflow, status, error, run id.

Results come newest first, one page at a time. The next page starts after an opaque
cursor holding the last row's ``(ts, id)`` (keyset paging, not ``OFFSET``), so rows
appended meanwhile neither shift nor repeat a page. The store's day partitions are
scanned newest first in growing groups until the page is full, so a search of the last
hour reads the last day's files and a search over all time stops as soon as it has a
page.

A text is first looked up in the segments' text summaries (:mod:`junction.logindex`: the
distinct values of each text column, per segment): a day none of whose segments holds a
value containing it is not read, and the others are matched only on the columns that
can hold it. The result is the full scan's; a text that matches nothing is known to at
once, over all history, without a cursor.

Secrets never leave this module: the text searched for is redacted before it is matched
(a secret cannot be probed for) and every text field of a result passes through the
redactor, whatever the store holds. :func:`register_configured_secrets` registers the
configured credentials with the redactor so this holds in a process that built no client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from integrations.auth import Credentials, register_credentials
from integrations.catalog import load_catalog
from integrations.redaction import redact, register_secret
from junction import logindex
from junction.logquery import ItemKind, LogQuery, decode_cursor, encode_cursor
from junction.settings import Settings
from junction.store import MetricsStore, open_store

log = logging.getLogger(__name__)

GROWTH = 4
"""Each group of day partitions scanned is this many times the previous one."""
SCAN_BYTES = 64 * 1024 * 1024
"""Parquet bytes one page reads at most (beyond its first group of days): a search that
finds little stops there and hands out a cursor to go on from (:attr:`LogPage.searched_to`)
instead of reading all history in one request."""
INDEX_BUILD = 8
"""A search summarises at most this many times its ``scan_bytes`` of segments that have no
text summary yet (reading a segment's dictionaries costs a fraction of scanning it)."""

_TABLE_OF: dict[str, str] = {"calls": "calls", "alerts": "alerts", "workflows": "workflow_runs"}
_TS_OF: dict[str, str] = {"calls": "ts", "alerts": "ts", "workflows": "started_at"}


@dataclass(frozen=True)
class LogItem:
    """One result: a call, an alert transition or a workflow run (text fields redacted).

    Attributes:
        kind: ``call``, ``alert`` or ``workflow``.
        id: The row's id in the store.
        ts: When it happened (a run: when it started).
        service: The integration (calls, alerts).
        workflow: The workflow (runs).
        action: The client action (calls) or the alert rule (alerts).
        request: ``METHOD path`` (calls).
        status: HTTP status (calls; empty when none was received), alert state, run status.
        ok: The call succeeded, the alert resolved, the run completed.
        severity: The alert's severity.
        error_class: The call's error class.
        message: The call's or run's error, the alert's message.
        run_id: The workflow run it belongs to.
        duration_ms: The call's latency or the run's duration.
    """

    kind: ItemKind
    id: str
    ts: datetime
    service: str | None
    workflow: str | None
    action: str | None
    request: str | None
    status: str
    ok: bool
    severity: str | None
    error_class: str | None
    message: str | None
    run_id: str | None
    duration_ms: float | None

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (``ts`` in ISO 8601)."""
        out = dict(self.__dict__)
        out["ts"] = self.ts.isoformat()
        return out


@dataclass(frozen=True)
class LogPage:
    """One page of results.

    Attributes:
        items: Newest first.
        next_cursor: Pass it as :attr:`LogQuery.cursor` for the next (older) page;
            ``None`` on the last page.
        partitions: Statements run, each over a group of day partitions (for the curious
            and the benchmark).
        searched_to: Set when the page stopped at the scan budget before it was full:
            everything from this instant on was searched, older entries were not yet
            (``next_cursor`` goes on from here).
    """

    items: list[LogItem]
    next_cursor: str | None
    partitions: int = 0
    searched_to: datetime | None = None


# --------------------------------------------------------------------------- secrets

_CREDENTIAL_SUFFIXES = ("_TOKEN", "_PASSWORD", "_CLIENT_SECRET", "_ROUTING_KEY")


def register_configured_secrets(settings: Settings) -> None:
    """Register every credential configured in the environment with the redactor.

    A client registers its credentials when it is built; a process that only reads the
    store (``junction logs``, the service) may never build one, and a secret a defective
    writer stored in clear must still be redacted there. Covers ``JUNCTION_<NAME>_TOKEN``,
    ``_PASSWORD``, ``_CLIENT_SECRET``, ``_ROUTING_KEY`` of every catalog integration (in
    every form it takes on the wire) and every secret setting (the API token...).

    Args:
        settings: The process's settings.
    """
    for name in type(settings).model_fields:  # the API token, the sandbox admin token...
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
    names: set[str] = set()
    for key in os.environ:
        upper = key.upper()
        if upper.startswith("JUNCTION_") and upper.endswith(_CREDENTIAL_SUFFIXES):
            names.add(upper)
    if not names:
        return
    catalog = load_catalog()
    for spec_name in catalog.names:
        prefix = f"JUNCTION_{spec_name.upper()}_"
        if not any(n.startswith(prefix) for n in names):
            continue
        cfg = settings.integration(spec_name)
        creds = Credentials(
            token=cfg.token,
            username=cfg.username,
            password=cfg.password,
            client_id=cfg.client_id,
            client_secret=cfg.client_secret,
        )
        register_credentials(catalog.get(spec_name).auth, creds)
        if cfg.routing_key is not None:
            register_secret(cfg.routing_key.get_secret_value())


def _clean(value: Any) -> str | None:
    if value is None or value != value:  # None or NaN (a null in a pandas column)
        return None
    return redact(str(value))


# --------------------------------------------------------------------------- SQL

# Each kind's rows in one shape; every select yields the same columns in the same order.
_SELECT: dict[str, str] = {
    "calls": (
        "SELECT 'call' AS kind, id, ts, service, NULL::VARCHAR AS workflow, action, "
        "method || ' ' || path AS request, coalesce(CAST(status AS VARCHAR), '') AS status, "
        "ok, NULL::VARCHAR AS severity, error_class, error AS message, run_id, "
        "latency_ms AS duration_ms FROM calls"
    ),
    "alerts": (
        "SELECT 'alert' AS kind, id, ts, service, NULL::VARCHAR AS workflow, rule AS action, "
        "NULL::VARCHAR AS request, state AS status, state = 'resolved' AS ok, severity, "
        "NULL::VARCHAR AS error_class, message, NULL::VARCHAR AS run_id, "
        "NULL::DOUBLE AS duration_ms FROM alerts"
    ),
    "workflows": (
        "SELECT 'workflow' AS kind, id, started_at AS ts, NULL::VARCHAR AS service, workflow, "
        "NULL::VARCHAR AS action, NULL::VARCHAR AS request, status, "
        "status = 'completed' AS ok, NULL::VARCHAR AS severity, NULL::VARCHAR AS error_class, "
        "error AS message, run_id, duration_ms FROM workflow_runs"
    ),
}
_TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    kind: logindex.TEXT_COLUMNS[table] for kind, table in _TABLE_OF.items()
}


def _text_sql(kind: str, column: str) -> str:
    """The SQL a text column is matched as (a call's HTTP status is a number)."""
    return "CAST(status AS VARCHAR)" if (kind, column) == ("calls", "status") else column


_STATUS_SQL: dict[str, dict[str, str]] = {
    "calls": {"error": "NOT ok", "ok": "ok"},
    "alerts": {"error": "state <> 'resolved'", "ok": "state = 'resolved'"},
    "workflows": {"error": "status <> 'completed'", "ok": "status = 'completed'"},
}


def like_pattern(text: str) -> str:
    """``%text%`` for ``ILIKE ... ESCAPE '\\'``, with ``\\``, ``%`` and ``_`` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class _Range:
    """Day partitions ``lo <= date < hi`` (``None``: unbounded) to read in one statement,
    the bytes of their segments when they were listed, and what the text summaries
    (:mod:`junction.logindex`) ruled out: per kind, the days it skips and the text
    columns worth matching (``None``: all of them)."""

    lo: date | None
    hi: date | None
    size: int = 0
    skip: dict[str, tuple[date, ...]] = field(default_factory=dict)
    columns: dict[str, frozenset[str] | None] = field(default_factory=dict)


def _kind_sql(kind: str, query: LogQuery, needle: str | None, days: _Range) -> tuple[str, list]:
    """One kind's select with its filters; the SQL holds no user value (all bound)."""
    ts = _TS_OF[kind]
    where: list[str] = []
    params: list[Any] = []
    if days.lo is not None:
        where.append("date >= ?")
        params.append(days.lo)
    if days.hi is not None:
        where.append("date < ?")
        params.append(days.hi)
    if days.skip.get(kind):
        where.append("date NOT IN (" + ", ".join("?" * len(days.skip[kind])) + ")")
        params += list(days.skip[kind])
    if query.since is not None:
        where.append(f"{ts} >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append(f"{ts} < ?")
        params.append(query.until)
    if query.cursor is not None:
        after_ts, after_id = decode_cursor(query.cursor)
        where.append(f"{ts} <= ? AND ({ts} < ? OR id < ?)")
        params += [after_ts, after_ts, after_id]
    if isinstance(query.status, str):
        where.append(_STATUS_SQL[kind][query.status])
    elif query.status is not None:  # an HTTP status: _kinds left only calls
        where.append("status = ?")
        params.append(query.status)
    if query.services:
        if kind == "workflows":
            # A run "of" a service is one that called it: its calls carry the run id.
            sub = ["run_id IS NOT NULL", "list_contains(?, service)"]
            sub_params: list[Any] = [list(query.services)]
            if days.lo is not None:  # a run's calls fall on its day or the next
                sub.append("date >= ?")
                sub_params.append(days.lo)
            if days.hi is not None:
                sub.append("date <= ?")
                sub_params.append(days.hi)
            where.append(f"run_id IN (SELECT run_id FROM calls WHERE {' AND '.join(sub)})")
            params += sub_params
        else:
            where.append("list_contains(?, service)")
            params.append(list(query.services))
    if needle is not None:
        wanted = days.columns.get(kind)
        cols = [_text_sql(kind, c) for c in _TEXT_COLUMNS[kind] if wanted is None or c in wanted]
        where.append("(" + " OR ".join(f"{c} ILIKE ? ESCAPE '\\'" for c in cols) + ")")
        params += [needle] * len(cols)
    sql = _SELECT[kind] + (" WHERE " + " AND ".join(where) if where else "")
    return sql, params


def _kinds(query: LogQuery) -> list[str]:
    wanted: list[str] = ["calls", "alerts", "workflows"] if query.kind == "all" else [query.kind]
    if isinstance(query.status, int):  # an HTTP status only calls have
        wanted = [k for k in wanted if k == "calls"]
    return wanted


def _partitions(root: Path, kinds: Iterable[str]) -> dict[date, dict[str, list]]:
    """The segments of each day partition of ``kinds``' tables, per kind."""
    out: dict[date, dict[str, list[logindex.Segment]]] = {}
    for kind in kinds:
        table_dir = root / _TABLE_OF[kind]
        try:
            names = os.listdir(table_dir)
        except FileNotFoundError:
            continue
        for name in names:
            if not name.startswith("date="):
                continue
            try:
                day = date.fromisoformat(name[5:])
            except ValueError:  # not a day
                continue
            out.setdefault(day, {})[kind] = logindex.list_segments(table_dir, name)
    return out


def _text_columns(
    root: Path, parts: dict[date, dict[str, list]], text: str, build: int | None
) -> dict[tuple[str, date], frozenset[str] | None]:
    """Per kind and day, the text columns that may hold ``needle`` (the summaries')."""
    groups = {
        (_TABLE_OF[kind], f"date={day.isoformat()}"): segs
        for day in sorted(parts, reverse=True)
        for kind, segs in parts[day].items()
    }
    found = logindex.candidates(root, groups, like_pattern(text), build, text)
    kind_of = {table: kind for kind, table in _TABLE_OF.items()}
    return {(kind_of[t], date.fromisoformat(d[5:])): cols for (t, d), cols in found.items()}


def _narrow(
    ranges: list[_Range],
    parts: dict[date, dict[str, list]],
    text_columns: dict[tuple[str, date], frozenset[str] | None],
) -> list[_Range]:
    """Each range with the days and columns the summaries rule out, per kind.

    Only what was listed is ruled out: a partition created after the listing is read
    by the next search.
    """
    if not text_columns:
        return ranges
    out = []
    for rng in ranges:
        days = [
            d for d in parts if (rng.lo is None or d >= rng.lo) and (rng.hi is None or d < rng.hi)
        ]
        skip: dict[str, tuple[date, ...]] = {}
        columns: dict[str, frozenset[str] | None] = {}
        size = 0
        for kind in _TABLE_OF:
            skipped: list[date] = []
            union: set[str] = set()
            known = True
            for day in days:
                if kind not in parts[day]:
                    continue
                cols = text_columns.get((kind, day))
                if cols is not None and not cols:
                    skipped.append(day)
                    continue
                size += sum(s.size for s in parts[day][kind])
                if cols is None:
                    known = False
                else:
                    union |= cols
            skip[kind] = tuple(skipped)
            columns[kind] = frozenset(union) if known else None
        out.append(replace(rng, size=size, skip=skip, columns=columns))
    return out


def _plan(sizes: dict[date, int], query: LogQuery, group_bytes: int | None) -> list[_Range]:
    """Contiguous day ranges, newest first, in groups growing by :data:`GROWTH` days (and
    at most ``group_bytes`` each, but at least one day).

    Together they cover every day from the newest bound down to ``since`` (or all
    time), whether or not a partition of it was listed: one created after the listing
    still falls into a range.
    """
    top = _newest_day(query)
    bottom = query.since.date() if query.since is not None else None
    listed = sorted(
        (d for d in sizes if (top is None or d <= top) and (bottom is None or d >= bottom)),
        reverse=True,
    )
    ranges: list[_Range] = []
    # Without an upper bound the newest range is open above: a new day may begin.
    hi = top + timedelta(days=1) if top is not None and top < date.max else None
    pos, days = 0, 1
    while pos < len(listed):
        size, end = sizes[listed[pos]], pos + 1
        while end < min(pos + days, len(listed)) and (
            group_bytes is None or size + sizes[listed[end]] <= group_bytes
        ):
            size += sizes[listed[end]]
            end += 1
        pos = end
        lo = listed[pos - 1] if pos < len(listed) else bottom
        ranges.append(_Range(lo, hi, size))
        hi = lo
        days *= GROWTH
    return ranges


def _newest_day(query: LogQuery) -> date | None:
    """The newest day that can hold a match (``None``: no upper bound)."""
    bounds = []
    if query.until is not None:  # exclusive: ts < until
        bounds.append(_just_before(query.until))
    if query.cursor is not None:
        ts, row_id = decode_cursor(query.cursor)
        # An empty id sorts first: such a cursor (a scan-budget edge) means ts < it.
        bounds.append(_just_before(ts) if row_id == "" else ts)
    return min(bounds).date() if bounds else None


def _just_before(ts: datetime) -> datetime:
    return ts - timedelta(microseconds=1) if ts.replace(tzinfo=None) > datetime.min else ts


def _needle(query: LogQuery) -> str | None:
    """The ``ILIKE`` pattern of the query's text (redacted first: a secret is no probe)."""
    return like_pattern(redact(query.text)) if query.text else None


def _statement(query: LogQuery, days: _Range, rows: int) -> tuple[str, list[Any]] | None:
    """The range's statement (``None``: the summaries ruled out every kind in it)."""
    needle = _needle(query)
    parts, params = [], []
    for kind in _kinds(query):
        if needle is not None and days.columns.get(kind) == frozenset():
            continue  # no day of the range holds the text in this kind's columns
        sql, kind_params = _kind_sql(kind, query, needle, days)
        parts.append(sql)
        params += kind_params
    if not parts:
        return None
    sql = " UNION ALL ".join(f"({p})" for p in parts)
    return f"{sql} ORDER BY ts DESC, id DESC LIMIT {int(rows)}", params


# --------------------------------------------------------------------------- search


def search(
    store: MetricsStore,
    query: LogQuery,
    *,
    prune: bool = True,
    scan_bytes: int | None = SCAN_BYTES,
    index: bool = True,
) -> LogPage:
    """One page of the rows matching ``query``, newest first, every text field redacted.

    Args:
        store: The metrics store.
        query: What to look for; its cursor (if any) says where the page starts.
        prune: Read the day partitions newest first, only as many as the page needs.
            ``False`` reads every partition in one statement (the naive plan, kept for
            comparison in the benchmark; no scan budget).
        scan_bytes: Stop before reading more than this many bytes of segments once the
            first group of days is read (``None``: read until the page is full); the page
            then says how far it searched (:attr:`LogPage.searched_to`).
        index: With a text, skip the segments whose text summaries
            (:mod:`junction.logindex`) hold no value containing it, summarising at most
            :data:`INDEX_BUILD` times ``scan_bytes`` of not yet summarised segments.

    Returns:
        The page and the cursor of the next one.
    """
    kinds = _kinds(query)
    if not kinds:
        return LogPage([], None)
    wanted = query.limit + 1  # one more than a page: is there a next page?
    if prune:
        group = None if scan_bytes is None else max(1, scan_bytes // 2)
        parts = _partitions(store.root, kinds)
        needle = _needle(query)
        text_columns: dict[tuple[str, date], frozenset[str] | None] = {}
        if needle is not None and index:
            build = None if scan_bytes is None else INDEX_BUILD * scan_bytes
            top, bottom = _newest_day(query), query.since.date() if query.since else None
            wanted_parts = {
                d: by_kind
                for d, by_kind in parts.items()
                if (top is None or d <= top) and (bottom is None or d >= bottom)
            }
            text_columns = _text_columns(store.root, wanted_parts, redact(query.text), build)
        sizes = {
            day: sum(
                s.size
                for kind, segs in by_kind.items()
                if text_columns.get((kind, day)) != frozenset()
                for s in segs
            )
            for day, by_kind in parts.items()
        }
        ranges = _narrow(_plan(sizes, query, group), parts, text_columns)
    else:
        ranges = [_Range(None, None)]
    records: list[dict[str, Any]] = []
    read = scanned = 0
    stopped_at: date | None = None
    for days in ranges:
        statement = _statement(query, days, wanted - len(records))
        if statement is None:
            continue  # the summaries ruled out every day of the range: nothing to read
        if prune and scan_bytes is not None and read and scanned + days.size > scan_bytes:
            stopped_at = days.hi  # every day from here on was read; the older ones were not
            break
        frame = store.query(*statement)
        read += 1
        scanned += days.size
        records += [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
        if len(records) >= wanted:
            break
    items = [_item(r) for r in records[: query.limit]]
    if len(records) > query.limit:
        last = records[query.limit - 1]
        return LogPage(items, encode_cursor(_as_datetime(last["ts"]), str(last["id"])), read)
    if stopped_at is not None:
        edge = datetime(stopped_at.year, stopped_at.month, stopped_at.day, tzinfo=UTC)
        # The empty id sorts before every id: the next page starts strictly before `edge`.
        return LogPage(items, encode_cursor(edge, ""), read, searched_to=edge)
    return LogPage(items, None, read)


def _as_datetime(value: Any) -> datetime:
    ts: datetime = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _item(rec: dict[str, Any]) -> LogItem:
    duration = rec.get("duration_ms")
    return LogItem(
        kind=rec["kind"],
        id=_clean(rec["id"]) or "",
        ts=_as_datetime(rec["ts"]),
        service=_clean(rec.get("service")),
        workflow=_clean(rec.get("workflow")),
        action=_clean(rec.get("action")),
        request=_clean(rec.get("request")),
        status=_clean(rec.get("status")) or "",
        ok=bool(rec["ok"]),
        severity=_clean(rec.get("severity")),
        error_class=_clean(rec.get("error_class")),
        message=_clean(rec.get("message")),
        run_id=_clean(rec.get("run_id")),
        duration_ms=None if duration is None or duration != duration else float(duration),
    )


def search_settings(settings: Settings, query: LogQuery) -> LogPage:
    """:func:`search` in the store ``settings`` name, its credentials registered first.

    A store that does not exist yet has no entries (and is not created by a search).
    """
    register_configured_secrets(settings)
    if not settings.metrics_dir.is_dir():
        return LogPage([], None)
    with open_store(settings) as store:
        return search(store, query)


def warm_summaries(settings: Settings) -> int:
    """Summarise every segment of the store ``settings`` name that has no text summary
    yet (a service's start-up), so the first search does not pay for it.

    The configured credentials are registered first (a summary never holds a secret the
    redactor knows). A failure is logged, not raised: the first search summarises then.

    Returns:
        The segments seen.
    """
    try:
        register_configured_secrets(settings)
        root = settings.metrics_dir
        parts = _partitions(root, _TABLE_OF) if root.is_dir() else {}
        _text_columns(root, parts, "\x00", None)
    except Exception:  # a start-up convenience
        log.exception("log search: summarising the store failed")
        return 0
    return sum(len(segs) for by_kind in parts.values() for segs in by_kind.values())


def next_query(query: LogQuery, page: LogPage) -> LogQuery | None:
    """The query of the page after ``page`` (``None`` when it was the last)."""
    return replace(query, cursor=page.next_cursor) if page.next_cursor else None


__all__ = [
    "GROWTH",
    "SCAN_BYTES",
    "LogItem",
    "LogPage",
    "like_pattern",
    "next_query",
    "register_configured_secrets",
    "search",
    "search_settings",
    "warm_summaries",
]
