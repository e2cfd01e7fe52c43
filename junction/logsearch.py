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

Secrets never leave this module: the text searched for is redacted before it is matched
(a secret cannot be probed for) and every text field of a result passes through the
redactor, whatever the store holds. :func:`register_configured_secrets` registers the
configured credentials with the redactor so this holds in a process that built no client.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from integrations.auth import Credentials, register_credentials
from integrations.catalog import load_catalog
from integrations.redaction import redact, register_secret
from junction.logquery import ItemKind, LogQuery, decode_cursor, encode_cursor
from junction.settings import Settings
from junction.store import MetricsStore

GROWTH = 4
"""Each group of day partitions scanned is this many times the previous one."""

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
        partitions: Day partitions read (for the curious and the benchmark).
    """

    items: list[LogItem]
    next_cursor: str | None
    partitions: int = 0


# --------------------------------------------------------------------------- secrets

_CREDENTIAL_SUFFIXES = ("_TOKEN", "_PASSWORD", "_CLIENT_SECRET", "_ROUTING_KEY")


def register_configured_secrets(settings: Settings) -> None:
    """Register every credential configured in the environment with the redactor.

    A client registers its credentials when it is built; a process that only reads the
    store (``junction logs``, the service) may never build one, and a secret a defective
    writer stored in clear must still be redacted there. Covers ``JUNCTION_<NAME>_TOKEN``,
    ``_PASSWORD``, ``_CLIENT_SECRET``, ``_ROUTING_KEY`` of every catalog integration (in
    every form it takes on the wire) and the API token.

    Args:
        settings: The process's settings.
    """
    if settings.api_token is not None:
        register_secret(settings.api_token.get_secret_value())
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
    "calls": (
        "service",
        "action",
        "method",
        "path",
        "CAST(status AS VARCHAR)",
        "error_class",
        "error",
        "run_id",
    ),
    "alerts": ("service", "rule", "severity", "state", "message", "fingerprint"),
    "workflows": ("workflow", "status", "error", "run_id"),
}
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
    """Day partitions ``lo <= date < hi`` (``None``: unbounded) to read in one statement."""

    lo: date | None
    hi: date | None


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
        cols = _TEXT_COLUMNS[kind]
        where.append("(" + " OR ".join(f"{c} ILIKE ? ESCAPE '\\'" for c in cols) + ")")
        params += [needle] * len(cols)
    sql = _SELECT[kind] + (" WHERE " + " AND ".join(where) if where else "")
    return sql, params


def _kinds(query: LogQuery) -> list[str]:
    wanted: list[str] = ["calls", "alerts", "workflows"] if query.kind == "all" else [query.kind]
    if isinstance(query.status, int):  # an HTTP status only calls have
        wanted = [k for k in wanted if k == "calls"]
    return wanted


def _partition_days(store: MetricsStore, kinds: Iterable[str]) -> list[date]:
    """The days that have a partition in any of ``kinds``' tables, newest first."""
    days: set[date] = set()
    for kind in kinds:
        try:
            names = os.listdir(store.root / _TABLE_OF[kind])
        except FileNotFoundError:
            continue
        for name in names:
            if name.startswith("date="):
                try:
                    days.add(date.fromisoformat(name[5:]))
                except ValueError:
                    continue
    return sorted(days, reverse=True)


def _plan(days: list[date], query: LogQuery) -> list[_Range]:
    """Contiguous day ranges, newest first, in groups growing by :data:`GROWTH`.

    Together they cover every day from the newest bound down to ``since`` (or all
    time), whether or not a partition of it was listed: one created after the listing
    still falls into a range.
    """
    upper = [t for t in (query.until, _cursor_ts(query)) if t is not None]
    top = min(upper).date() if upper else None
    bottom = query.since.date() if query.since is not None else None
    listed = [d for d in days if (top is None or d <= top) and (bottom is None or d >= bottom)]
    if not listed:
        return []
    ranges: list[_Range] = []
    # Without an upper bound the newest range is open above: a new day may begin.
    hi = top + timedelta(days=1) if top is not None and top < date.max else None
    pos, size = 0, 1
    while pos < len(listed):
        pos = min(pos + size, len(listed))
        lo = listed[pos - 1] if pos < len(listed) else bottom
        ranges.append(_Range(lo, hi))
        hi = lo
        size *= GROWTH
    return ranges


def _cursor_ts(query: LogQuery) -> datetime | None:
    return decode_cursor(query.cursor)[0] if query.cursor is not None else None


def _statement(query: LogQuery, days: _Range, rows: int) -> tuple[str, list[Any]]:
    needle = like_pattern(redact(query.text)) if query.text else None
    parts, params = [], []
    for kind in _kinds(query):
        sql, kind_params = _kind_sql(kind, query, needle, days)
        parts.append(sql)
        params += kind_params
    sql = " UNION ALL ".join(f"({p})" for p in parts)
    return f"{sql} ORDER BY ts DESC, id DESC LIMIT {int(rows)}", params


# --------------------------------------------------------------------------- search


def search(store: MetricsStore, query: LogQuery, *, prune: bool = True) -> LogPage:
    """One page of the rows matching ``query``, newest first, every text field redacted.

    Args:
        store: The metrics store.
        query: What to look for; its cursor (if any) says where the page starts.
        prune: Read the day partitions newest first, only as many as the page needs.
            ``False`` reads every partition in one statement (the naive plan, kept for
            comparison in the benchmark).

    Returns:
        The page and the cursor of the next one.
    """
    kinds = _kinds(query)
    if not kinds:
        return LogPage([], None)
    wanted = query.limit + 1  # one more than a page: is there a next page?
    ranges = _plan(_partition_days(store, kinds), query) if prune else [_Range(None, None)]
    records: list[dict[str, Any]] = []
    read = 0
    for days in ranges:
        sql, params = _statement(query, days, wanted - len(records))
        frame = store.query(sql, params)
        read += 1
        records += [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
        if len(records) >= wanted:
            break
    items = [_item(r) for r in records[: query.limit]]
    next_cursor = None
    if len(records) > query.limit:
        last = records[query.limit - 1]
        next_cursor = encode_cursor(_as_datetime(last["ts"]), str(last["id"]))
    return LogPage(items, next_cursor, read if prune else 0)


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
    with MetricsStore(settings.metrics_dir) as store:
        return search(store, query)


def next_query(query: LogQuery, page: LogPage) -> LogQuery | None:
    """The query of the page after ``page`` (``None`` when it was the last)."""
    return replace(query, cursor=page.next_cursor) if page.next_cursor else None


__all__ = [
    "GROWTH",
    "LogItem",
    "LogPage",
    "like_pattern",
    "next_query",
    "register_configured_secrets",
    "search",
    "search_settings",
]
